//! Comparison of this port against reference outputs of the official PyTorch code (written by
//! `tools/make_fixtures.py`): used by the parity tests and by `segadapt check-parity`, which
//! runs the same comparison on any device (e.g. full-size ViT-B on a GPU through wgpu).

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};
use burn::prelude::*;
use serde::Serialize;

use crate::sam::{Prompts, Sam};

/// Named f32 tensors from a safetensors file.
pub struct RefTensors {
    pub map: HashMap<String, (Vec<f32>, Vec<usize>)>,
}

impl RefTensors {
    pub fn load(path: &Path) -> Result<Self> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let mut map = HashMap::new();
        for (k, v) in st.tensors() {
            if v.dtype() != safetensors::Dtype::F32 {
                continue;
            }
            let data = v
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            map.insert(k, (data, v.shape().to_vec()));
        }
        Ok(Self { map })
    }
    pub fn has(&self, k: &str) -> bool {
        self.map.contains_key(k)
    }
    pub fn vec(&self, k: &str) -> &[f32] {
        &self.map[k].0
    }
    pub fn tensor<const D: usize>(&self, k: &str, device: &Device) -> Tensor<D> {
        let (v, s) = &self.map[k];
        Tensor::from_data(TensorData::new(v.clone(), s.clone()), device)
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Diff {
    pub name: String,
    pub max_abs_err: f32,
    pub max_abs_ref: f32,
}

pub fn diff(name: &str, got: &[f32], want: &[f32]) -> Diff {
    let max_abs_err = if got.len() == want.len() {
        got.iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max)
    } else {
        f32::INFINITY
    };
    Diff {
        name: name.to_string(),
        max_abs_err,
        max_abs_ref: want.iter().map(|v| v.abs()).fold(0.0, f32::max),
    }
}

fn v<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec()
        .unwrap_or_default()
}

/// Prompt encoder + decoder on the reference embedding for every prompt case present.
pub fn compare_decoder(model: &Sam, refs: &RefTensors, device: &Device) -> Vec<Diff> {
    let mut out = Vec::new();
    if refs.has("dense_pe") {
        out.push(diff(
            "dense_pe",
            &v(model.prompt_encoder.get_dense_pe().to_device(device)),
            refs.vec("dense_pe"),
        ));
    }
    let emb: Tensor<4> = refs.tensor("image_embedding", device);
    for case in ["pts", "box", "boxpts", "mask"] {
        if !refs.has(&format!("low_res_{case}_multi")) {
            continue;
        }
        let points = refs.has(&format!("coords_{case}")).then(|| {
            (
                refs.tensor::<3>(&format!("coords_{case}"), device),
                refs.tensor::<2>(&format!("labels_{case}"), device),
            )
        });
        let boxes = refs
            .has(&format!("box_{case}"))
            .then(|| refs.tensor::<2>(&format!("box_{case}"), device));
        let masks = (case == "mask").then(|| refs.tensor::<4>("mask_input", device));
        let prompts = Prompts {
            points,
            boxes,
            masks,
        };
        let (sparse, dense) = model.prompt_encoder.forward(&prompts, device);
        if let Some(s) = sparse {
            out.push(diff(
                &format!("sparse_{case}"),
                &v(s),
                refs.vec(&format!("sparse_{case}")),
            ));
        }
        out.push(diff(
            &format!("dense_{case}"),
            &v(dense),
            refs.vec(&format!("dense_{case}")),
        ));
        for (multi, tag) in [(true, "multi"), (false, "single")] {
            let o = model.decode(emb.clone(), &prompts, multi);
            out.push(diff(
                &format!("low_res_{case}_{tag}"),
                &v(o.low_res_masks),
                refs.vec(&format!("low_res_{case}_{tag}")),
            ));
            out.push(diff(
                &format!("iou_{case}_{tag}"),
                &v(o.iou_predictions),
                refs.vec(&format!("iou_{case}_{tag}")),
            ));
        }
    }
    out
}

/// Image encoder on the reference input, then the decoder cases.
pub fn compare_all(model: &Sam, refs: &RefTensors, device: &Device) -> Vec<Diff> {
    let input: Tensor<4> = refs.tensor("input", device);
    let mut out = vec![diff(
        "image_embedding",
        &v(model.embed_image(input)),
        refs.vec("image_embedding"),
    )];
    out.extend(compare_decoder(model, refs, device));
    out
}
