use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use segadapt::adapt::{AdapterConfig, Method, OpInit, OpKind, Placement};
use segadapt::cli::{check_inside, parse_box, parse_point};
use segadapt::device::{self, DeviceChoice};
use segadapt::eval::{EvalPrompt, evaluate, list_pairs};
use segadapt::fsutil::atomic_write;
use segadapt::predict::PromptInput;
use segadapt::project::export::write_mask_png;
use segadapt::project::import::load_rgb;
use segadapt::train::loss::LossKind;
use segadapt::train::prompts::PromptMix;
use segadapt::train::schedule::Schedule;
use segadapt::train::{TrainConfig, TrainData, TrainEvent, train};

mod cli_everything;

#[derive(Parser)]
#[command(
    name = "segadapt",
    version,
    about = "Adapt Segment Anything to your images with NAS-LoRA"
)]
struct Cli {
    /// Compute device: a GPU when one exists (default), or force cpu / gpu.
    #[arg(long, global = true, value_enum, default_value = "auto")]
    device: DeviceChoice,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Segment one object in one image from a box and/or points.
    Segment {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        adapter: Option<PathBuf>,
        #[arg(long)]
        image: PathBuf,
        /// x0,y0,x1,y1 in image pixels
        #[arg(long = "box", allow_hyphen_values = true)]
        bbox: Option<String>,
        /// x,y[,label] in image pixels; label 1 = foreground (default), 0 = background. Repeatable.
        #[arg(long = "point", allow_hyphen_values = true)]
        points: Vec<String>,
        /// Return 3 candidate masks; the best-scoring goes to --out, all to --out with _0.._2.
        #[arg(long)]
        multimask: bool,
        #[arg(long)]
        out: PathBuf,
    },
    /// Segment everything: every object in one image from a grid of point prompts (the
    /// official SamAutomaticMaskGenerator), written as a label PNG, object PNGs or COCO JSON.
    Everything(cli_everything::EverythingArgs),
    /// Evaluate on a data dir (images/ + masks/ label images) with box or point prompts.
    Eval {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        adapter: Option<PathBuf>,
        #[arg(long)]
        data: PathBuf,
        #[arg(long, value_enum, default_value = "box")]
        prompt: EvalPrompt,
        /// Skip objects smaller than this many pixels.
        #[arg(long, default_value_t = 0)]
        min_area: usize,
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Fine-tune an adapter on a data dir (images/ + masks/ label images).
    Train(TrainArgs),
    /// Compare this port with reference outputs of the official code (tools/make_fixtures.py).
    CheckParity {
        #[arg(long)]
        model: PathBuf,
        /// Configuration json written with the reference (for non-official configs).
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        refs: PathBuf,
        #[arg(long, default_value_t = 1e-4)]
        tol: f32,
    },
    /// Benchmarks: encoder, prompt→mask, training step, throughput (optionally vs PyTorch).
    Bench(segadapt::bench::BenchArgs),
    /// Manage the official checkpoints in the per-user model folder.
    Models {
        #[command(subcommand)]
        action: ModelsAction,
    },
    /// Fold an adapter into its base model and write the merged model for the official code.
    ///
    /// The merged file (safetensors) holds every tensor of the base checkpoint under its
    /// official name and dtype, with the folded weights (and a trained mask decoder) replaced:
    /// the official SamPredictor loads it with `load_state_dict(sd, strict=True)`. A JSON
    /// report goes beside it (<merged>.json); the adapter file stays the small form of the model.
    /// Spatial NAS cells (conv / pool ops) cannot fold and have no place in the official model:
    /// export refuses them unless --drop-side-branches is given.
    Export {
        /// The base checkpoint the adapter was trained on.
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        adapter: PathBuf,
        /// Output path of the merged model (must end in .safetensors).
        #[arg(long)]
        merged: PathBuf,
        /// Write the merged model even though spatial side branches remain; they are left out
        /// (listed in the report), so the file is NOT equivalent to the adapted model.
        #[arg(long)]
        drop_side_branches: bool,
        /// Encoder runs per model for the inference-cost measurement (0 skips it).
        #[arg(long, default_value_t = 3)]
        timing_runs: usize,
    },
}

#[derive(Subcommand)]
enum ModelsAction {
    /// Show official models (verified, partial, corrupt, missing) and other checkpoints.
    List {
        #[arg(long)]
        verify: bool,
    },
    /// Download mobile_sam | vit_b | vit_l | vit_h (resumable, sha256-checked).
    Download { name: String },
    /// Print the model folder.
    Dir,
}

fn run_models(a: &ModelsAction) -> Result<()> {
    use segadapt::models::{self, ModelState, Phase};
    let dir = models::models_dir();
    match a {
        ModelsAction::Dir => println!("{}", dir.display()),
        ModelsAction::List { verify } => {
            println!("model folder: {}", dir.display());
            for e in models::list_models(&dir, *verify) {
                let st = match &e.state {
                    ModelState::Verified => "ok (sha256 verified)".into(),
                    ModelState::NotVerified => "present, not verified yet (--verify)".into(),
                    ModelState::Partial { bytes } => {
                        format!("partial download, {bytes} bytes (download resumes)")
                    }
                    ModelState::Corrupt { reason } => format!("CORRUPT, not used: {reason}"),
                    ModelState::Custom { model_type } => {
                        format!("other checkpoint ({})", model_type.name())
                    }
                    ModelState::Missing => "not downloaded".to_string(),
                };
                println!(
                    "{:<12} {:<44} {st}",
                    e.name(),
                    e.spec.map(|s| s.title).unwrap_or("")
                );
            }
        }
        ModelsAction::Download { name } => {
            let spec = models::lookup(name).ok_or_else(|| {
                anyhow::anyhow!("unknown model '{name}' (mobile_sam, vit_b, vit_l, vit_h)")
            })?;
            let cancel = Arc::new(AtomicBool::new(false));
            {
                let c = cancel.clone();
                let _ = ctrlc_hook(move || c.store(true, Ordering::Relaxed));
            }
            let pb = ProgressBar::new(spec.size);
            pb.set_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            let path = models::download(
                spec,
                &dir,
                &models::DownloadOptions::default(),
                &mut |p| {
                    if let Some(t) = p.total {
                        pb.set_length(t);
                    }
                    pb.set_position(p.done);
                    pb.set_message(
                        match p.phase {
                            Phase::Rehashing => "checking partial",
                            Phase::Downloading => spec.name,
                            Phase::Verifying => "verifying",
                            Phase::Done => "done",
                        }
                        .to_string(),
                    );
                },
                &cancel,
            )?;
            pb.finish_and_clear();
            println!("{}: {} (sha256 verified)", spec.name, path.display());
        }
    }
    Ok(())
}

#[derive(clap::Args)]
struct TrainArgs {
    #[arg(long)]
    model: PathBuf,
    #[arg(long)]
    data: PathBuf,
    #[arg(long, value_enum, default_value = "nas-lora")]
    method: Method,
    /// Adapter file to write (.safetensors; the model card goes beside it as .json).
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 300)]
    steps: usize,
    #[arg(long, default_value_t = 4)]
    rank: usize,
    /// LoRA alpha (default 4·rank).
    #[arg(long)]
    alpha: Option<f64>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value_t = 0.2)]
    val_split: f64,
    /// e.g. box=0.5,points=0.3,boxpoints=0.2,none=0
    #[arg(long)]
    prompt_mix: Option<String>,
    #[arg(long, value_enum, default_value = "qkv")]
    placement: Placement,
    /// Adapt only these attention blocks (comma-separated indices).
    #[arg(long, value_delimiter = ',')]
    blocks: Vec<usize>,
    /// Candidate ops of the NAS cell (comma-separated).
    #[arg(long, value_delimiter = ',')]
    ops: Vec<String>,
    #[arg(long, default_value_t = 2)]
    pc_k: usize,
    #[arg(long, default_value_t = 1e-4)]
    lr: f64,
    /// α learning rate [default: 3e-3].
    #[arg(long)]
    alpha_lr: Option<f64>,
    /// Softmax temperature of α (at the start of search when annealed) [default: 1].
    #[arg(long)]
    temperature: Option<f64>,
    /// Anneal the temperature geometrically to this value over the search stage.
    #[arg(long)]
    temperature_end: Option<f64>,
    /// How cells leave the mixed state at consolidation.
    #[arg(long, value_enum)]
    discretize: Option<segadapt::adapt::Discretize>,
    /// Learning rate of the cells' conv kernels [default: --lr].
    #[arg(long)]
    op_lr: Option<f64>,
    /// Adam β1 of α [default: 0.9].
    #[arg(long)]
    alpha_beta1: Option<f64>,
    /// First-order bi-level search (α on one half of the training objects, weights on the other).
    #[arg(long)]
    bilevel: bool,
    /// Grid the qkv cell sees in windowed blocks.
    #[arg(long, value_enum)]
    grid: Option<segadapt::adapt::CellGrid>,
    #[arg(long, value_enum)]
    op_init: Option<OpInit>,
    #[arg(long)]
    warmup_frac: Option<f64>,
    #[arg(long)]
    search_frac: Option<f64>,
    #[arg(long, default_value_t = 4)]
    objects_per_step: usize,
    #[arg(long, default_value_t = 1)]
    grad_accum: usize,
    #[arg(long, default_value_t = 0)]
    val_every: usize,
    /// Validations without improvement before stopping (0 = never).
    #[arg(long, default_value_t = 3)]
    patience: usize,
    #[arg(long, value_enum, default_value = "bce-dice")]
    loss: LossKind,
    /// Keep the mask decoder frozen (adapters only).
    #[arg(long)]
    freeze_decoder: bool,
    #[arg(long)]
    no_augment: bool,
    #[arg(long, default_value_t = 0)]
    min_area: usize,
    /// Continue a cancelled run (same settings).
    #[arg(long)]
    resume: bool,
    /// After training, run the `eval` protocol (box and point) on this held-out data dir with
    /// the base model and with the adapter, in the same process.
    #[arg(long)]
    test_data: Option<PathBuf>,
    /// Write a JSON report of the run (timings, validation, test results, α, chosen ops).
    #[arg(long)]
    report: Option<PathBuf>,
}

