//! The best candidate so far: the scores that pick the written adapter (carried across a
//! resume), the gain that counts, and where the final state is written.

use std::path::{Path, PathBuf};

use super::config::TrainConfig;
use super::resume::ResumeState;
use crate::adapt::cells;
use crate::sam::{CheckpointInfo, Sam};

/// Smallest validation Dice gain that counts as better.
pub const MIN_GAIN: f64 = 1e-4;

pub fn final_path(out: &Path) -> PathBuf {
    let stem = out
        .file_stem()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    out.with_file_name(format!("{stem}.final.safetensors"))
}

/// The scores that pick the written adapter; a resumed run carries them on.
pub(super) struct Selection {
    pub(super) base_score: (f64, f64),
    /// Best saved candidate: (Dice, IoU, step).
    pub(super) best: (f64, f64, usize),
    pub(super) since_best: usize,
    pub(super) best_chosen: Vec<(String, String)>,
    /// Per-object validation Dice of the base model.
    pub(super) base_objects: Vec<f64>,
    pub(super) best_ci: Option<(f64, f64)>,
}

impl Selection {
    pub(super) fn new() -> Self {
        Self {
            base_score: (0.0, 0.0),
            best: (f64::NEG_INFINITY, 0.0, 0),
            since_best: 0,
            best_chosen: Vec::new(),
            base_objects: Vec::new(),
            best_ci: None,
        }
    }

    pub(super) fn from_resume(s: &ResumeState) -> Self {
        Self {
            base_score: s.base_score,
            best: s.best,
            since_best: s.since_best,
            best_chosen: s.best_chosen.clone(),
            base_objects: s.base_objects.clone(),
            best_ci: s.best_ci,
        }
    }

    pub(super) fn resume_state(
        &self,
        cfg: &TrainConfig,
        info: &CheckpointInfo,
        next_step: usize,
    ) -> ResumeState {
        ResumeState {
            config: cfg.clone(),
            base_sha256: info.sha256.clone(),
            next_step,
            base_score: self.base_score,
            best: self.best,
            since_best: self.since_best,
            best_chosen: self.best_chosen.clone(),
            base_objects: self.base_objects.clone(),
            best_ci: self.best_ci,
            cell_states: Vec::new(),
        }
    }
}

/// Chosen op per discrete cell.
pub(super) fn chosen_ops(model: &Sam) -> Vec<(String, String)> {
    cells(model)
        .iter()
        .filter_map(|(n, c)| c.chosen().map(|o| (n.clone(), o.name().to_string())))
        .collect()
}
