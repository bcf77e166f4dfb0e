//! The adapter injected next to a frozen linear projection: `ΔW x = s · B(cell(A x))`.
//! With no cell it is plain LoRA; with a [`NasCell`] it is NAS-LoRA; with a
//! [`ConvLoraMoe`] it is Conv-LoRA.

use burn::module::Param;
use burn::nn::{Dropout, DropoutConfig};
use burn::prelude::*;
use rand::rngs::StdRng;

use super::config::{AdapterConfig, Method};
use super::conv_lora::ConvLoraMoe;
use super::nas_cell::{NasCell, kaiming_uniform};

/// Which part of the host projection's output the adapter writes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdaptTarget {
    /// The whole output (any linear).
    Plain,
    /// SAM ViT fused qkv: output laid out as [q | k | v], each `C` wide.
    VitQkv { num_heads: usize },
    /// TinyViT fused qkv: per head [q_h | k_h | v_h].
    TinyVitQkv { num_heads: usize },
}

/// One low-rank branch: A (in × r), optional bottleneck op, B (r × out).
#[derive(Module, Debug)]
pub struct Branch {
    pub lora_a: Param<Tensor<2>>,
    pub lora_b: Param<Tensor<2>>,
    pub cell: Option<NasCell>,
    pub moe: Option<ConvLoraMoe>,
    pub dropout: Dropout,
    pub scale: f64,
}

impl Branch {
    pub fn new(
        d_in: usize,
        d_out: usize,
        cfg: &AdapterConfig,
        rng: &mut StdRng,
        device: &Device,
    ) -> Self {
        let r = cfg.rank;
        let a = Tensor::<2>::from_data(
            TensorData::new(kaiming_uniform(rng, d_in * r, d_in), [d_in, r]),
            device,
        );
        let cell = cfg.method.has_cell().then(|| {
            let k = if cfg.method == Method::NasPcLora {
                cfg.pc_k
            } else {
                1
            };
            NasCell::new(
                &cfg.ops,
                r,
                k,
                cfg.alpha_temperature,
                cfg.op_init,
                cfg.cell,
                rng,
                device,
            )
        });
        let moe = (cfg.method == Method::ConvLora)
            .then(|| ConvLoraMoe::new(r, cfg.conv_lora_experts, rng, device));
        Self {
            lora_a: Param::from_tensor(a),
            // B = 0: the adapted model starts exactly equal to the base model.
            lora_b: Param::from_tensor(Tensor::zeros([r, d_out], device)),
            cell,
            moe,
            dropout: DropoutConfig::new(cfg.dropout).init(),
            scale: cfg.scale(),
        }
    }

    /// x: (B, H, W, in) -> (B, H, W, out)
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut z = self
            .dropout
            .forward(x)
            .matmul(self.lora_a.val().unsqueeze::<4>());
        if let Some(c) = &self.cell {
            z = c.forward(z);
        }
        if let Some(m) = &self.moe {
            z = m.forward(z);
        }
        z.matmul(self.lora_b.val().unsqueeze::<4>()) * self.scale
    }

    /// True when the branch is linear per token (no spatial op) and so folds into W0.
    pub fn foldable(&self) -> bool {
        self.moe.is_none()
            && self
                .cell
                .as_ref()
                .is_none_or(|c| c.chosen().is_some_and(|o| o.is_linear()))
    }

    pub fn rank(&self) -> usize {
        self.lora_a.dims()[1]
    }
}

/// The adapter of one projection: one branch over the whole output, or two (q and v) for the
/// SAMed `qv` placement.
#[derive(Module, Debug)]
pub struct Adapter {
    pub branches: Vec<Branch>,
    /// `true`: branches[0] writes q and branches[1] writes v of a fused qkv output.
    pub qv: bool,
    /// `true`: in windowed blocks the host computes this adapter on the whole unpadded token
    /// map and partitions its output (see [`super::CellGrid::Full`]).
    pub full_grid: bool,
}

impl Adapter {
    pub fn forward(&self, x: Tensor<4>, target: AdaptTarget) -> Tensor<4> {
        if !self.qv {
            return self.branches[0].forward(x);
        }
        let dq = self.branches[0].forward(x.clone());
        let dv = self.branches[1].forward(x);
        let [b, h, w, c] = dq.dims();
        let zeros = Tensor::zeros([b, h, w, c], &dq.device());
        match target {
            AdaptTarget::VitQkv { .. } | AdaptTarget::Plain => Tensor::cat(vec![dq, zeros, dv], 3),
            AdaptTarget::TinyVitQkv { num_heads } => {
                let kd = c / num_heads;
                let split = |t: Tensor<4>| t.reshape([b, h, w, num_heads, kd]);
                Tensor::cat(vec![split(dq), split(zeros), split(dv)], 4).reshape([b, h, w, 3 * c])
            }
        }
    }

    pub fn foldable(&self) -> bool {
        self.branches.iter().all(Branch::foldable)
    }
}