fn train_config(a: &TrainArgs) -> Result<TrainConfig> {
    if a.rank == 0 {
        anyhow::bail!("--rank must be ≥ 1");
    }
    if !(0.0..1.0).contains(&a.val_split) || a.val_split == 0.0 {
        anyhow::bail!("--val-split must be in (0, 1)");
    }
    let d_adapter = AdapterConfig::default();
    let d_sched = Schedule::default();
    let warmup_frac = a.warmup_frac.unwrap_or(d_sched.warmup_frac);
    let search_frac = a.search_frac.unwrap_or(d_sched.search_frac);
    if warmup_frac < 0.0 || search_frac < 0.0 || warmup_frac + search_frac > 1.0 {
        anyhow::bail!("--warmup-frac and --search-frac must be ≥ 0 and sum to ≤ 1");
    }
    if a.steps == 0 {
        anyhow::bail!("--steps must be ≥ 1");
    }
    let ops = if a.ops.is_empty() {
        OpKind::ALL.to_vec()
    } else {
        a.ops
            .iter()
            .map(|o| OpKind::parse(o).map_err(anyhow::Error::msg))
            .collect::<Result<Vec<_>>>()?
    };
    let adapter = AdapterConfig {
        method: a.method,
        placement: a.placement,
        rank: a.rank,
        alpha: a.alpha.unwrap_or(AdapterConfig::default_alpha(a.rank)),
        ops,
        pc_k: a.pc_k.max(1),
        alpha_temperature: a.temperature.unwrap_or(d_adapter.alpha_temperature),
        op_init: a.op_init.unwrap_or(d_adapter.op_init),
        grid: a.grid.unwrap_or(d_adapter.grid),
        blocks: a.blocks.clone(),
        seed: a.seed,
        ..d_adapter.clone()
    };
    let cfg = TrainConfig {
        adapter,
        schedule: Schedule {
            steps: a.steps,
            warmup_frac,
            search_frac,
            lr: a.lr,
            alpha_lr: a.alpha_lr.unwrap_or(d_sched.alpha_lr),
            alpha_temperature_end: a.temperature_end.or(d_sched.alpha_temperature_end),
            discretize: a.discretize.unwrap_or(d_sched.discretize),
            op_lr: a.op_lr.or(d_sched.op_lr),
            alpha_beta1: a.alpha_beta1.unwrap_or(d_sched.alpha_beta1),
            bilevel: a.bilevel || d_sched.bilevel,
            ..d_sched
        },
        objects_per_step: a.objects_per_step,
        grad_accum: a.grad_accum.max(1),
        val_split: a.val_split,
        val_every: a.val_every,
        early_stop_patience: a.patience,
        train_decoder: !a.freeze_decoder,
        prompt_mix: a
            .prompt_mix
            .as_deref()
            .map(PromptMix::parse)
            .transpose()?
            .unwrap_or_default(),
        loss: a.loss,
        augment: !a.no_augment,
        seed: a.seed,
        min_area: a.min_area,
        ..Default::default()
    };
    cfg.validate()?;
    Ok(cfg)
}

