//! Adapters on SAM's image encoder: NAS-LoRA, NAS-PC-LoRA, LoRA and Conv-LoRA, their
//! placement, merge and the adapter file.

pub mod export;
pub mod file;
pub mod merge;
pub mod select;
// The layers themselves live in `crate::nn`; their old paths stay valid.
pub use crate::nn::{config, conv_lora, lora, nas_cell};

use burn::module::Module;
use burn::nn::Linear;
use burn::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

pub use crate::nn::{
    AdaptTarget, Adapter, AdapterConfig, Branch, CellForm, CellGrid, CellState, Method, NasCell,
    OpInit, OpKind, Placement,
};

use crate::sam::Sam;
use crate::sam::sam::ImageEncoder;
use crate::sam::tiny_vit::TinyLayer;

/// Which projection of a block a slot sits on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotKind {
    Qkv,
    Proj,
    Fc1,
    Fc2,
}

/// An adapter position in the encoder.
#[derive(Clone, Debug)]
pub struct SlotInfo {
    /// Parameter path of the host linear, e.g. `image_encoder.blocks.3.attn.qkv`.
    pub name: String,
    /// Attention block index over the whole encoder (the `blocks` filter uses it).
    pub block: usize,
    /// Encoder stage (ViT block / TinyViT layer), for prefix caching.
    pub stage: usize,
    pub kind: SlotKind,
    pub target: AdaptTarget,
}

/// Calls `f` on every adaptable projection with its adapter slot and host linear.
pub fn for_each_slot(
    model: &mut Sam,
    mut f: impl FnMut(&SlotInfo, &mut Option<Adapter>, &mut Linear),
) {
    match &mut model.image_encoder {
        ImageEncoder::Vit(e) => {
            for (i, blk) in e.blocks.iter_mut().enumerate() {
                let nh = blk.attn.num_heads;
                let p = format!("image_encoder.blocks.{i}");
                let info = |kind, name: &str, target| SlotInfo {
                    name: format!("{p}.{name}"),
                    block: i,
                    stage: i,
                    kind,
                    target,
                };
                f(
                    &info(
                        SlotKind::Qkv,
                        "attn.qkv",
                        AdaptTarget::VitQkv { num_heads: nh },
                    ),
                    &mut blk.attn.qkv_adapter,
                    &mut blk.attn.qkv,
                );
                f(
                    &info(SlotKind::Proj, "attn.proj", AdaptTarget::Plain),
                    &mut blk.attn.proj_adapter,
                    &mut blk.attn.proj,
                );
                f(
                    &info(SlotKind::Fc1, "mlp.lin1", AdaptTarget::Plain),
                    &mut blk.mlp.lin1_adapter,
                    &mut blk.mlp.lin1,
                );
                f(
                    &info(SlotKind::Fc2, "mlp.lin2", AdaptTarget::Plain),
                    &mut blk.mlp.lin2_adapter,
                    &mut blk.mlp.lin2,
                );
            }
        }
        ImageEncoder::TinyVit(e) => {
            let mut block = 0;
            for (li, layer) in e.layers.iter_mut().enumerate() {
                let TinyLayer::Basic(l) = layer else { continue };
                for (bi, blk) in l.blocks.iter_mut().enumerate() {
                    let nh = blk.attn.num_heads;
                    let p = format!("image_encoder.layers.{li}.blocks.{bi}");
                    let info = |kind, name: &str, target| SlotInfo {
                        name: format!("{p}.{name}"),
                        block,
                        stage: li,
                        kind,
                        target,
                    };
                    f(
                        &info(
                            SlotKind::Qkv,
                            "attn.qkv",
                            AdaptTarget::TinyVitQkv { num_heads: nh },
                        ),
                        &mut blk.attn.qkv_adapter,
                        &mut blk.attn.qkv,
                    );
                    f(
                        &info(SlotKind::Proj, "attn.proj", AdaptTarget::Plain),
                        &mut blk.attn.proj_adapter,
                        &mut blk.attn.proj,
                    );
                    f(
                        &info(SlotKind::Fc1, "mlp.fc1", AdaptTarget::Plain),
                        &mut blk.mlp.fc1_adapter,
                        &mut blk.mlp.fc1,
                    );
                    f(
                        &info(SlotKind::Fc2, "mlp.fc2", AdaptTarget::Plain),
                        &mut blk.mlp.fc2_adapter,
                        &mut blk.mlp.fc2,
                    );
                    block += 1;
                }
            }
        }
    }
}

