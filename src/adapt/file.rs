//! The adapter file: safetensors with the adapter tensors and α, and a JSON model card kept
//! both in the safetensors metadata (so one file is enough) and beside it (for people).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use burn::store::{ModuleSnapshot, SafetensorsStore};
use serde::{Deserialize, Serialize};

use super::{
    AdapterConfig, CellState, ParamCounts, apply_adapters, cells, for_each_slot, param_counts,
};
use crate::fsutil::atomic_write;
use crate::sam::{CheckpointInfo, ModelFamily, ModelType, Sam};

pub const CARD_KEY: &str = "segadapt_card";
const ADAPTER_REGEX: &str = r"_adapter\.";

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BaseModel {
    pub file_name: String,
    pub sha256: String,
    pub model_type: ModelType,
    /// The processing the adapter was trained with (cards written before it existed have
    /// none and are not checked).
    #[serde(default)]
    pub family: Option<ModelFamily>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CellCard {
    pub name: String,
    pub ops: Vec<String>,
    /// softmax(α / T) at save time.
    pub weights: Vec<f32>,
    pub state: CellState,
    pub chosen: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AdapterCard {
    pub format: String,
    pub version: u32,
    pub segadapt_version: String,
    pub base: BaseModel,
    pub adapter: AdapterConfig,
    pub cells: Vec<CellCard>,
    pub params: ParamCounts,
    /// Whether the mask decoder weights were trained (and are stored in the file).
    pub decoder_trained: bool,
    /// Training schedule, data manifest and validation scores, filled by the trainer.
    #[serde(default)]
    pub training: serde_json::Value,
}

impl AdapterCard {
    pub fn new(
        model: &Sam,
        base: &CheckpointInfo,
        cfg: &AdapterConfig,
        decoder_trained: bool,
    ) -> Self {
        let cells = cells(model)
            .into_iter()
            .map(|(name, c)| CellCard {
                name,
                ops: c.ops.iter().map(|o| o.name().to_string()).collect(),
                weights: c.weights(),
                state: c.state,
                chosen: c.chosen().map(|o| o.name().to_string()),
            })
            .collect();
        Self {
            format: "segadapt-adapter".into(),
            version: 1,
            segadapt_version: env!("CARGO_PKG_VERSION").into(),
            base: BaseModel {
                file_name: base
                    .path
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default(),
                sha256: base.sha256.clone(),
                model_type: base.config.model_type,
                family: Some(base.config.family),
            },
            adapter: cfg.clone(),
            cells,
            params: param_counts(model),
            decoder_trained,
            training: serde_json::Value::Null,
        }
    }
}

/// `adapter.safetensors` -> `adapter.json`
pub fn card_path(path: &Path) -> PathBuf {
    path.with_extension("json")
}

/// Whether a parameter path belongs in the adapter file.
fn regex_lite_match(decoder_trained: bool) -> impl Fn(&str) -> bool {
    move |p: &str| p.contains("_adapter.") || (decoder_trained && p.starts_with("mask_decoder."))
}

fn tensor_regex(decoder_trained: bool) -> String {
    if decoder_trained {
        format!("({ADAPTER_REGEX})|(^mask_decoder\\.)")
    } else {
        ADAPTER_REGEX.to_string()
    }
}

/// Writes the adapter (and the decoder if trained) with its card, atomically.
pub fn save_adapter(model: &Sam, card: &AdapterCard, path: &Path) -> Result<()> {
    let json = serde_json::to_string_pretty(card)?;
    let mut store = SafetensorsStore::from_bytes(None)
        .with_regex(tensor_regex(card.decoder_trained))
        .metadata(CARD_KEY, json.clone());
    model
        .save_into(&mut store)
        .map_err(|e| anyhow::anyhow!("cannot serialise adapter: {e}"))?;
    let bytes = store
        .get_bytes()
        .map_err(|e| anyhow::anyhow!("cannot serialise adapter: {e}"))?;
    atomic_write(path, &bytes)?;
    atomic_write(&card_path(path), json.as_bytes())?;
    Ok(())
}

/// Reads the card from an adapter file's metadata without loading tensors.
pub fn read_card(path: &Path) -> Result<AdapterCard> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read adapter file {}", path.display()))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: not a safetensors adapter file ({e})", path.display()))?;
    let json = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get(CARD_KEY))
        .with_context(|| {
            format!(
                "{}: safetensors file without a segadapt model card",
                path.display()
            )
        })?;
    let card: AdapterCard = serde_json::from_str(json)
        .with_context(|| format!("{}: unreadable model card", path.display()))?;
    card.validate()
        .with_context(|| format!("{}: invalid model card", path.display()))?;
    Ok(card)
}

