//! The training run's settings, shared by the trainer, its steps and resume.

use serde::{Deserialize, Serialize};

use super::loss::LossKind;
use super::prompts::PromptMix;
use super::schedule::Schedule;
use crate::adapt::AdapterConfig;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub adapter: AdapterConfig,
    pub schedule: Schedule,
    /// Objects (prompts) per step, all from one image so they share one encoder pass.
    pub objects_per_step: usize,
    pub grad_accum: usize,
    pub val_split: f64,
    /// Validate every this many steps (0 = 10 times per run).
    pub val_every: usize,
    /// Stop after this many validations without improvement, once cells are discrete (0 = off).
    pub early_stop_patience: usize,
    pub train_decoder: bool,
    pub prompt_mix: PromptMix,
    pub loss: LossKind,
    pub iou_loss_weight: f64,
    pub augment: bool,
    pub intensity_jitter: f32,
    pub weight_decay: f64,
    pub seed: u64,
    /// Objects skipped below this area (pixels).
    pub min_area: usize,
    /// Also write the last state (not only the best) to `<out stem>.final.safetensors`.
    pub save_final: bool,
    /// Keep the adapter only when the 95% bootstrap interval of its per-object validation gain
    /// over the base lies above zero: the same few objects pick the checkpoint and judge it,
    /// so a gain within their noise is not trusted.
    #[serde(default = "default_true")]
    pub require_significant_gain: bool,
}

fn default_true() -> bool {
    true
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            adapter: AdapterConfig::default(),
            schedule: Schedule::default(),
            objects_per_step: 4,
            grad_accum: 1,
            val_split: 0.2,
            val_every: 0,
            early_stop_patience: 3,
            train_decoder: true,
            prompt_mix: PromptMix::default(),
            loss: LossKind::BceDice,
            iou_loss_weight: 1.0,
            augment: true,
            intensity_jitter: 0.1,
            weight_decay: 0.01,
            seed: 0,
            min_area: 0,
            save_final: false,
            require_significant_gain: true,
        }
    }
}

pub(super) fn tensor_regex(train_decoder: bool) -> &'static str {
    if train_decoder {
        r"(_adapter\.)|(^mask_decoder\.)"
    } else {
        r"_adapter\."
    }
}
