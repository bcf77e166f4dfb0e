//! The NAS-LoRA trainer: stage-wise schedule, per-group optimisers, validation-driven
//! checkpointing, cancel and resume.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::module::{ModuleMapper, Param, ParamGroup, ParamId};
use burn::optim::lr_scheduler::module_lr_scheduler::{ModuleLearningRate, ModuleLrScheduler};
use burn::optim::{AdamConfig, AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::prelude::*;

pub use super::config::TrainConfig;
use super::dataset::TrainData;
use super::events::{TrainEvent, TrainOutcome};
use super::resume::{self, ResumeState, resume_dir};
use super::schedule::{Schedule, Stage};
use super::step::{ObjectPool, PrefixCache, StepInputs, batch_loss, step_rng};
pub use super::validation::{ValScores, gain_interval, validate, validate_objects};
use crate::adapt::file::{AdapterCard, card_path, save_adapter};
use crate::adapt::{
    CellState, apply_adapters, cells, discretise_cells, first_adapted_stage, for_each_branch,
    param_counts, set_cell_states, set_training,
};
use crate::sam::{CheckpointInfo, Sam};

pub fn final_path(out: &Path) -> PathBuf {
    let stem = out
        .file_stem()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    out.with_file_name(format!("{stem}.final.safetensors"))
}

/// Parameter ids derived from module paths, so optimizer state saved by one process maps onto
/// the same parameters in another (resume).
struct StableIds {
    path: Vec<String>,
}

impl ModuleMapper for StableIds {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.path.join(".").hash(&mut h);
        let (_, t, _) = param.consume();
        Param::initialized(ParamId::from(h.finish()), t)
    }
}

fn trainable_group(train_decoder: bool) -> ParamGroup {
    let re = if train_decoder {
        r"(_adapter\.)|(mask_decoder\.)"
    } else {
        r"_adapter\."
    };
    ParamGroup::from_regex(re).expect("valid regex")
}

fn make_optimizer(cfg: &TrainConfig) -> ModuleOptimizer {
    AdamWConfig::new()
        .with_weight_decay(cfg.weight_decay as f32)
        .init()
        .with_group(
            ParamGroup::from_predicate("cell.alpha"),
            AdamConfig::new()
                .with_beta_1(cfg.schedule.alpha_beta1 as f32)
                .build(),
            None,
        )
}

/// Smallest validation Dice gain that counts as better.
pub const MIN_GAIN: f64 = 1e-4;