impl AdapterCard {
    /// Checks what a hand-edited or foreign card could get wrong before anything indexes with
    /// it: the adapter settings, the base checksum, and each cell's ops and chosen op.
    pub fn validate(&self) -> Result<()> {
        self.adapter.validate()?;
        let sha = &self.base.sha256;
        if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!(
                "base model sha256 must be 64 hexadecimal characters (got {:?})",
                sha.chars().take(80).collect::<String>()
            );
        }
        let ops: Vec<&str> = self.adapter.ops.iter().map(|o| o.name()).collect();
        for c in &self.cells {
            if c.ops != ops {
                bail!(
                    "cell {}: ops {:?} differ from the adapter's ops {:?}",
                    c.name,
                    c.ops,
                    ops
                );
            }
            if c.weights.len() != ops.len() {
                bail!(
                    "cell {}: {} weights for {} ops",
                    c.name,
                    c.weights.len(),
                    ops.len()
                );
            }
            if let CellState::Discrete(i) = c.state
                && i >= ops.len()
            {
                bail!(
                    "cell {}: chosen op index {i} is out of range ({} ops)",
                    c.name,
                    ops.len()
                );
            }
        }
        Ok(())
    }
}

/// First 12 characters of a checksum for messages (never splits a character).
fn short(sha: &str) -> String {
    sha.chars().take(12).collect()
}

/// Loads an adapter onto `model` after checking it was trained on this exact base checkpoint.
pub fn load_adapter(
    model: &mut Sam,
    base: &CheckpointInfo,
    path: &Path,
    device: &Device,
) -> Result<AdapterCard> {
    let card = read_card(path)?;
    if card.base.sha256 != base.sha256 {
        bail!(
            "adapter {} was trained on base model '{}' (sha256 {}…), but the loaded model {} has sha256 {}…; \
             load the matching base checkpoint",
            path.display(),
            card.base.file_name,
            short(&card.base.sha256),
            base.path.display(),
            short(&base.sha256)
        );
    }
    if let Some(f) = card.base.family.filter(|f| *f != base.config.family) {
        bail!(
            "adapter {} was trained with {}'s input processing, but the base model is loaded as \
             {}; load it with --family {}",
            path.display(),
            f.title(),
            base.config.family.title(),
            f.name()
        );
    }
    apply_adapters(model, &card.adapter, device);
    // The card's cells must be exactly the cells this config creates on this model.
    let mut want: Vec<String> = cells(model).into_iter().map(|(n, _)| n).collect();
    let mut have: Vec<String> = card.cells.iter().map(|c| c.name.clone()).collect();
    want.sort();
    have.sort();
    if want != have {
        bail!(
            "{}: the model card lists {} NAS cells but its adapter settings create {} on this model \
             (e.g. {:?} vs {:?})",
            path.display(),
            have.len(),
            want.len(),
            have.iter().find(|n| !want.contains(n)),
            want.iter().find(|n| !have.contains(n)),
        );
    }
    let mut store = SafetensorsStore::from_file(path)
        .with_regex(tensor_regex(card.decoder_trained))
        .allow_partial(true);
    let res = model
        .load_from(&mut store)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    // Only adapter (and trained-decoder) tensors are in the file; the base comes from the checkpoint.
    let wanted = regex_lite_match(card.decoder_trained);
    let missing: Vec<&String> = res
        .missing
        .iter()
        .map(|(p, _)| p)
        .filter(|p| wanted(p))
        .collect();
    if !res.errors.is_empty() || !missing.is_empty() {
        bail!(
            "{}: adapter tensors do not fit the model ({} missing, e.g. {:?}; {} errors: {})",
            path.display(),
            missing.len(),
            missing.first(),
            res.errors.len(),
            res.errors
                .iter()
                .take(3)
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    // Restore each cell's search state (not a tensor).
    let states: std::collections::HashMap<String, CellState> = card
        .cells
        .iter()
        .map(|c| (c.name.clone(), c.state))
        .collect();
    for_each_slot(model, |info, slot, _| {
        if let Some(a) = slot {
            let n = a.branches.len();
            for (i, b) in a.branches.iter_mut().enumerate() {
                let name = if n == 2 {
                    format!("{}.{}", info.name, ["q", "v"][i])
                } else {
                    info.name.clone()
                };
                if let (Some(c), Some(s)) = (&mut b.cell, states.get(&name)) {
                    c.state = *s;
                }
            }
        }
    });
    Ok(card)
}
