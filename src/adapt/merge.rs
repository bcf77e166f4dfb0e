//! Folding adapters into the frozen weights. Plain LoRA and NAS cells discretised to
//! `identity` (a channel permutation included) are linear per token, so
//! `W0' = W0 + s·A·P·B` exactly; spatial cells cannot fold and stay as rank-r side branches.

use burn::module::Param;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::{AdaptTarget, Adapter, for_each_slot};
use crate::sam::Sam;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct MergeReport {
    /// Projections whose adapter folded into the weight.
    pub folded: Vec<String>,
    /// Projections that keep a side branch, with the op it computes.
    pub side_branches: Vec<(String, String)>,
    /// Multiply-accumulates per token of all remaining side branches together.
    pub side_macs_per_token: usize,
}

/// The per-token weight delta of a foldable adapter, in Burn's [in, out] layout.
pub fn adapter_delta(
    adapter: &Adapter,
    d_in: usize,
    target: AdaptTarget,
    device: &Device,
) -> Tensor<2> {
    let mut eye = vec![0f32; d_in * d_in];
    for i in 0..d_in {
        eye[i * d_in + i] = 1.0;
    }
    // Row i of the identity is token e_i, so the output row i is e_i·ΔW.
    let x = Tensor::<4>::from_data(TensorData::new(eye, [1, 1, d_in, d_in]), device);
    let y = adapter.forward(x, target);
    let [_, _, _, d_out] = y.dims();
    y.reshape([d_in, d_out])
}

/// Side-branch cost per token of one adapter.
pub fn adapter_macs_per_token(adapter: &Adapter, d_in: usize, d_out_total: usize) -> usize {
    adapter
        .branches
        .iter()
        .map(|b| {
            let r = b.rank();
            let d_out = if adapter.qv {
                d_out_total / 3
            } else {
                d_out_total
            };
            let cell = b.cell.as_ref().map_or(0, |c| c.macs_per_token());
            let moe = b.moe.as_ref().map_or(0, |m| m.macs_per_token(r));
            d_in * r + r * d_out + cell + moe
        })
        .sum()
}

/// Folds every foldable adapter into its host weight and removes it.
pub fn merge(model: &mut Sam) -> MergeReport {
    let mut report = MergeReport::default();
    for_each_slot(model, |info, slot, lin| {
        let Some(adapter) = slot.as_ref() else { return };
        let [d_in, d_out] = lin.weight.dims();
        if adapter.foldable() {
            let device = lin.weight.device();
            let delta = adapter_delta(adapter, d_in, info.target, &device);
            let w = lin.weight.val() + delta;
            lin.weight = Param::from_tensor(w);
            *slot = None;
            report.folded.push(info.name.clone());
        } else {
            let ops: Vec<String> = adapter
                .branches
                .iter()
                .map(|b| match (&b.cell, &b.moe) {
                    (Some(c), _) => c
                        .chosen()
                        .map_or("mixed".to_string(), |o| o.name().to_string()),
                    (_, Some(_)) => "conv-moe".to_string(),
                    _ => "linear".to_string(),
                })
                .collect();
            report.side_macs_per_token += adapter_macs_per_token(adapter, d_in, d_out);
            report
                .side_branches
                .push((info.name.clone(), ops.join("+")));
        }
    });
    report
}