/// Runs training. `emit` receives every event; `cancel` stops at the next step boundary and
/// leaves a resume folder. Returns `Ok(None)` when cancelled.
///
/// For the NAS methods only consolidated states (every cell one op) are candidates for the
/// written adapter, so what the user gets computes one op per cell, and patience counts only
/// validations of the consolidate stage.
#[allow(clippy::too_many_arguments)]
pub fn train(
    base: &Sam,
    info: &CheckpointInfo,
    data: &TrainData,
    cfg: &TrainConfig,
    device: &Device,
    out: &Path,
    resume: bool,
    emit: &mut dyn FnMut(TrainEvent),
    cancel: &AtomicBool,
) -> Result<Option<TrainOutcome>> {
    let t0 = Instant::now();
    cfg.validate()?;
    if data.train.is_empty() || data.val.is_empty() {
        bail!(
            "need at least one training and one validation object (have {} and {})",
            data.train.len(),
            data.val.len()
        );
    }
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.is_dir()
    {
        bail!("output folder {} does not exist", dir.display());
    }
    let rdir = resume_dir(out);
    let state = if resume {
        Some(resume::read_state(&rdir, info, cfg)?)
    } else {
        None
    };

    let sched = &cfg.schedule;
    let has_cells = cfg.adapter.method.has_cell();
    let mut model = base.clone();
    apply_adapters(&mut model, &cfg.adapter, device);
    let mut model = model.map(&mut StableIds { path: Vec::new() });
    let mut optim = make_optimizer(cfg);
    let mut start = 0;
    let mut base_score = (0.0, 0.0);
    let mut best = (f64::NEG_INFINITY, 0.0, 0usize);
    let mut since_best = 0usize;
    let mut best_chosen: Vec<(String, String)> = Vec::new();
    let mut base_objects: Vec<f64> = Vec::new();
    let mut best_ci: Option<(f64, f64)> = None;
    if let Some(s) = &state {
        optim = resume::restore(&mut model, optim, &rdir, s)?;
        start = s.next_step;
        base_score = s.base_score;
        best = s.best;
        since_best = s.since_best;
        best_chosen = s.best_chosen.clone();
        base_objects = s.base_objects.clone();
        best_ci = s.best_ci;
    }
    let ad = device.clone().autodiff();
    // Gradient flags take effect on the autodiff device: freeze the base, train the rest.
    let mut model = model
        .fork(&ad)
        .train()
        .no_grad()
        .set_require_grad_group(trainable_group(cfg.train_decoder), true);
    set_training(&mut model, true);

    let first = first_adapted_stage(&model).unwrap_or(base.image_encoder.num_stages());
    let counts = param_counts(&model);
    let trainable = counts.adapter
        + if cfg.train_decoder {
            counts.mask_decoder
        } else {
            0
        };
    let (s1, s2) = sched.boundaries();
    emit(TrainEvent::Started {
        total_steps: sched.steps,
        start_step: start,
        n_train: data.train.len(),
        n_val: data.val.len(),
        trainable_params: trainable,
        total_params: counts.total,
        stage_steps: if has_cells {
            (s1, s2)
        } else {
            (sched.steps, sched.steps)
        },
        op_names: cfg
            .adapter
            .ops
            .iter()
            .map(|o| o.name().to_string())
            .collect(),
        cell_names: cells(&model).iter().map(|(n, _)| n.clone()).collect(),
    });

    let val_every = if cfg.val_every > 0 {
        cfg.val_every
    } else {
        (sched.steps / 10).max(1)
    };
    if state.is_none() {
        let v = validate_objects(&model.valid(), data, device);
        let (d, i) = (v.dice, v.iou);
        base_objects = v.per_object;
        base_score = (d, i);
        best = (d, i, 0);
        emit(TrainEvent::Validation {
            step: 0,
            dice: d,
            iou: i,
            is_base: true,
            best: false,
        });
    }

    let inputs = StepInputs {
        base,
        data,
        cfg,
        device,
        ad: &ad,
    };
    let mut cache = PrefixCache::new(first);
    let all = ObjectPool::new(data, data.train.clone());
    let (weight_half, arch_half) = ObjectPool::halves(data, cfg.seed);
    let alpha_ids: Vec<ParamId> = cells(&model).iter().map(|(_, c)| c.alpha.id).collect();
    let mut stage = if has_cells {
        sched.stage(start.saturating_sub(1))
    } else {
        Stage::Warmup
    };
    let mut stopped_early = false;
    let mut step = start;
    let step_t0 = Instant::now();
    while step < sched.steps {
        if cancel.load(Ordering::Relaxed) {
            let st = ResumeState {
                config: cfg.clone(),
                base_sha256: info.sha256.clone(),
                next_step: step,
                base_score,
                best,
                since_best,
                best_chosen: best_chosen.clone(),
                base_objects: base_objects.clone(),
                best_ci,
                cell_states: Vec::new(),
            };
            resume::save(&model.valid(), &optim, st, &rdir)?;
            emit(TrainEvent::Cancelled {
                step,
                resume_dir: rdir.clone(),
            });
            return Ok(None);
        }
        if has_cells {
            let s = sched.stage(step);
            if s != stage || step == start {
                match s {
                    Stage::Warmup => set_cell_states(&mut model, CellState::FrozenAlpha),
                    Stage::Search => set_cell_states(&mut model, CellState::Mixed),
                    // Skips cells already discrete (a resumed consolidation).
                    Stage::Consolidate => discretise_cells(&mut model, sched.discretize),
                }
                if s != stage {
                    emit(TrainEvent::StageChanged {
                        step,
                        stage: s,
                        chosen: chosen_ops(&model),
                    });
                }
                stage = s;
            }
            let t = sched.temperature_at(cfg.adapter.alpha_temperature, step);
            for_each_branch(&mut model, |b| {
                if let Some(c) = &mut b.cell {
                    c.temperature = t;
                }
            });
        }
        if step == s2 && step > start {
            // Patience counts validations of the final quarter only, for every method, so a
            // slow start never stops a run and methods are compared under one rule.
            since_best = 0;
        }
        let lr = sched.lr_at(step);
        let bilevel = has_cells && sched.bilevel && stage == Stage::Search;
        if bilevel {
            set_cell_states(&mut model, CellState::FrozenAlpha);
        }
        let pool = if bilevel { &weight_half } else { &all };
        let n = cfg.grad_accum.max(1);
        let (mut loss_sum, mut mask_sum, mut iou_sum, mut aux_sum) = (0.0, 0.0, 0.0, 0.0);
        let mut grads_acc: Option<GradientsParams> = None;
        for micro in 0..n {
            let mut rng = step_rng(cfg.seed, step, micro as u64);
            let l = batch_loss(&model, &inputs, &mut cache, pool, &mut rng);
            mask_sum += l.mask;
            iou_sum += l.iou;
            aux_sum += l.aux;
            let total = l.total / n as f64;
            loss_sum += total.clone().detach().into_scalar::<f32>() as f64 * n as f64;
            let g = GradientsParams::from_grads(total.backward(), &model);
            grads_acc = Some(accumulate(&model, grads_acc, g));
        }
        model = optim.step(
            lr_policy(sched, lr),
            model,
            grads_acc.expect("at least one micro-step"),
        );
        if bilevel {
            // α's step: a batch from the other half of the training objects, α grads only.
            set_cell_states(&mut model, CellState::Mixed);
            let mut rng = step_rng(cfg.seed, step, 0xA7C4);
            let l = batch_loss(&model, &inputs, &mut cache, &arch_half, &mut rng);
            let mut grads = l.total.backward();
            let g = GradientsParams::from_params(&mut grads, &model, &alpha_ids);
            model = optim.step(lr_policy(sched, lr), model, g);
        }
        step += 1;
        let elapsed = step_t0.elapsed().as_secs_f64();
        let done = (step - start) as f64;
        emit(TrainEvent::Step {
            step,
            loss: loss_sum / n as f64,
            mask_loss: mask_sum / n as f64,
            iou_loss: iou_sum / n as f64,
            aux_loss: aux_sum / n as f64,
            lr,
            stage,
            elapsed_s: t0.elapsed().as_secs_f64(),
            eta_s: elapsed / done * (sched.steps - step) as f64,
        });
        if has_cells {
            emit(TrainEvent::Alpha {
                step,
                weights: cells(&model).iter().map(|(_, c)| c.weights()).collect(),
            });
        }
        // Consolidated states are the NAS methods' only candidates: validate them twice as often.
        let every = if has_cells && stage == Stage::Consolidate {
            (val_every / 2).max(1)
        } else {
            val_every
        };
        if step % every == 0 || step == sched.steps {
            let mut valid = model.valid();
            set_training(&mut valid, false);
            let v = validate_objects(&valid, data, device);
            let (d, i) = (v.dice, v.iou);
            let candidate = !has_cells || all_discrete(&valid);
            // A gain below MIN_GAIN is noise (a few boundary pixels), not a better model.
            let improved = candidate && d > best.0 + MIN_GAIN;
            if improved {
                best = (d, i, step);
                since_best = 0;
                best_chosen = chosen_ops(&valid);
                best_ci = gain_interval(&v.per_object, &base_objects);
                let mut card = AdapterCard::new(&valid, info, &cfg.adapter, cfg.train_decoder);
                card.training = serde_json::json!({
                    "config": cfg,
                    "data": data.manifest(split_label(data)),
                    "validation": {"step": step, "dice": d, "iou": i, "base_dice": base_score.0, "base_iou": base_score.1, "prompt": "mean of tight box and interior point",
                        "gain_ci95": best_ci, "objects": v.per_object.len(),
                        "note": "the same objects selected this checkpoint: the gain is biased upward; the interval is a paired bootstrap over them"},
                    "seed": cfg.seed,
                });
                // Staged in the resume folder; it replaces `out` only if kept at the end.
                std::fs::create_dir_all(&rdir)
                    .with_context(|| format!("cannot create {}", rdir.display()))?;
                save_adapter(&valid, &card, &staged_path(&rdir))?;
            } else {
                since_best += 1;
            }
            emit(TrainEvent::Validation {
                step,
                dice: d,
                iou: i,
                is_base: false,
                best: improved,
            });
            let may_stop = step > s2;
            if cfg.early_stop_patience > 0
                && may_stop
                && since_best >= cfg.early_stop_patience
                && step < sched.steps
            {
                stopped_early = true;
                break;
            }
        }
    }
    if cfg.save_final {
        let valid = model.valid();
        let card = AdapterCard::new(&valid, info, &cfg.adapter, cfg.train_decoder);
        save_adapter(&valid, &card, &final_path(out))?;
    }
    let beat = best.0 > base_score.0 && best.2 > 0;
    let significant = best_ci.is_some_and(|(lo, _)| lo > 0.0);
    let improved = beat && (significant || !cfg.require_significant_gain);
    if improved {
        let staged = staged_path(&rdir);
        std::fs::rename(&staged, out)
            .with_context(|| format!("cannot move {} to {}", staged.display(), out.display()))?;
        std::fs::rename(card_path(&staged), card_path(out))
            .with_context(|| format!("cannot write {}", card_path(out).display()))?;
    }
    let _ = std::fs::remove_dir_all(&rdir);
    let ci_text = best_ci.map_or(String::new(), |(lo, hi)| {
        format!(
            "; per-object gain 95% interval [{lo:+.4}, {hi:+.4}] on {} validation objects",
            base_objects.len()
        )
    });
    let message = if improved {
        format!(
            "adapted model beats the base on the validation split: Dice {:.4} → {:.4}, IoU {:.4} → {:.4} (best at step {}{ci_text})",
            base_score.0, best.0, base_score.1, best.1, best.2
        )
    } else if beat {
        format!(
            "the best adapter scored Dice {:.4} against the base's {:.4} on the validation split (step {}{ci_text}), a gain within the noise of these few objects; the base model stays active and no adapter file was written. \
             Annotate more objects for a validation that can tell",
            best.0, base_score.0, best.2
        )
    } else {
        format!(
            "no adapter beat the base model on the validation split (base Dice {:.4}; no {}validation improved on it by {MIN_GAIN}); the base model stays active and no adapter file was written. \
             Try: more annotated objects (validation has {}), a prompt mix closer to how you will prompt, or fewer steps / a lower learning rate",
            base_score.0,
            if has_cells { "consolidated " } else { "" },
            data.val.len()
        )
    };
    let outcome = TrainOutcome {
        base_dice: base_score.0,
        base_iou: base_score.1,
        best_dice: best.0,
        best_iou: best.1,
        best_step: best.2,
        improved,
        adapter_path: improved.then(|| out.to_path_buf()),
        steps_done: step,
        seconds: t0.elapsed().as_secs_f64(),
        stopped_early,
        chosen_ops: if improved { best_chosen } else { Vec::new() },
        gain_ci95: best_ci,
        message,
    };
    emit(TrainEvent::Finished(outcome.clone()));
    Ok(Some(outcome))
}