fn run_train(a: TrainArgs, dev: device::ComputeDevice) -> Result<()> {
    let cfg = train_config(&a)?;
    let mut data = TrainData::from_dir(&a.data, cfg.min_area)?;
    let split = data.split(cfg.val_split, cfg.seed);
    eprintln!("device: {}", dev.description);
    eprintln!(
        "data: {} objects in {} images → {} train / {} validation, split {split}",
        data.objects.len(),
        data.images.len(),
        data.train.len(),
        data.val.len()
    );
    let (base, info) = segadapt::sam::load_sam(&a.model, None, &dev.device)?;
    {
        let mut probe = base.clone();
        segadapt::adapt::apply_adapters(&mut probe, &cfg.adapter, &dev.device);
        let first =
            segadapt::adapt::first_adapted_stage(&probe).unwrap_or(base.image_encoder.num_stages());
        let budget = 8192.0; // MiB: the target for a batch-1 ViT-B step
        let plan = segadapt::train::planner::plan(&info.config, &cfg, first, &dev.device, budget);
        eprintln!(
            "plan: ~{:.1} GMAC/step, ~{:.2} s/step (device ≈ {:.0} GFLOP/s), ~{:.0} MiB activations, ~{:.0} min for {} steps",
            plan.gmacs_per_step,
            plan.step_seconds,
            plan.measured_gflops,
            plan.activation_mib,
            plan.step_seconds * cfg.schedule.steps as f64 / 60.0,
            cfg.schedule.steps
        );
        for s in &plan.suggestions {
            eprintln!("plan: {s}");
        }
    }
    let cancel = Arc::new(AtomicBool::new(false));
    {
        let c = cancel.clone();
        let _ = ctrlc_hook(move || c.store(true, Ordering::Relaxed));
    }
    for p in [&a.report].into_iter().flatten() {
        if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.is_dir()
        {
            anyhow::bail!("output folder {} does not exist", dir.display());
        }
    }
    let test_pairs = a.test_data.as_deref().map(list_pairs).transpose()?;
    let pb = bar(cfg.schedule.steps as u64, "train");
    let mut step_times: Vec<(usize, f64)> = Vec::new();
    let mut stage_of_step: Vec<(usize, segadapt::train::schedule::Stage)> = Vec::new();
    let mut cells: Vec<String> = Vec::new();
    let mut ops: Vec<String> = Vec::new();
    let mut last_alpha: Vec<Vec<f32>> = Vec::new();
    let mut emit = |ev: TrainEvent| match ev {
        TrainEvent::Started {
            total_steps,
            start_step,
            trainable_params,
            total_params,
            stage_steps,
            op_names,
            cell_names,
            ..
        } => {
            pb.set_length(total_steps as u64);
            pb.set_position(start_step as u64);
            say(
                &pb,
                format!(
                    "method {}: {trainable_params} trainable of {total_params} parameters ({:.3}%); stages: warm-up 0..{}, search {}..{}, consolidate {}..{}",
                    a.method.name(),
                    100.0 * trainable_params as f64 / total_params as f64,
                    stage_steps.0,
                    stage_steps.0,
                    stage_steps.1,
                    stage_steps.1,
                    total_steps
                ),
            );
            cells = cell_names;
            ops = op_names;
        }
        TrainEvent::Step {
            step,
            loss,
            stage,
            lr,
            elapsed_s,
            ..
        } => {
            step_times.push((step, elapsed_s));
            stage_of_step.push((step, stage));
            if pb.is_hidden() && (step % 25 == 0 || step == 1) {
                // No terminal (logs, CI): a plain line now and then instead of the bar.
                eprintln!(
                    "step {step}: {} loss {loss:.4} lr {lr:.1e}, {elapsed_s:.1} s",
                    stage.name()
                );
            }
            pb.set_position(step as u64);
            pb.set_message(format!("{} loss {loss:.4} lr {lr:.1e}", stage.name()));
        }
        TrainEvent::Alpha { weights, .. } => last_alpha = weights,
        TrainEvent::StageChanged {
            step,
            stage,
            chosen,
        } => {
            say(&pb, format!("step {step}: stage → {}", stage.name()));
            if !chosen.is_empty() {
                let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
                for (_, o) in &chosen {
                    *counts.entry(o.clone()).or_default() += 1;
                }
                say(&pb, format!("  cells discretised: {counts:?}"));
            }
        }
        TrainEvent::Validation {
            step,
            dice,
            iou,
            is_base,
            best,
        } => {
            say(
                &pb,
                format!(
                    "step {step}: validation Dice {dice:.4} IoU {iou:.4}{}",
                    if is_base {
                        " (base model)"
                    } else if best {
                        " (best so far, saved)"
                    } else {
                        ""
                    }
                ),
            );
        }
        TrainEvent::Cancelled { step, resume_dir } => {
            say(
                &pb,
                format!(
                    "cancelled at step {step}; continue with --resume (state in {})",
                    resume_dir.display()
                ),
            );
        }
        TrainEvent::Finished(_) | TrainEvent::Error(_) => {}
    };
    let outcome = train(
        &base,
        &info,
        &data,
        &cfg,
        &dev.device,
        &a.out,
        a.resume,
        &mut emit,
        &cancel,
    )?;
    pb.finish_and_clear();
    let Some(o) = outcome else { return Ok(()) };
    // The table shows the written file's cells (what was tested), else the last step's.
    // What the written file holds (its cells' ops and α), read back once from its card.
    let file_card = match &o.adapter_path {
        Some(p) => Some(segadapt::adapt::file::read_card(p)?),
        None => None,
    };
    let file_cells: Option<Vec<(String, Vec<f32>)>> = file_card.as_ref().map(|c| {
        c.cells
            .iter()
            .map(|c| (c.name.clone(), c.weights.clone()))
            .collect()
    });
    let (title, rows): (&str, Vec<(String, Vec<f32>)>) = match file_cells {
        Some(rows) if !rows.is_empty() => ("of the written adapter", rows),
        _ => (
            "at the last step (no adapter written)",
            cells
                .iter()
                .cloned()
                .zip(last_alpha.iter().cloned())
                .collect(),
        ),
    };
    if !rows.is_empty() {
        println!("architecture weights softmax(α/T) {title}:");
        print!("{:<44}", "cell");
        for op in &ops {
            print!(" {op:>11}");
        }
        println!("  chosen");
        for (name, w) in &rows {
            print!("{name:<44}");
            for v in w {
                print!(" {v:>11.3}");
            }
            let chosen = o
                .chosen_ops
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, op)| op.as_str())
                .unwrap_or("-");
            println!("  {chosen}");
        }
    }
    println!("{:<12} {:>10} {:>10}", "", "val Dice", "val IoU");
    println!("{:<12} {:>10.4} {:>10.4}", "base", o.base_dice, o.base_iou);
    println!(
        "{:<12} {:>10.4} {:>10.4}",
        "adapted", o.best_dice, o.best_iou
    );
    println!("{}", o.message);
    if o.improved {
        println!(
            "adapter: {} (card: {})",
            a.out.display(),
            segadapt::adapt::file::card_path(&a.out).display()
        );
    }
    println!(
        "{} steps in {:.1} s{}",
        o.steps_done,
        o.seconds,
        if o.stopped_early {
            " (stopped early)"
        } else {
            ""
        }
    );
    let timing = StepTiming::from_elapsed(&step_times);
    if let Some(t) = &timing {
        println!(
            "step time: first {:.2} s (kernel compilation, prefix caching), median {:.3} s, mean {:.3} s over steps 2..{} (validation included in the mean)",
            t.first_s, t.median_s, t.mean_s, o.steps_done
        );
    }
    // Per-stage step times (validation steps excluded by taking the median).
    let stage_times: serde_json::Map<String, serde_json::Value> = {
        let mut m = serde_json::Map::new();
        for st in [
            segadapt::train::schedule::Stage::Warmup,
            segadapt::train::schedule::Stage::Search,
            segadapt::train::schedule::Stage::Consolidate,
        ] {
            let mut d: Vec<f64> = step_times
                .windows(2)
                .zip(stage_of_step.iter().skip(1))
                .filter(|(_, (_, s))| *s == st)
                .map(|(w, _)| w[1].1 - w[0].1)
                .collect();
            if d.is_empty() {
                continue;
            }
            d.sort_by(f64::total_cmp);
            m.insert(
                st.name().to_string(),
                serde_json::json!({"median_s": d[d.len() / 2], "steps": d.len()}),
            );
        }
        m
    };
    let mut test = serde_json::Map::new();
    if let Some(pairs) = &test_pairs {
        let mut table = Vec::new();
        let mut models: Vec<(&str, Option<&std::path::Path>)> = vec![("base", None)];
        if o.improved {
            models.push(("adapted", Some(a.out.as_path())));
        }
        let test_dir = a.test_data.clone().unwrap_or_default();
        for (name, adapter) in models {
            // The base checkpoint is already in memory: adapt a copy instead of reloading it.
            let m =
                segadapt::engine::with_adapter(base.clone(), info.clone(), adapter, dev.clone())?;
            let mut by_prompt = serde_json::Map::new();
            for prompt in [EvalPrompt::Box, EvalPrompt::Point] {
                let pbe = bar(0, &format!("test {name} {prompt:?}"));
                let r = evaluate(&m.predictor, pairs, prompt, cfg.min_area, |done, total| {
                    pbe.set_length(total as u64);
                    pbe.set_position(done as u64);
                })?;
                pbe.finish_and_clear();
                table.push((name, prompt, r.mean_dice, r.mean_iou, r.n_objects));
                by_prompt.insert(
                    format!("{prompt:?}").to_lowercase(),
                    serde_json::to_value(&r)?,
                );
            }
            test.insert(name.to_string(), serde_json::Value::Object(by_prompt));
        }
        println!(
            "held-out test ({}):\n{:<10} {:<6} {:>9} {:>9} {:>8}",
            test_dir.display(),
            "model",
            "prompt",
            "Dice",
            "IoU",
            "objects"
        );
        for (name, prompt, d, i, n) in &table {
            println!(
                "{name:<10} {:<6} {d:>9.4} {i:>9.4} {n:>8}",
                format!("{prompt:?}").to_lowercase()
            );
        }
        if !o.improved {
            println!("(no adapter was kept, so the base model is what this run leaves you with)");
        }
    }
    if let Some(path) = &a.report {
        let report = serde_json::json!({
            "method": a.method.name(),
            "device": dev.description,
            "steps": o.steps_done,
            "seconds": o.seconds,
            "step_time": timing,
            "data": {"train_objects": data.train.len(), "val_objects": data.val.len()},
            "validation": {"base_dice": o.base_dice, "base_iou": o.base_iou, "best_dice": o.best_dice, "best_iou": o.best_iou, "best_step": o.best_step, "improved": o.improved, "gain_ci95": o.gain_ci95},
            "stopped_early": o.stopped_early,
            "chosen_ops": o.chosen_ops,
            "stage_step_time": stage_times,
            "file_cells": file_card.as_ref().map(|c| &c.cells),
            "cells": cells,
            "ops": ops,
            "alpha": last_alpha,
            "test": test,
            "message": o.message,
        });
        atomic_write(path, serde_json::to_string_pretty(&report)?.as_bytes())?;
        eprintln!("report: {}", path.display());
    }
    Ok(())
}

