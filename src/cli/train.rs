//! `segadapt train`: the flags, the `TrainConfig` they make, and the run's printing: progress,
//! α table, step timing, the held-out test and the JSON report (made by `train::report`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Result;
use indicatif::ProgressBar;

use super::{bar, ctrlc_hook, ensure_output_folder, say};
use crate::adapt::file::AdapterCard;
use crate::adapt::{AdapterConfig, Method, OpInit, OpKind, Placement};
use crate::device;
use crate::eval::{EvalPrompt, list_pairs};
use crate::predict::tiling::TileConfig;
use crate::sam::{CheckpointInfo, Sam};
use crate::train::loss::LossKind;
use crate::train::prompts::PromptMix;
use crate::train::report::{HeldOutTest, RunLog, TestSet, TrainReport, test_held_out};
use crate::train::schedule::Schedule;
use crate::train::{TrainConfig, TrainData, TrainEvent, TrainOutcome, train};

#[derive(clap::Args)]
pub struct TrainArgs {
    #[arg(long)]
    model: PathBuf,
    /// Model family: sam, mobilesam, litemedsam or medsam (default: detected from the
    /// checkpoint; MedSAM by its official file name). The adapter's card records it.
    #[arg(long, value_parser = super::parse_family)]
    family: Option<crate::sam::ModelFamily>,
    #[command(flatten)]
    tiles: super::TileArgs,
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
    discretize: Option<crate::adapt::Discretize>,
    /// Learning rate of the cells' conv kernels [default: --lr].
    #[arg(long)]
    op_lr: Option<f64>,
    /// Adam β1 of α [default: 0.9].
    #[arg(long)]
    alpha_beta1: Option<f64>,
    /// First-order bi-level search (α on one half of the training objects, weights on the other).
    #[arg(long)]
    bilevel: bool,
    /// How each cell's op is picked at consolidation: the largest α, or DARTS-PT (the op whose
    /// removal raises the training loss most; ties to identity) [default: alpha].
    #[arg(long, value_enum)]
    select: Option<crate::adapt::select::OpSelect>,
    /// Keep the best adapter whenever it beats the base on validation, even when the gain's
    /// interval includes zero (for method comparisons on a separate test set).
    #[arg(long)]
    keep_any_gain: bool,
    /// How the NAS cell combines its ops: plain `Σ w·op(z)`, residual `z + Σ w·op(z)` or gated
    /// `z + g·Σ w·op(z)` (g from 0; both with candidates zero and the spatial ops)
    /// [default: plain].
    #[arg(long, value_enum)]
    cell: Option<crate::adapt::CellForm>,
    /// Grid the qkv cell sees in windowed blocks.
    #[arg(long, value_enum)]
    grid: Option<crate::adapt::CellGrid>,
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
    let cell = a.cell.unwrap_or(d_adapter.cell);
    let ops = if a.ops.is_empty() {
        OpKind::defaults(cell)
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
        cell,
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
            select: a.select.unwrap_or(d_sched.select),
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
        require_significant_gain: !a.keep_any_gain,
        ..Default::default()
    };
    cfg.validate()?;
    Ok(cfg)
}

