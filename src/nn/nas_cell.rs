//! The NAS-LoRA searchable cell: candidate spatial ops on the rank-r bottleneck, mixed by
//! softmax(α / T). Partial-channel (NAS-PC-LoRA) and discrete (argmax-only) states included.

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::activation::softmax;
use burn::tensor::module::{avg_pool2d, conv2d, max_pool2d};
use burn::tensor::ops::{AvgPoolOptions, ConvOptions, MaxPoolOptions};
use rand::Rng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use super::config::{CellForm, OpInit, OpKind};

/// Search state of a cell (stage-wise schedule).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "op")]
pub enum CellState {
    /// All ops weighted by softmax(α); α receives gradients.
    Mixed,
    /// All ops weighted by softmax(α); α is held fixed.
    FrozenAlpha,
    /// Only op `i` runs; the others are not computed.
    Discrete(usize),
}

#[derive(Module, Debug)]
pub struct NasCell {
    /// Architecture weights, one per candidate op.
    pub alpha: Param<Tensor<1>>,
    /// Conv kernels (r, r, k, k) of the conv ops; `None` for parameter-free ops.
    pub op_weights: Vec<Option<Param<Tensor<4>>>>,
    #[module(skip)]
    pub ops: Vec<OpKind>,
    #[module(skip)]
    pub state: CellState,
    /// Channels the mixed op sees (r for NAS-LoRA, ceil(r/K) for NAS-PC-LoRA).
    pub partial: usize,
    /// Output channel order after the partial-channel concat (empty = unchanged).
    #[module(skip)]
    pub shuffle: Vec<i64>,
    pub temperature: f64,
    /// `true`: the cell is `z + Σ w_i op_i(z)` ([`CellForm::Residual`]), times the gate
    /// when there is one ([`CellForm::Gated`]).
    #[module(skip)]
    pub residual: bool,
    /// The gated cell's scalar gate on its ops (starts at 0).
    pub gate: Option<Param<Tensor<1>>>,
}

/// PC-DARTS channel shuffle with `groups` groups of `r / groups` channels.
fn shuffle_perm(r: usize, groups: usize) -> Vec<i64> {
    if groups <= 1 || !r.is_multiple_of(groups) {
        return Vec::new();
    }
    let per = r / groups;
    // out[j·groups + g] = in[g·per + j]
    let mut perm = vec![0i64; r];
    for g in 0..groups {
        for j in 0..per {
            perm[j * groups + g] = (g * per + j) as i64;
        }
    }
    perm
}

pub fn kaiming_uniform(rng: &mut StdRng, n: usize, fan_in: usize) -> Vec<f32> {
    // PyTorch's default (kaiming_uniform_ with a = sqrt(5)): U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    let bound = 1.0 / (fan_in as f32).sqrt();
    (0..n).map(|_| rng.random_range(-bound..bound)).collect()
}