/// Per-step wall time from the trainer's cumulative `elapsed_s`: the first step (cold kernels)
/// apart, then median and mean of the rest.
#[derive(serde::Serialize)]
struct StepTiming {
    first_s: f64,
    median_s: f64,
    mean_s: f64,
}

impl StepTiming {
    fn from_elapsed(steps: &[(usize, f64)]) -> Option<Self> {
        let first = steps.first()?;
        let mut d: Vec<f64> = steps.windows(2).map(|w| w[1].1 - w[0].1).collect();
        if d.is_empty() {
            return None;
        }
        let mean_s = d.iter().sum::<f64>() / d.len() as f64;
        d.sort_by(f64::total_cmp);
        Some(Self {
            first_s: first.1,
            median_s: d[d.len() / 2],
            mean_s,
        })
    }
}

/// Ctrl-C requests a clean cancel (a resumable state is written) instead of killing the run.
fn ctrlc_hook(f: impl Fn() + Send + 'static) -> Result<()> {
    ctrlc::set_handler(f).map_err(|e| anyhow::anyhow!("{e}"))
}

/// A line above the bar, or on stderr when the bar is hidden (not a terminal).
fn say(pb: &ProgressBar, msg: String) {
    if pb.is_hidden() {
        eprintln!("{msg}");
    } else {
        pb.println(msg);
    }
}