/// Where the best candidate waits until the run decides to keep it.
fn staged_path(rdir: &Path) -> PathBuf {
    rdir.join("best.safetensors")
}

/// How the validation objects were chosen, as the split left them: whole images when no
/// image has objects on both sides.
fn split_label(data: &TrainData) -> &'static str {
    let train_imgs: std::collections::HashSet<usize> =
        data.train.iter().map(|&o| data.objects[o].image).collect();
    if data
        .val
        .iter()
        .any(|&o| train_imgs.contains(&data.objects[o].image))
    {
        "by object"
    } else {
        "by image"
    }
}

/// Chosen op per discrete cell.
fn chosen_ops(model: &Sam) -> Vec<(String, String)> {
    cells(model)
        .iter()
        .filter_map(|(n, c)| c.chosen().map(|o| (n.clone(), o.name().to_string())))
        .collect()
}

fn all_discrete(model: &Sam) -> bool {
    cells(model)
        .iter()
        .all(|(_, c)| matches!(c.state, CellState::Discrete(_)))
}

fn accumulate(model: &Sam, acc: Option<GradientsParams>, g: GradientsParams) -> GradientsParams {
    match acc {
        None => g,
        Some(acc) => {
            let mut ga = burn::optim::GradientsAccumulator::<Sam>::new();
            ga.accumulate(model, acc);
            ga.accumulate(model, g);
            ga.grads()
        }
    }
}

/// Learning rates of this step: the weights' schedule, α's own rate, and the cells' conv
/// kernels at `op_lr` following the same decay.
fn lr_policy(sched: &Schedule, lr: f64) -> ModuleLearningRate {
    let mut s = ModuleLrScheduler::new(lr)
        .with_group(ParamGroup::from_predicate("cell.alpha"), sched.alpha_lr);
    if let Some(op_lr) = sched.op_lr {
        s = s.with_group(
            ParamGroup::from_predicate("cell.op_weights"),
            op_lr * lr / sched.lr,
        );
    }
    s.step()
}
