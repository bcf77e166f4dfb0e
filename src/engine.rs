//! Loading a base model (and optionally an adapter) onto a device: the entry point the CLI,
//! the trainer and the app share.

use std::path::Path;

use anyhow::Result;

use crate::adapt::file::{AdapterCard, load_adapter};
use crate::device::ComputeDevice;
use crate::predict::Predictor;
use crate::sam::{CheckpointInfo, Sam, SamConfig, load_sam};

pub struct LoadedModel {
    pub predictor: Predictor,
    pub info: CheckpointInfo,
    pub card: Option<AdapterCard>,
    pub device: ComputeDevice,
}

pub fn load(
    model: &Path,
    adapter: Option<&Path>,
    config: Option<SamConfig>,
    device: ComputeDevice,
) -> Result<LoadedModel> {
    let (sam, info) = load_sam(model, config, &device.device)?;
    with_adapter(sam, info, adapter, device)
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