fn bar(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {elapsed_precise} ETA {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb.set_message(what.to_string());
    pb
}

fn run(cli: Cli) -> Result<()> {
    let Some(command) = cli.command else {
        // No subcommand: the desktop app.
        return segadapt::app::run(segadapt::service::device::select(cli.device)?);
    };
    if let Command::Models { action } = &command {
        return run_models(action);
    }
    let dev = device::select(cli.device).map_err(anyhow::Error::msg)?;
    match command {
        Command::Models { .. } => unreachable!("handled above"),
        Command::Bench(args) => segadapt::bench::run(args, dev)?,
        Command::Segment {
            model,
            adapter,
            image,
            bbox,
            points,
            multimask,
            out,
        } => {
            let bbox = bbox.as_deref().map(parse_box).transpose()?;
            let points = points
                .iter()
                .map(|p| parse_point(p))
                .collect::<Result<Vec<_>>>()?;
            if bbox.is_none() && points.is_empty() {
                anyhow::bail!("give a prompt: --box x0,y0,x1,y1 and/or --point x,y[,label]");
            }
            let img = load_rgb(&image)?;
            let (w, h) = (img.width() as usize, img.height() as usize);
            check_inside(&points, bbox, w, h)?;
            if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty())
                && !dir.is_dir()
            {
                anyhow::bail!("output folder {} does not exist", dir.display());
            }
            eprintln!("device: {}", dev.description);
            let m = segadapt::engine::load(&model, adapter.as_deref(), None, dev)?;
            let t = std::time::Instant::now();
            let emb = m.predictor.set_image(&img);
            let t_emb = t.elapsed();
            let t = std::time::Instant::now();
            let pred = m.predictor.predict(
                &emb,
                &PromptInput {
                    points,
                    bbox,
                    mask_input: None,
                },
                multimask,
            );
            let t_dec = t.elapsed();
            let best = pred.best();
            write_mask_png(&out, &pred.binary(best), w, h)?;
            if multimask {
                for i in 0..pred.masks.len() {
                    let stem = out.file_stem().unwrap_or_default().to_string_lossy();
                    let p = out.with_file_name(format!("{stem}_{i}.png"));
                    write_mask_png(&p, &pred.binary(i), w, h)?;
                }
            }
            for (i, s) in pred.iou.iter().enumerate() {
                println!(
                    "mask {i}: predicted IoU {s:.4}{}",
                    if i == best { "  (best, written)" } else { "" }
                );
            }
            eprintln!(
                "embedding {:.0} ms, decoder {:.0} ms; wrote {}",
                t_emb.as_secs_f64() * 1e3,
                t_dec.as_secs_f64() * 1e3,
                out.display()
            );
        }
        Command::Everything(a) => cli_everything::run(a, dev)?,
        Command::Eval {
            model,
            adapter,
            data,
            prompt,
            min_area,
            json,
        } => {
            let pairs = list_pairs(&data)?;
            if let Some(j) = &json
                && let Some(dir) = j.parent().filter(|d| !d.as_os_str().is_empty())
                && !dir.is_dir()
            {
                anyhow::bail!("output folder {} does not exist", dir.display());
            }
            eprintln!("device: {}", dev.description);
            let m = segadapt::engine::load(&model, adapter.as_deref(), None, dev)?;
            let pb = bar(0, "eval");
            let report = evaluate(&m.predictor, &pairs, prompt, min_area, |done, total| {
                pb.set_length(total as u64);
                pb.set_position(done as u64);
            })?;
            pb.finish_and_clear();
            println!(
                "{:<30} {:>8} {:>9} {:>9}",
                "image", "objects", "mean IoU", "mean Dice"
            );
            for r in &report.per_image {
                println!(
                    "{:<30} {:>8} {:>9.4} {:>9.4}",
                    r.image, r.n_objects, r.mean_iou, r.mean_dice
                );
            }
            println!(
                "{:<30} {:>8} {:>9.4} {:>9.4}",
                "ALL", report.n_objects, report.mean_iou, report.mean_dice
            );
            if let Some(j) = json {
                atomic_write(&j, serde_json::to_string_pretty(&report)?.as_bytes())
                    .with_context(|| format!("cannot write {}", j.display()))?;
            }
        }
        Command::Train(a) => run_train(a, dev)?,
        Command::CheckParity {
            model,
            config,
            refs,
            tol,
        } => {
            let cfg = match config {
                Some(c) => {
                    let j: serde_json::Value = serde_json::from_slice(
                        &std::fs::read(&c)
                            .with_context(|| format!("cannot read {}", c.display()))?,
                    )?;
                    Some(
                        segadapt::sam::SamConfig::from_reference_json(&j)
                            .map_err(anyhow::Error::msg)?,
                    )
                }
                None => None,
            };
            eprintln!("device: {}", dev.description);
            let (sam, _) = segadapt::sam::load_sam(&model, cfg, &dev.device)?;
            let refs = segadapt::parity::RefTensors::load(&refs)?;
            let t = std::time::Instant::now();
            let diffs = segadapt::parity::compare_all(&sam, &refs, &dev.device);
            let mut worst = 0f32;
            for d in &diffs {
                println!(
                    "{:<28} max abs err {:.3e}  (max |ref| {:.3})",
                    d.name, d.max_abs_err, d.max_abs_ref
                );
                worst = worst.max(d.max_abs_err);
            }
            println!(
                "worst {worst:.3e} (tolerance {tol:.0e}); {:.1} s",
                t.elapsed().as_secs_f64()
            );
            // NaN must fail the check too, hence the negated comparison.
            if worst.is_nan() || worst > tol {
                anyhow::bail!("parity check failed: max abs error {worst:.3e} > {tol:.0e}");
            }
        }
        Command::Export {
            model,
            adapter,
            merged,
            drop_side_branches,
            timing_runs,
        } => export_cmd(
            &model,
            &adapter,
            &merged,
            drop_side_branches,
            timing_runs,
            dev,
        )?,
    }
    Ok(())
}

