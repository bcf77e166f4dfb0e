//! What the Adapt panel shows about the current (or last) training run: loss, validation
//! Dice/IoU, architecture weights and stages, built from the trainer's events.

use std::path::PathBuf;

use crate::service::tasks::TaskId;
use crate::train::schedule::Stage;
use crate::train::{TrainConfig, TrainEvent, TrainOutcome};

/// Everything the Adapt panel shows about the current (or last) run.
#[derive(Default)]
pub struct TrainView {
    /// The training job while it runs.
    pub task: Option<TaskId>,
    pub status: String,
    pub total_steps: usize,
    pub start_step: usize,
    pub n_train: usize,
    pub n_val: usize,
    pub trainable_params: usize,
    pub total_params: usize,
    pub stage_steps: (usize, usize),
    pub op_names: Vec<String>,
    pub cell_names: Vec<String>,
    pub step: usize,
    pub stage: Option<Stage>,
    pub elapsed_s: f64,
    pub eta_s: f64,
    pub lr: f64,
    pub loss: Vec<[f64; 2]>,
    pub mask_loss: Vec<[f64; 2]>,
    pub iou_loss: Vec<[f64; 2]>,
    pub val_dice: Vec<[f64; 2]>,
    pub val_iou: Vec<[f64; 2]>,
    pub base: Option<(f64, f64)>,
    pub best: Option<(usize, f64)>,
    /// softmax(α) per cell at the latest step.
    pub alpha: Option<(usize, Vec<Vec<f32>>)>,
    /// Mean softmax(α) over cells, per op, over steps (for the lines plot).
    pub alpha_mean: Vec<(usize, Vec<f32>)>,
    /// Per cell, per op, over steps (subsampled) — lines of one selected cell.
    pub alpha_hist: Vec<(usize, Vec<Vec<f32>>)>,
    pub stage_changes: Vec<(usize, Stage)>,
    pub chosen: Vec<(String, String)>,
    pub outcome: Option<TrainOutcome>,
    pub cancelled: Option<(usize, PathBuf)>,
    pub error: Option<String>,
    /// Settings and output of the last run (for resume).
    pub last: Option<(TrainConfig, PathBuf)>,
    pub events_seen: usize,
    pub alpha_cell: usize,
}

impl TrainView {
    pub fn running(&self) -> bool {
        self.task.is_some()
    }

    /// Clears the plots for a new run (keeps `last`).
    pub fn reset(&mut self) {
        let last = self.last.take();
        let cell = self.alpha_cell;
        *self = TrainView {
            last,
            alpha_cell: cell,
            ..Default::default()
        };
    }

    pub fn progress(&self) -> f32 {
        if self.total_steps == 0 {
            0.0
        } else {
            self.step as f32 / self.total_steps as f32
        }
    }

    /// Applies one event.
    pub fn apply(&mut self, e: TrainEvent) {
        self.events_seen += 1;
        match e {
            TrainEvent::Started {
                total_steps,
                start_step,
                n_train,
                n_val,
                trainable_params,
                total_params,
                stage_steps,
                op_names,
                cell_names,
            } => {
                self.total_steps = total_steps;
                self.start_step = start_step;
                self.step = start_step;
                self.n_train = n_train;
                self.n_val = n_val;
                self.trainable_params = trainable_params;
                self.total_params = total_params;
                self.stage_steps = stage_steps;
                self.op_names = op_names;
                self.cell_names = cell_names;
                self.status = "training…".into();
            }
            TrainEvent::Step {
                step,
                loss,
                mask_loss,
                iou_loss,
                lr,
                stage,
                elapsed_s,
                eta_s,
                ..
            } => {
                self.step = step;
                self.loss.push([step as f64, loss]);
                self.mask_loss.push([step as f64, mask_loss]);
                self.iou_loss.push([step as f64, iou_loss]);
                self.lr = lr;
                if self.stage.is_none() {
                    self.stage_changes.push((step.saturating_sub(1), stage));
                }
                self.stage = Some(stage);
                self.elapsed_s = elapsed_s;
                self.eta_s = eta_s;
                tracing::info!("training step {step}: loss {loss:.4}, {elapsed_s:.1} s elapsed");
            }
            TrainEvent::Alpha { step, weights } => {
                if !weights.is_empty() {
                    let n_ops = weights[0].len();
                    let mean: Vec<f32> = (0..n_ops)
                        .map(|o| {
                            weights
                                .iter()
                                .map(|w| w.get(o).copied().unwrap_or(0.0))
                                .sum::<f32>()
                                / weights.len() as f32
                        })
                        .collect();
                    self.alpha_mean.push((step, mean));
                    // Keep at most ~400 snapshots of every cell.
                    if self.alpha_hist.len() >= 400 {
                        self.alpha_hist = self.alpha_hist.iter().step_by(2).cloned().collect();
                    }
                    self.alpha_hist.push((step, weights.clone()));
                }
                self.alpha = Some((step, weights));
            }
            TrainEvent::StageChanged {
                step,
                stage,
                chosen,
            } => {
                self.stage = Some(stage);
                self.stage_changes.push((step, stage));
                if !chosen.is_empty() {
                    self.chosen = chosen;
                }
            }
            TrainEvent::Validation {
                step,
                dice,
                iou,
                is_base,
                best,
            } => {
                if is_base {
                    self.base = Some((dice, iou));
                }
                self.val_dice.push([step as f64, dice]);
                self.val_iou.push([step as f64, iou]);
                if best || is_base && self.best.is_none() {
                    self.best = Some((step, dice));
                }
            }
            TrainEvent::Finished(o) => {
                if !o.chosen_ops.is_empty() {
                    self.chosen = o.chosen_ops.clone();
                }
                self.status = o.message.clone();
                self.outcome = Some(o);
            }
            TrainEvent::Cancelled { step, resume_dir } => {
                self.status = format!("cancelled at step {step}; Resume continues from there");
                self.cancelled = Some((step, resume_dir));
            }
            TrainEvent::Error(e) => {
                self.error = Some(e.clone());
                self.status = e;
            }
        }
    }
}
