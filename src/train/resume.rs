//! What a cancelled run leaves so it can continue exactly where it stopped: the trainable
//! tensors, the optimizer state, the run's counters and each cell's search state.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::optim::ModuleOptimizer;
use burn::store::{ModuleSnapshot, SafetensorsStore};
use serde::{Deserialize, Serialize};

use super::config::{TrainConfig, tensor_regex};
use crate::adapt::{CellState, for_each_named_branch};
use crate::fsutil::atomic_write;
use crate::sam::{CheckpointInfo, Sam};

/// The run's counters at the step boundary where it stopped.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ResumeState {
    pub config: TrainConfig,
    pub base_sha256: String,
    pub next_step: usize,
    pub base_score: (f64, f64),
    /// Best saved candidate: (Dice, IoU, step).
    pub best: (f64, f64, usize),
    pub since_best: usize,
    /// Chosen op per cell of the saved best file.
    #[serde(default)]
    pub best_chosen: Vec<(String, String)>,
    /// Per-object validation Dice of the base model, and the best candidate's gain interval.
    #[serde(default)]
    pub base_objects: Vec<f64>,
    #[serde(default)]
    pub best_ci: Option<(f64, f64)>,
    /// Search state per cell, keyed by branch name (q and v cells have their own).
    pub cell_states: Vec<(String, CellState)>,
}

pub fn resume_dir(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    out.with_file_name(format!("{name}.resume"))
}

/// Reads the resume state and checks it belongs to this base model and these settings.
pub fn read_state(dir: &Path, info: &CheckpointInfo, cfg: &TrainConfig) -> Result<ResumeState> {
    let s = std::fs::read(dir.join("state.json"))
        .with_context(|| format!("no resumable run at {}", dir.display()))?;
    let s: ResumeState = serde_json::from_slice(&s).context("unreadable resume state")?;
    if s.base_sha256 != info.sha256 {
        bail!(
            "the run in {} was started on another base model",
            dir.display()
        );
    }
    if s.config != *cfg {
        bail!(
            "the run in {} used other settings; resume with the same settings",
            dir.display()
        );
    }
    Ok(s)
}

/// Loads the saved tensors and cell states into `model` (on the plain device) and returns the
/// optimizer with its saved state.
pub fn restore(
    model: &mut Sam,
    optim: ModuleOptimizer,
    dir: &Path,
    state: &ResumeState,
) -> Result<ModuleOptimizer> {
    let mut store = SafetensorsStore::from_file(dir.join("model.safetensors"))
        .with_regex(tensor_regex(state.config.train_decoder))
        .allow_partial(true);
    model
        .load_from(&mut store)
        .map_err(|e| anyhow::anyhow!("resume: {e}"))?;
    let states: HashMap<String, CellState> = state.cell_states.iter().cloned().collect();
    let mut missing = Vec::new();
    for_each_named_branch(model, |name, b| {
        if let Some(c) = &mut b.cell {
            match states.get(name) {
                Some(CellState::Discrete(i)) if *i >= c.ops.len() => missing.push(name.to_string()),
                Some(st) => c.state = *st,
                None => missing.push(name.to_string()),
            }
        }
    });
    if !missing.is_empty() {
        bail!(
            "resume state in {} does not fit the model (cell {} missing or invalid)",
            dir.display(),
            missing[0]
        );
    }
    optim
        .load(dir.join("optim.bpk"))
        .map_err(|e| anyhow::anyhow!("resume optimizer: {e}"))
}

/// Writes the resume folder (each file atomically).
pub fn save(
    model: &Sam,
    optim: &ModuleOptimizer,
    mut state: ResumeState,
    dir: &Path,
) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut store =
        SafetensorsStore::from_bytes(None).with_regex(tensor_regex(state.config.train_decoder));
    model
        .save_into(&mut store)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    atomic_write(
        &dir.join("model.safetensors"),
        &store.get_bytes().map_err(|e| anyhow::anyhow!("{e}"))?,
    )?;
    let bytes = optim.into_bytes().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    atomic_write(&dir.join("optim.bpk"), &bytes)?;
    let mut m = model.clone();
    state.cell_states.clear();
    for_each_named_branch(&mut m, |name, b| {
        if let Some(c) = &b.cell {
            state.cell_states.push((name.to_string(), c.state));
        }
    });
    atomic_write(
        &dir.join("state.json"),
        serde_json::to_string_pretty(&state)?.as_bytes(),
    )
}