pub fn run(a: TrainArgs, dev: device::ComputeDevice) -> Result<()> {
    let cfg = train_config(&a)?;
    let tiles = a.tiles.config();
    tiles.validate()?;
    let mut data = TrainData::from_dir(&a.data, cfg.min_area)?;
    let split = data.split(cfg.val_split, cfg.seed);
    // After the split, so that tiles of a validation image are never trained on.
    let (data, tiled) = crate::train::tiles::into_tiles(data, &tiles);
    if tiled.images_tiled > 0 {
        eprintln!(
            "tiles: {} images above --tile-above {} → {} crops of {} px + halo {} ({} objects \
             larger than a tile in their own crop)",
            tiled.images_tiled,
            tiles.tile_above,
            tiled.crops,
            tiles.tile,
            tiles.halo,
            tiled.own_crops
        );
    }
    eprintln!("device: {}", dev.description);
    eprintln!(
        "data: {} objects in {} images → {} train / {} validation, split {split}",
        data.objects.len(),
        data.images.len(),
        data.train.len(),
        data.val.len()
    );
    let (base, info) = crate::sam::load_sam_as(&a.model, None, a.family, &dev.device)?;
    print_plan(&base, &info, &cfg, &dev);
    let cancel = Arc::new(AtomicBool::new(false));
    {
        let c = cancel.clone();
        let _ = ctrlc_hook(move || c.store(true, Ordering::Relaxed));
    }
    if let Some(p) = &a.report {
        ensure_output_folder(p)?;
    }
    let test_pairs = a.test_data.as_deref().map(list_pairs).transpose()?;
    let pb = bar(cfg.schedule.steps as u64, "train");
    let mut log = RunLog::default();
    let mut emit = |ev: TrainEvent| {
        log.record(&ev);
        show_event(&pb, a.method, ev);
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
    // What the written file holds (its cells' ops and α), read back once from its card.
    let file_card = match &o.adapter_path {
        Some(p) => Some(crate::adapt::file::read_card(p)?),
        None => None,
    };
    print_alpha_table(&o, file_card.as_ref(), &log);
    print_outcome(&o, &a.out, &log);
    let test = match &test_pairs {
        Some(pairs) => held_out(&base, &info, &o, &dev, pairs, cfg.min_area, &tiles)?,
        None => HeldOutTest::default(),
    };
    if let Some(pairs_dir) = a.test_data.as_deref() {
        print_test(&test, pairs_dir, o.improved);
    }
    if let Some(path) = &a.report {
        let method = a.method.name();
        TrainReport::new(
            method,
            &dev.description,
            &o,
            &data,
            &log,
            file_card.as_ref(),
            test,
        )
        .save(path)?;
        eprintln!("report: {}", path.display());
    }
    Ok(())
}

/// The planner's estimate for this run (compute, time, memory) and its suggestions.
fn print_plan(base: &Sam, info: &CheckpointInfo, cfg: &TrainConfig, dev: &device::ComputeDevice) {
    let plan = crate::engine::plan_training(base, info, cfg, dev);
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

/// A training event on the progress bar, or as lines above it.
fn show_event(pb: &ProgressBar, method: Method, ev: TrainEvent) {
    match ev {
        TrainEvent::Started {
            total_steps,
            start_step,
            trainable_params,
            total_params,
            stage_steps,
            ..
        } => {
            pb.set_length(total_steps as u64);
            pb.set_position(start_step as u64);
            say(
                pb,
                format!(
                    "method {}: {trainable_params} trainable of {total_params} parameters ({:.3}%); stages: warm-up 0..{}, search {}..{}, consolidate {}..{}",
                    method.name(),
                    100.0 * trainable_params as f64 / total_params as f64,
                    stage_steps.0,
                    stage_steps.0,
                    stage_steps.1,
                    stage_steps.1,
                    total_steps
                ),
            );
        }
        TrainEvent::Step {
            step,
            loss,
            stage,
            lr,
            elapsed_s,
            ..
        } => {
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
        TrainEvent::StageChanged {
            step,
            stage,
            chosen,
        } => {
            say(pb, format!("step {step}: stage → {}", stage.name()));
            if !chosen.is_empty() {
                let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
                for (_, o) in &chosen {
                    *counts.entry(o.clone()).or_default() += 1;
                }
                say(pb, format!("  cells discretised: {counts:?}"));
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
                pb,
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
                pb,
                format!(
                    "cancelled at step {step}; continue with --resume (state in {})",
                    resume_dir.display()
                ),
            );
        }
        TrainEvent::Alpha { .. } | TrainEvent::Finished(_) | TrainEvent::Error(_) => {}
    }
}

/// softmax(α/T) per cell: of the written file's cells (what was tested), else the last step's.
fn print_alpha_table(o: &TrainOutcome, file_card: Option<&AdapterCard>, log: &RunLog) {
    let file_cells: Option<Vec<(String, Vec<f32>)>> = file_card.map(|c| {
        c.cells
            .iter()
            .map(|c| (c.name.clone(), c.weights.clone()))
            .collect()
    });
    let (title, rows, chosen_ops): (&str, Vec<(String, Vec<f32>)>, _) = match file_cells {
        Some(rows) if !rows.is_empty() => ("of the written adapter", rows, &o.chosen_ops),
        _ => (
            "at the last step (no adapter written)",
            log.cells
                .iter()
                .cloned()
                .zip(log.last_alpha.iter().cloned())
                .collect(),
            &log.last_chosen,
        ),
    };
    if rows.is_empty() {
        return;
    }
    println!("architecture weights softmax(α/T) {title}:");
    print!("{:<44}", "cell");
    for op in &log.ops {
        print!(" {op:>11}");
    }
    println!("  chosen");
    for (name, w) in &rows {
        print!("{name:<44}");
        for v in w {
            print!(" {v:>11.3}");
        }
        let chosen = chosen_ops
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, op)| op.as_str())
            .unwrap_or("-");
        println!("  {chosen}");
    }
}

/// Validation scores, the outcome's message, where the adapter went and the step times.
fn print_outcome(o: &TrainOutcome, out: &Path, log: &RunLog) {
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
            out.display(),
            crate::adapt::file::card_path(out).display()
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
    if let Some(t) = log.step_timing() {
        println!(
            "step time: first {:.2} s (kernel compilation, prefix caching), median {:.3} s, mean {:.3} s over steps 2..{} (validation included in the mean)",
            t.first_s, t.median_s, t.mean_s, o.steps_done
        );
    }
}

/// The held-out test with a progress bar per (model, prompt).
fn held_out(
    base: &Sam,
    info: &CheckpointInfo,
    o: &TrainOutcome,
    dev: &device::ComputeDevice,
    pairs: &[(PathBuf, PathBuf)],
    min_area: usize,
    tiles: &TileConfig,
) -> Result<HeldOutTest> {
    let mut progress = TestProgress::default();
    let adapter = o.adapter_path.as_deref();
    test_held_out(
        base,
        info,
        adapter,
        dev,
        &TestSet {
            pairs,
            min_area,
            tiles: *tiles,
        },
        &mut |m, p, done, total| progress.show(m, p, done, total),
    )
}

/// One progress bar per (model, prompt) of the held-out test.
#[derive(Default)]
struct TestProgress {
    current: Option<(String, EvalPrompt, ProgressBar)>,
}

impl TestProgress {
    fn show(&mut self, model: &str, prompt: EvalPrompt, done: usize, total: usize) {
        if !matches!(&self.current, Some((m, p, _)) if m == model && *p == prompt) {
            let pb = bar(0, &format!("test {model} {prompt:?}"));
            if let Some((_, _, old)) = self.current.replace((model.to_string(), prompt, pb)) {
                old.finish_and_clear();
            }
        }
        if let Some((_, _, pb)) = &self.current {
            pb.set_length(total as u64);
            pb.set_position(done as u64);
        }
    }
}

impl Drop for TestProgress {
    fn drop(&mut self) {
        if let Some((_, _, pb)) = self.current.take() {
            pb.finish_and_clear();
        }
    }
}

fn print_test(t: &HeldOutTest, dir: &Path, improved: bool) {
    println!(
        "held-out test ({}):\n{:<10} {:<6} {:>9} {:>9} {:>8}",
        dir.display(),
        "model",
        "prompt",
        "Dice",
        "IoU",
        "objects"
    );
    for (name, prompt, r) in t.rows() {
        println!(
            "{name:<10} {:<6} {:>9.4} {:>9.4} {:>8}",
            format!("{prompt:?}").to_lowercase(),
            r.mean_dice,
            r.mean_iou,
            r.n_objects
        );
    }
    if !improved {
        println!("(no adapter was kept, so the base model is what this run leaves you with)");
    }
}