impl NasCell {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        ops: &[OpKind],
        rank: usize,
        pc_k: usize,
        temperature: f64,
        init: OpInit,
        form: CellForm,
        rng: &mut StdRng,
        device: &Device,
    ) -> Self {
        let partial = if pc_k > 1 { rank.div_ceil(pc_k) } else { rank };
        let op_weights = ops
            .iter()
            .map(|op| {
                let k = match op {
                    OpKind::Conv3x3 | OpKind::DilConv3x3 => 3,
                    OpKind::Conv5x5 => 5,
                    _ => return None,
                };
                let mut w = kaiming_uniform(rng, partial * partial * k * k, partial * k * k);
                if init == OpInit::Dirac {
                    for v in w.iter_mut() {
                        *v *= 0.01;
                    }
                    for c in 0..partial {
                        w[((c * partial + c) * k + k / 2) * k + k / 2] += 1.0;
                    }
                }
                let t =
                    Tensor::<4>::from_data(TensorData::new(w, [partial, partial, k, k]), device);
                Some(Param::from_tensor(t))
            })
            .collect();
        Self {
            alpha: Param::from_tensor(Tensor::zeros([ops.len()], device)),
            op_weights,
            ops: ops.to_vec(),
            state: CellState::Mixed,
            partial,
            shuffle: if partial < rank {
                shuffle_perm(rank, pc_k)
            } else {
                Vec::new()
            },
            temperature,
            residual: form != CellForm::Plain,
            gate: (form == CellForm::Gated).then(|| Param::from_tensor(Tensor::zeros([1], device))),
        }
    }

    /// softmax(α / T) as plain numbers (what the app plots).
    pub fn weights(&self) -> Vec<f32> {
        let a = softmax(self.alpha.val().detach() / self.temperature, 0);
        a.into_data()
            .convert::<f32>()
            .try_to_vec()
            .unwrap_or_default()
    }

    pub fn argmax(&self) -> usize {
        let w = self.weights();
        let mut best = 0;
        for (i, v) in w.iter().enumerate() {
            if *v > w[best] {
                best = i;
            }
        }
        best
    }

    /// The op actually computed when discrete, otherwise `None`.
    pub fn chosen(&self) -> Option<OpKind> {
        match self.state {
            CellState::Discrete(i) => Some(self.ops[i]),
            _ => None,
        }
    }

    pub fn apply_op(&self, i: usize, x: Tensor<4>) -> Tensor<4> {
        let conv = |x: Tensor<4>, pad: usize, dil: usize| {
            let w = self.op_weights[i]
                .as_ref()
                .expect("conv op has a kernel")
                .val();
            conv2d(
                x,
                w,
                None,
                ConvOptions::new([1, 1], [pad, pad], [dil, dil], 1),
            )
        };
        match self.ops[i] {
            OpKind::Identity => x,
            OpKind::Zero => x.zeros_like(),
            OpKind::Conv3x3 => conv(x, 1, 1),
            OpKind::Conv5x5 => conv(x, 2, 1),
            OpKind::DilConv3x3 => conv(x, 2, 2),
            OpKind::AvgPool3x3 => avg_pool2d(
                x,
                AvgPoolOptions::new([3, 3])
                    .with_stride([1, 1])
                    .with_padding([1, 1])
                    .with_count_include_pad(false),
            ),
            OpKind::MaxPool3x3 => max_pool2d(
                x,
                MaxPoolOptions::new([3, 3])
                    .with_stride([1, 1])
                    .with_padding([1, 1]),
            ),
        }
    }

    /// z: (B, H, W, r) bottleneck tokens -> (B, H, W, r)
    pub fn forward(&self, z: Tensor<4>) -> Tensor<4> {
        let [_, _, _, r] = z.dims();
        let zc = z.permute([0, 3, 1, 2]);
        let (head, tail) = if self.partial < r {
            (
                zc.clone().narrow(1, 0, self.partial),
                Some(zc.narrow(1, self.partial, r - self.partial)),
            )
        } else {
            (zc, None)
        };
        let mixed = match self.state {
            CellState::Discrete(i) if self.residual => {
                // The op keeps the share it had when the cell was cut (α is frozen by then).
                let w = softmax(self.alpha.val().detach() / self.temperature, 0)
                    .narrow(0, i, 1)
                    .reshape([1, 1, 1, 1]);
                head.clone() + self.gated(self.apply_op(i, head) * w)
            }
            CellState::Discrete(i) => self.apply_op(i, head),
            CellState::Mixed | CellState::FrozenAlpha => {
                let mut a = self.alpha.val();
                if self.state == CellState::FrozenAlpha {
                    a = a.detach();
                }
                let w = softmax(a / self.temperature, 0);
                let mut acc: Option<Tensor<4>> = None;
                for i in 0..self.ops.len() {
                    let wi = w.clone().narrow(0, i, 1).reshape([1, 1, 1, 1]);
                    let y = self.apply_op(i, head.clone()) * wi;
                    acc = Some(match acc {
                        Some(s) => s + y,
                        None => y,
                    });
                }
                let acc = acc.expect("a cell has at least one op");
                if self.residual {
                    head + self.gated(acc)
                } else {
                    acc
                }
            }
        };
        let mut out = match tail {
            Some(t) => Tensor::cat(vec![mixed, t], 1),
            None => mixed,
        };
        if !self.shuffle.is_empty() {
            let device = out.device();
            let idx =
                Tensor::<1, Int>::from_data(TensorData::new(self.shuffle.clone(), [r]), &device);
            out = out.select(1, idx);
        }
        out.permute([0, 2, 3, 1])
    }

    /// `ops` scaled by the gate, if the cell has one.
    fn gated(&self, ops: Tensor<4>) -> Tensor<4> {
        match &self.gate {
            Some(g) => ops * g.val().reshape([1, 1, 1, 1]),
            None => ops,
        }
    }

    /// Multiply-accumulates of the cell per spatial position in its current state.
    pub fn macs_per_token(&self) -> usize {
        let m = self.partial;
        match self.state {
            CellState::Discrete(i) => m * self.ops[i].macs_per_elem(m),
            _ => self.ops.iter().map(|o| m * o.macs_per_elem(m)).sum(),
        }
    }
}