fn wanted(cfg: &AdapterConfig, info: &SlotInfo) -> bool {
    let kind_ok = match cfg.placement {
        Placement::Qkv | Placement::Qv => info.kind == SlotKind::Qkv,
        Placement::All => true,
    };
    kind_ok && (cfg.blocks.is_empty() || cfg.blocks.contains(&info.block))
}

/// Injects adapters per `cfg` (replacing any present). Returns the number of adapted projections.
pub fn apply_adapters(model: &mut Sam, cfg: &AdapterConfig, device: &Device) -> usize {
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let mut n = 0;
    for_each_slot(model, |info, slot, lin| {
        *slot = None;
        if cfg.method == Method::DecoderOnly || !wanted(cfg, info) {
            return;
        }
        let [d_in, d_out] = lin.weight.dims();
        let qv = cfg.placement == Placement::Qv && info.kind == SlotKind::Qkv;
        let branches = if qv {
            vec![
                Branch::new(d_in, d_out / 3, cfg, &mut rng, device),
                Branch::new(d_in, d_out / 3, cfg, &mut rng, device),
            ]
        } else {
            vec![Branch::new(d_in, d_out, cfg, &mut rng, device)]
        };
        let full_grid = cfg.grid == CellGrid::Full && info.kind == SlotKind::Qkv;
        *slot = Some(Adapter {
            branches,
            qv,
            full_grid,
        });
        n += 1;
    });
    n
}

/// Read-only list of (slot name, adapter).
pub fn adapters(model: &Sam) -> Vec<(SlotInfo, Adapter)> {
    let mut m = model.clone();
    let mut out = Vec::new();
    for_each_slot(&mut m, |info, slot, _| {
        if let Some(a) = slot.take() {
            out.push((info.clone(), a));
        }
    });
    out
}

/// Name of branch `i` of `n` of the adapter on slot `slot`: q/v branches get a `.q` / `.v`
/// suffix so each cell has its own name (cards and resume state key cells by it).
pub fn branch_name(slot: &str, i: usize, n: usize) -> String {
    if n == 2 {
        format!("{slot}.{}", ["q", "v"][i])
    } else {
        slot.to_string()
    }
}

/// Every NAS cell with its branch name.
pub fn cells(model: &Sam) -> Vec<(String, NasCell)> {
    let mut out = Vec::new();
    for (info, a) in adapters(model) {
        let n = a.branches.len();
        for (i, b) in a.branches.into_iter().enumerate() {
            if let Some(c) = b.cell {
                out.push((branch_name(&info.name, i, n), c));
            }
        }
    }
    out
}

/// Applies `f` to every branch with its name (see [`branch_name`]).
pub fn for_each_named_branch(model: &mut Sam, mut f: impl FnMut(&str, &mut Branch)) {
    for_each_slot(model, |info, slot, _| {
        if let Some(a) = slot {
            let n = a.branches.len();
            for (i, b) in a.branches.iter_mut().enumerate() {
                f(&branch_name(&info.name, i, n), b);
            }
        }
    });
}

/// How a cell leaves the mixed state at the search → consolidate boundary.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Discretize {
    /// The argmax op alone with weight 1 (its output jumps from softmax(α)_k to 1).
    Argmax,
    /// The argmax op alone, scaled by its softmax weight at the switch (folded into B's rows
    /// that read the mixed channels), so the branch keeps that op's share of the output.
    KeepWeight,
}

