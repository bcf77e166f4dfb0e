//! Which adapter a run hands over: validation at its steps, the best candidate staged in the
//! resume folder, patience, and at the end the kept file, the outcome and its message.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::module::Module;

use super::best::{MIN_GAIN, Selection, chosen_ops, final_path};
use super::config::TrainConfig;
use super::dataset::TrainData;
use super::events::{TrainEvent, TrainOutcome};
use super::schedule::Stage;
use super::trainer::TrainRun;
use super::validation::{ValScores, gain_interval, validate_objects};
use crate::adapt::file::{AdapterCard, card_path, save_adapter};
use crate::adapt::{CellState, cells, set_training};
use crate::sam::Sam;

/// Validate every this many steps (`val_every`, else 10 times per run).
fn val_every(cfg: &TrainConfig) -> usize {
    if cfg.val_every > 0 {
        cfg.val_every
    } else {
        (cfg.schedule.steps / 10).max(1)
    }
}

impl TrainRun<'_> {
    /// Scores the base model: the bar every candidate must clear.
    pub(super) fn validate_base(&mut self) {
        let v = validate_objects(&self.model().valid(), self.data, self.device);
        let (d, i) = (v.dice, v.iou);
        self.sel.base_objects = v.per_object;
        self.sel.base_score = (d, i);
        self.sel.best = (d, i, 0);
        self.emit(TrainEvent::Validation {
            step: 0,
            dice: d,
            iou: i,
            is_base: true,
            best: false,
        });
    }

    /// Validates when this step is due and stages the model if it is the best candidate so
    /// far. Returns whether patience ran out.
    pub(super) fn validate_and_checkpoint(&mut self) -> Result<bool> {
        let (cfg, sched, step) = (self.cfg, &self.cfg.schedule, self.step);
        let has_cells = cfg.adapter.method.has_cell();
        // Consolidated states are the NAS methods' only candidates: validate them twice as often.
        let every = if has_cells && self.stage == Stage::Consolidate {
            (val_every(cfg) / 2).max(1)
        } else {
            val_every(cfg)
        };
        if !(step % every == 0 || step == sched.steps) {
            return Ok(false);
        }
        let mut valid = self.model().valid();
        set_training(&mut valid, false);
        let v = validate_objects(&valid, self.data, self.device);
        let candidate = !has_cells || all_discrete(&valid);
        // A gain below MIN_GAIN is noise (a few boundary pixels), not a better model.
        let improved = candidate && v.dice > self.sel.best.0 + MIN_GAIN;
        if improved {
            self.keep_candidate(&valid, &v)?;
        } else {
            self.sel.since_best += 1;
        }
        self.emit(TrainEvent::Validation {
            step,
            dice: v.dice,
            iou: v.iou,
            is_base: false,
            best: improved,
        });
        let may_stop = step > sched.boundaries().1;
        Ok(cfg.early_stop_patience > 0
            && may_stop
            && self.sel.since_best >= cfg.early_stop_patience
            && step < sched.steps)
    }

    /// The new best: its scores, and its file staged in the resume folder (it replaces `out`
    /// only if kept at the end).
    fn keep_candidate(&mut self, valid: &Sam, v: &ValScores) -> Result<()> {
        let (cfg, step, (d, i)) = (self.cfg, self.step, (v.dice, v.iou));
        let sel = &mut self.sel;
        sel.best = (d, i, step);
        sel.since_best = 0;
        sel.best_chosen = chosen_ops(valid);
        sel.best_ci = gain_interval(&v.per_object, &sel.base_objects);
        let mut card = AdapterCard::new(valid, self.info, &cfg.adapter, cfg.train_decoder);
        card.training = serde_json::json!({
            "config": cfg,
            "data": self.data.manifest(split_label(self.data)),
            "validation": {"step": step, "dice": d, "iou": i, "base_dice": sel.base_score.0, "base_iou": sel.base_score.1, "prompt": "mean of tight box and interior point",
                "gain_ci95": sel.best_ci, "objects": v.per_object.len(),
                "note": "the same objects selected this checkpoint: the gain is biased upward; the interval is a paired bootstrap over them"},
            "seed": cfg.seed,
        });
        let rdir = &self.rdir;
        std::fs::create_dir_all(rdir)
            .with_context(|| format!("cannot create {}", rdir.display()))?;
        save_adapter(valid, &card, &staged_path(rdir))
    }

    /// Writes the last state when asked, keeps the best candidate if it beat the base (and,
    /// when required, beyond noise), removes the resume folder and announces the outcome.
    pub(super) fn finish(mut self) -> Result<TrainOutcome> {
        let (cfg, out) = (self.cfg, self.out);
        if cfg.save_final {
            let valid = self.model().valid();
            let card = AdapterCard::new(&valid, self.info, &cfg.adapter, cfg.train_decoder);
            save_adapter(&valid, &card, &final_path(out))?;
        }
        let sel = &self.sel;
        let beat = sel.best.0 > sel.base_score.0 && sel.best.2 > 0;
        let significant = sel.best_ci.is_some_and(|(lo, _)| lo > 0.0);
        let improved = beat && (significant || !cfg.require_significant_gain);
        if improved {
            let staged = staged_path(&self.rdir);
            std::fs::rename(&staged, out).with_context(|| {
                format!("cannot move {} to {}", staged.display(), out.display())
            })?;
            std::fs::rename(card_path(&staged), card_path(out))
                .with_context(|| format!("cannot write {}", card_path(out).display()))?;
        }
        let _ = std::fs::remove_dir_all(&self.rdir);
        let message = outcome_message(sel, cfg, self.data, beat, improved);
        let outcome = TrainOutcome {
            base_dice: sel.base_score.0,
            base_iou: sel.base_score.1,
            best_dice: sel.best.0,
            best_iou: sel.best.1,
            best_step: sel.best.2,
            improved,
            adapter_path: improved.then(|| out.to_path_buf()),
            steps_done: self.step,
            seconds: self.t0.elapsed().as_secs_f64(),
            stopped_early: self.stopped_early,
            chosen_ops: if improved {
                sel.best_chosen.clone()
            } else {
                Vec::new()
            },
            gain_ci95: sel.best_ci,
            message,
        };
        self.emit(TrainEvent::Finished(outcome.clone()));
        Ok(outcome)
    }
}

