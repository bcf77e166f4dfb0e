//! `segadapt train`: the flags, the `TrainConfig` they make, and the run with its progress,
//! α table, step timing, held-out test and JSON report.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Result;

use super::{bar, ctrlc_hook, ensure_output_folder, say};
use crate::adapt::{AdapterConfig, Method, OpInit, OpKind, Placement};
use crate::device;
use crate::eval::{EvalPrompt, evaluate, list_pairs};
use crate::fsutil::atomic_write;
use crate::train::loss::LossKind;
use crate::train::prompts::PromptMix;
use crate::train::schedule::Schedule;
use crate::train::{TrainConfig, TrainData, TrainEvent, train};

#[derive(clap::Args)]
pub struct TrainArgs {
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

pub fn run(a: TrainArgs, dev: device::ComputeDevice) -> Result<()> {
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
    let (base, info) = crate::sam::load_sam(&a.model, None, &dev.device)?;
    {
        let mut probe = base.clone();
        crate::adapt::apply_adapters(&mut probe, &cfg.adapter, &dev.device);
        let first =
            crate::adapt::first_adapted_stage(&probe).unwrap_or(base.image_encoder.num_stages());
        let budget = 8192.0; // MiB: the target for a batch-1 ViT-B step
        let plan = crate::train::planner::plan(&info.config, &cfg, first, &dev.device, budget);
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
    if let Some(p) = &a.report {
        ensure_output_folder(p)?;
    }
    let test_pairs = a.test_data.as_deref().map(list_pairs).transpose()?;
    let pb = bar(cfg.schedule.steps as u64, "train");
    let mut step_times: Vec<(usize, f64)> = Vec::new();
    let mut stage_of_step: Vec<(usize, crate::train::schedule::Stage)> = Vec::new();
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
        Some(p) => Some(crate::adapt::file::read_card(p)?),
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
            crate::adapt::file::card_path(&a.out).display()
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
            crate::train::schedule::Stage::Warmup,
            crate::train::schedule::Stage::Search,
            crate::train::schedule::Stage::Consolidate,
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
            let m = crate::engine::with_adapter(base.clone(), info.clone(), adapter, dev.clone())?;
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
