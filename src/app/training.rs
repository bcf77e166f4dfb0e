//! The Adapt panel's engine side: a training thread fed from the project's accepted objects,
//! and the state the panel plots (loss, validation Dice/IoU, architecture weights, stages).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::time::Instant;

use crate::device::ComputeDevice;
use crate::project::project::read_mask_file;
use crate::train::dataset::Object;
use crate::train::schedule::Stage;
use crate::train::{TrainConfig, TrainData, TrainEvent, TrainOutcome};

use super::Waker;
use super::worker::ModelSpec;

/// One image and its accepted objects' mask files.
#[derive(Clone, Debug)]
pub struct TrainImage {
    pub name: String,
    pub path: PathBuf,
    pub masks: Vec<PathBuf>,
}

pub struct TrainRequest {
    pub model: ModelSpec,
    pub images: Vec<TrainImage>,
    pub config: TrainConfig,
    pub out: PathBuf,
    pub resume: bool,
    pub device: ComputeDevice,
    /// Fires when the masks queued for writing are on disk.
    pub flushed: Option<Receiver<()>>,
}

pub enum TrainMsg {
    Status(String),
    Event(TrainEvent),
    /// Ok(None) = cancelled.
    Done(Result<Option<TrainOutcome>, String>),
}

pub struct TrainHandle {
    pub rx: Receiver<TrainMsg>,
    pub cancel: Arc<AtomicBool>,
    pub started: Instant,
}

impl TrainHandle {
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}

pub fn spawn(req: TrainRequest, waker: Waker) -> TrainHandle {
    let (tx, rx) = std::sync::mpsc::channel();
    let cancel = Arc::new(AtomicBool::new(false));
    let c = cancel.clone();
    let w = waker.clone();
    let spawned = std::thread::Builder::new()
        .name("trainer".into())
        .spawn(move || {
            super::lower_thread_priority();
            let tx2 = tx.clone();
            let res =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(req, &tx, &c, &w)));
            let done = match res {
                Ok(r) => r,
                Err(p) => {
                    let msg = p
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| p.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    Err(format!("training failed inside the engine: {msg}"))
                }
            };
            let _ = tx2.send(TrainMsg::Done(done));
            waker.wake();
        });
    if let Err(e) = spawned {
        let (tx, rx2) = std::sync::mpsc::channel();
        let _ = tx.send(TrainMsg::Done(Err(format!(
            "cannot start the training thread: {e}"
        ))));
        return TrainHandle {
            rx: rx2,
            cancel,
            started: Instant::now(),
        };
    }
    TrainHandle {
        rx,
        cancel,
        started: Instant::now(),
    }
}

fn run(
    req: TrainRequest,
    tx: &Sender<TrainMsg>,
    cancel: &AtomicBool,
    waker: &Waker,
) -> Result<Option<TrainOutcome>, String> {
    let status = |s: String| {
        let _ = tx.send(TrainMsg::Status(s));
        waker.wake();
    };
    if let Some(f) = &req.flushed {
        let _ = f.recv_timeout(std::time::Duration::from_secs(30));
    }
    status("loading the annotated images…".into());
    let mut images = Vec::new();
    let mut names = Vec::new();
    let mut objects = Vec::new();
    for ti in &req.images {
        if ti.masks.is_empty() {
            continue;
        }
        let img = crate::project::import::load_rgb(&ti.path).map_err(|e| format!("{e:#}"))?;
        let (w, h) = (img.width() as usize, img.height() as usize);
        let idx = images.len();
        for m in &ti.masks {
            let mask = read_mask_file(m, w, h).map_err(|e| format!("{e:#}"))?;
            let area = mask.iter().filter(|&&v| v).count();
            if area >= req.config.min_area.max(1) {
                objects.push(Object {
                    image: idx,
                    mask,
                    area,
                });
            }
        }
        images.push(img);
        names.push(ti.name.clone());
    }
    if objects.len() < 2 {
        return Err(format!(
            "Adapt needs at least 2 accepted objects (one to train on, one to validate); the project has {}",
            objects.len()
        ));
    }
    let mut data = TrainData::new(images, names, objects);
    let how = data.split(req.config.val_split, req.config.seed);
    status(format!(
        "{} objects: {} train, {} validation (split {how}); loading the base model…",
        data.objects.len(),
        data.train.len(),
        data.val.len()
    ));
    let (sam, info) = crate::sam::load_sam(
        &req.model.path,
        req.model.config.clone(),
        &req.device.device,
    )
    .map_err(|e| format!("{e}"))?;
    status("training…".into());
    let mut emit = |e: TrainEvent| {
        let _ = tx.send(TrainMsg::Event(e));
        waker.wake();
    };
    crate::train::train(
        &sam,
        &info,
        &data,
        &req.config,
        &req.device.device,
        &req.out,
        req.resume,
        &mut emit,
        cancel,
    )
    .map_err(|e| format!("{e:#}"))
}

/// Everything the Adapt panel shows about the current (or last) run.
#[derive(Default)]
pub struct TrainView {
    pub handle: Option<TrainHandle>,
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
        self.handle.is_some()
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

pub fn stage_color(s: Stage) -> egui::Color32 {
    match s {
        Stage::Warmup => egui::Color32::from_rgb(120, 160, 230),
        Stage::Search => egui::Color32::from_rgb(240, 170, 60),
        Stage::Consolidate => egui::Color32::from_rgb(110, 200, 120),
    }
}

/// Colour map for α heatmaps (0 → dark blue, 1 → yellow).
pub fn heat(v: f32) -> egui::Color32 {
    let v = v.clamp(0.0, 1.0);
    let stops = [
        (0.0, [30, 30, 80]),
        (0.35, [40, 110, 160]),
        (0.65, [90, 190, 110]),
        (1.0, [250, 230, 60]),
    ];
    for w in stops.windows(2) {
        let ((a, ca), (b, cb)) = (w[0], w[1]);
        if v <= b {
            let t = (v - a) / (b - a);
            let mix = |i: usize| (ca[i] as f32 + (cb[i] as f32 - ca[i] as f32) * t).round() as u8;
            return egui::Color32::from_rgb(mix(0), mix(1), mix(2));
        }
    }
    egui::Color32::from_rgb(250, 230, 60)
}

pub fn fmt_duration(s: f64) -> String {
    if !s.is_finite() || s < 0.0 {
        return "–".into();
    }
    let s = s.round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}