/// The outcome in plain words, with what to try when no adapter was kept.
fn outcome_message(
    sel: &Selection,
    cfg: &TrainConfig,
    data: &TrainData,
    beat: bool,
    improved: bool,
) -> String {
    let (base, best) = (sel.base_score, sel.best);
    let ci_text = sel.best_ci.map_or(String::new(), |(lo, hi)| {
        format!(
            "; per-object gain 95% interval [{lo:+.4}, {hi:+.4}] on {} validation objects",
            sel.base_objects.len()
        )
    });
    if improved {
        format!(
            "adapted model beats the base on the validation split: Dice {:.4} → {:.4}, IoU {:.4} → {:.4} (best at step {}{ci_text})",
            base.0, best.0, base.1, best.1, best.2
        )
    } else if beat {
        format!(
            "the best adapter scored Dice {:.4} against the base's {:.4} on the validation split (step {}{ci_text}), a gain within the noise of these few objects; the base model stays active and no adapter file was written. \
             Annotate more objects for a validation that can tell",
            best.0, base.0, best.2
        )
    } else {
        format!(
            "no adapter beat the base model on the validation split (base Dice {:.4}; no {}validation improved on it by {MIN_GAIN}); the base model stays active and no adapter file was written. \
             Try: more annotated objects (validation has {}), a prompt mix closer to how you will prompt, or fewer steps / a lower learning rate",
            base.0,
            if cfg.adapter.method.has_cell() {
                "consolidated "
            } else {
                ""
            },
            data.val.len()
        )
    }
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

fn all_discrete(model: &Sam) -> bool {
    cells(model)
        .iter()
        .all(|(_, c)| matches!(c.state, CellState::Discrete(_)))
}