/// Discretises every cell to its argmax op. With [`Discretize::KeepWeight`] the op's softmax
/// weight is folded into the rows of B that read the mixed channels (all rows for NAS-LoRA;
/// for NAS-PC-LoRA the rows the channel shuffle maps the mixed part to).
pub fn discretise_cells(model: &mut Sam, mode: Discretize) {
    discretise_cells_by(model, mode, |c| c.argmax());
}

/// Discretises every mixed cell to the op `pick` names for it (called once per mixed cell,
/// in branch order), scaled as [`discretise_cells`] describes.
pub fn discretise_cells_by(
    model: &mut Sam,
    mode: Discretize,
    mut pick: impl FnMut(&NasCell) -> usize,
) {
    for_each_branch(model, |b| {
        let r = b.rank();
        let Some(c) = &mut b.cell else { return };
        if matches!(c.state, CellState::Discrete(_)) {
            return;
        }
        let k = pick(c);
        let w = c.weights()[k];
        c.state = CellState::Discrete(k);
        if mode == Discretize::Argmax {
            return;
        }
        // Output channel j of the cell reads concat channel shuffle[j] (identity without one);
        // concat channels below `partial` come from the mixed op.
        let scales: Vec<f32> = (0..r)
            .map(|j| {
                let src = c.shuffle.get(j).map_or(j, |&s| s as usize);
                if src < c.partial { w } else { 1.0 }
            })
            .collect();
        b.lora_b = b.lora_b.clone().map(|t| {
            let device = t.device();
            let s = Tensor::<2>::from_data(TensorData::new(scales.clone(), [r, 1]), &device);
            let requires_grad = t.is_require_grad();
            // A new leaf: a product is a graph node, which autodiff cannot mark trainable.
            let out = (t.detach() * s).detach();
            if requires_grad {
                out.require_grad()
            } else {
                out
            }
        });
    });
}

/// Applies `f` to every branch of every adapter.
pub fn for_each_branch(model: &mut Sam, mut f: impl FnMut(&mut Branch)) {
    for_each_slot(model, |_, slot, _| {
        if let Some(a) = slot {
            a.branches.iter_mut().for_each(&mut f);
        }
    });
}

/// Sets every cell to `state`; `Discrete` picks each cell's own argmax.
pub fn set_cell_states(model: &mut Sam, state: CellState) {
    for_each_branch(model, |b| {
        if let Some(c) = &mut b.cell {
            c.state = match state {
                CellState::Discrete(_) => CellState::Discrete(c.argmax()),
                s => s,
            };
        }
    });
}

/// Turns Conv-LoRA's noisy gating and auxiliary loss on or off.
pub fn set_training(model: &mut Sam, training: bool) {
    for_each_branch(model, |b| {
        if let Some(m) = &mut b.moe {
            m.training = training;
        }
    });
}

/// Lowest encoder stage that carries an adapter (everything before it is frozen).
pub fn first_adapted_stage(model: &Sam) -> Option<usize> {
    adapters(model).iter().map(|(i, _)| i.stage).min()
}

/// Parameter counts for reports.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ParamCounts {
    pub total: usize,
    pub adapter: usize,
    pub alpha: usize,
    pub mask_decoder: usize,
}

pub fn param_counts(model: &Sam) -> ParamCounts {
    let ads = adapters(model);
    let adapter: usize = ads.iter().map(|(_, a)| a.num_params()).sum();
    let alpha: usize = ads
        .iter()
        .flat_map(|(_, a)| a.branches.iter())
        .filter_map(|b| b.cell.as_ref())
        .map(|c| c.ops.len())
        .sum();
    ParamCounts {
        total: model.num_params(),
        adapter,
        alpha,
        mask_decoder: model.mask_decoder.num_params(),
    }
}
