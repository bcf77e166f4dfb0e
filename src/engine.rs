//! Loading a base model (and optionally an adapter) onto a device: the entry point the CLI,
//! the trainer and the app share.

use std::path::Path;

use anyhow::Result;

use crate::adapt::file::{AdapterCard, load_adapter};
use crate::device::ComputeDevice;
use crate::predict::Predictor;
use crate::sam::{CheckpointInfo, ModelFamily, Sam, SamConfig, load_sam_as};
use crate::train::TrainConfig;
use crate::train::planner::Plan;

pub struct LoadedModel {
    pub predictor: Predictor,
    pub info: CheckpointInfo,
    pub card: Option<AdapterCard>,
    pub device: ComputeDevice,
}

impl LoadedModel {
    /// The family the model runs as (it picks the pre- and post-processing); for the CLI's
    /// report and the app's model panel.
    pub fn family(&self) -> ModelFamily {
        self.info.config.family
    }
}

pub fn load(
    model: &Path,
    adapter: Option<&Path>,
    config: Option<SamConfig>,
    device: ComputeDevice,
) -> Result<LoadedModel> {
    load_as(model, adapter, config, None, device)
}

/// [`load`] with the family given (`--family`); `None` detects it from the checkpoint.
pub fn load_as(
    model: &Path,
    adapter: Option<&Path>,
    config: Option<SamConfig>,
    family: Option<ModelFamily>,
    device: ComputeDevice,
) -> Result<LoadedModel> {
    let (sam, info) = load_sam_as(model, config, family, &device.device)?;
    with_adapter(sam, info, adapter, device)
}

/// The base model alone, for callers that adapt it themselves (the trainer).
pub fn load_base(
    model: &Path,
    config: Option<SamConfig>,
    device: &ComputeDevice,
) -> Result<(Sam, CheckpointInfo)> {
    Ok(load_sam_as(model, config, None, &device.device)?)
}

/// Memory the planner may plan for (MiB): the target for a batch-1 ViT-B step.
pub const PLAN_BUDGET_MIB: f64 = 8192.0;

/// The planner's time and memory estimate for training `base` with `cfg` on `device`. The
/// first adapted stage is read from a copy of the model with the adapters applied, so it is
/// right for every encoder (TinyViT's stages included).
pub fn plan_training(
    base: &Sam,
    info: &CheckpointInfo,
    cfg: &TrainConfig,
    device: &ComputeDevice,
) -> Plan {
    let mut probe = base.clone();
    crate::adapt::apply_adapters(&mut probe, &cfg.adapter, &device.device);
    let first =
        crate::adapt::first_adapted_stage(&probe).unwrap_or(base.image_encoder.num_stages());
    crate::train::planner::plan(&info.config, cfg, first, &device.device, PLAN_BUDGET_MIB)
}

/// A base model already in memory (e.g. a clone of one), optionally with an adapter applied.
pub fn with_adapter(
    mut sam: Sam,
    info: CheckpointInfo,
    adapter: Option<&Path>,
    device: ComputeDevice,
) -> Result<LoadedModel> {
    let card = match adapter {
        Some(a) => Some(load_adapter(&mut sam, &info, a, &device.device)?),
        None => None,
    };
    Ok(LoadedModel {
        predictor: Predictor::new(sam, device.device.clone()),
        info,
        card,
        device,
    })
}
