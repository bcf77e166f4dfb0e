//! Typed events a training run publishes (the CLI prints them, the app plots them).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::schedule::Stage;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainOutcome {
    pub base_dice: f64,
    pub base_iou: f64,
    pub best_dice: f64,
    pub best_iou: f64,
    pub best_step: usize,
    /// The adapter beat the base model on the validation split.
    pub improved: bool,
    /// Where the best adapter was written (only when it improved).
    pub adapter_path: Option<PathBuf>,
    pub steps_done: usize,
    pub seconds: f64,
    pub stopped_early: bool,
    /// Chosen op per cell of the written file (NAS methods).
    pub chosen_ops: Vec<(String, String)>,
    /// 95% bootstrap interval of the best candidate's per-object validation gain over the base.
    #[serde(default)]
    pub gain_ci95: Option<(f64, f64)>,
    /// A plain-language summary, including what to try when it did not help.
    pub message: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum TrainEvent {
    Started {
        total_steps: usize,
        start_step: usize,
        n_train: usize,
        n_val: usize,
        trainable_params: usize,
        total_params: usize,
        /// First step of search and of consolidation.
        stage_steps: (usize, usize),
        op_names: Vec<String>,
        cell_names: Vec<String>,
    },
    Step {
        step: usize,
        loss: f64,
        mask_loss: f64,
        iou_loss: f64,
        aux_loss: f64,
        lr: f64,
        stage: Stage,
        elapsed_s: f64,
        eta_s: f64,
    },
    /// softmax(α) per cell, rows in `cell_names` order.
    Alpha {
        step: usize,
        weights: Vec<Vec<f32>>,
    },
    StageChanged {
        step: usize,
        stage: Stage,
        chosen: Vec<(String, String)>,
    },
    Validation {
        step: usize,
        dice: f64,
        iou: f64,
        is_base: bool,
        best: bool,
    },
    Finished(TrainOutcome),
    Cancelled {
        step: usize,
        resume_dir: PathBuf,
    },
    Error(String),
}