/// `segadapt export`: the work is in `adapt::export::export`; this prints its report.
fn export_cmd(
    model: &std::path::Path,
    adapter: &std::path::Path,
    merged: &std::path::Path,
    drop_side_branches: bool,
    timing_runs: usize,
    dev: device::ComputeDevice,
) -> Result<()> {
    use segadapt::adapt::export::{EXPORT_KEY, export, report_path};
    let report = export(model, adapter, merged, drop_side_branches, timing_runs, dev)?;
    println!(
        "folded into the weights: {} projections",
        report.merge.folded.len()
    );
    for (name, op) in &report.merge.side_branches {
        println!("side branch (cannot fold): {name} ({op})");
    }
    if !report.merge.side_branches.is_empty() {
        println!(
            "side branches cost {} multiply-accumulates per token",
            report.merge.side_macs_per_token
        );
    }
    println!(
        "merged model: {} ({} tensors of the base checkpoint, {} changed, {} copied as stored)",
        merged.display(),
        report.file.tensors,
        report.file.changed.len(),
        report.file.copied_from_base.len()
    );
    if !report.file.side_branches_left_out.is_empty() {
        println!(
            "WARNING: {} side branches are NOT in the merged model (--drop-side-branches): {}",
            report.file.side_branches_left_out.len(),
            report.file.side_branches_left_out.join(", ")
        );
    }
    if let Some(line) = report.timing_line() {
        println!("{line}");
    }
    println!(
        "report: {} (also in the file's '{EXPORT_KEY}' metadata)",
        report_path(merged).display()
    );
    Ok(())
}

fn main() -> ExitCode {
    device::keep_shader_cache();
    device::tune_allocator();
    segadapt::kernels::configure_from_env();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
