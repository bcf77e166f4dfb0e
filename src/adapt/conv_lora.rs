//! Conv-LoRA baseline: a mixture of convolutional experts in the LoRA bottleneck.
//! Expert i upsamples the bottleneck map ×(i+1), applies conv3x3 + GELU and resizes back;
//! a noisy top-1 gate on the pooled bottleneck picks one expert per sample, and a
//! load-balancing loss keeps the experts in use.

use std::cell::RefCell;

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::activation::{gelu, softmax, softplus};
use burn::tensor::module::{conv2d, interpolate};
use burn::tensor::ops::{ConvOptions, InterpolateMode, InterpolateOptions};
use rand::rngs::StdRng;

use super::nas_cell::kaiming_uniform;

thread_local! {
    /// Auxiliary losses produced by Conv-LoRA forwards on this thread, drained by the trainer.
    /// (A side channel keeps every encoder `forward` signature the same for all methods.)
    static AUX_LOSSES: RefCell<Vec<Tensor<1>>> = const { RefCell::new(Vec::new()) };
}

/// Takes the auxiliary losses recorded since the last call.
pub fn take_aux_losses() -> Vec<Tensor<1>> {
    AUX_LOSSES.with(|a| std::mem::take(&mut *a.borrow_mut()))
}

#[derive(Module, Debug)]
pub struct ConvLoraMoe {
    pub experts: Vec<Param<Tensor<4>>>,
    pub expert_bias: Vec<Param<Tensor<1>>>,
    pub gate: Param<Tensor<2>>,
    pub noise: Param<Tensor<2>>,
    pub aux_coef: f64,
    /// Noisy gating and the auxiliary loss are on while training.
    pub training: bool,
}

impl ConvLoraMoe {
    pub fn new(rank: usize, experts: usize, rng: &mut StdRng, device: &Device) -> Self {
        let t = |v: Vec<f32>, s: [usize; 4]| {
            Param::from_tensor(Tensor::<4>::from_data(TensorData::new(v, s), device))
        };
        Self {
            experts: (0..experts)
                .map(|_| {
                    t(
                        kaiming_uniform(rng, rank * rank * 9, rank * 9),
                        [rank, rank, 3, 3],
                    )
                })
                .collect(),
            expert_bias: (0..experts)
                .map(|_| Param::from_tensor(Tensor::zeros([rank], device)))
                .collect(),
            gate: Param::from_tensor(Tensor::zeros([rank, experts], device)),
            noise: Param::from_tensor(Tensor::zeros([rank, experts], device)),
            aux_coef: 1e-2,
            training: false,
        }
    }

    fn expert(&self, i: usize, x: Tensor<4>) -> Tensor<4> {
        let [_, _, h, w] = x.dims();
        let f = i + 1;
        let bil = |s: [usize; 2]| {
            InterpolateOptions::new(InterpolateMode::Bilinear)
                .with_output_size(s)
                .with_align_corners(false)
        };
        let up = if f > 1 {
            interpolate(x, bil([h * f, w * f]))
        } else {
            x
        };
        let y = gelu(conv2d(
            up,
            self.experts[i].val(),
            Some(self.expert_bias[i].val()),
            ConvOptions::new([1, 1], [1, 1], [1, 1], 1),
        ));
        if f > 1 {
            interpolate(y, bil([h, w]))
        } else {
            y
        }
    }

    /// z: (B, H, W, r) -> (B, H, W, r): z plus the gated output of each sample's top-1 expert.
    pub fn forward(&self, z: Tensor<4>) -> Tensor<4> {
        let [b, h, w, r] = z.dims();
        let e = self.experts.len();
        let device = z.device();
        let zc = z.clone().permute([0, 3, 1, 2]);
        let pooled = zc.clone().mean_dim(3).mean_dim(2).reshape([b, r]);
        let mut logits = pooled.clone().matmul(self.gate.val());
        if self.training {
            let std = softplus(pooled.matmul(self.noise.val()), 1.0);
            logits = logits + Tensor::random([b, e], Distribution::Normal(0.0, 1.0), &device) * std;
        }
        let probs = softmax(logits, 1);
        let top: Vec<i64> = probs
            .clone()
            .detach()
            .argmax(1)
            .into_data()
            .convert::<i64>()
            .to_vec()
            .unwrap_or_default();
        let mut out = Vec::with_capacity(b);
        for (s, &ex) in top.iter().enumerate() {
            let ex = ex as usize;
            let zs = zc.clone().narrow(0, s, 1);
            let g = probs
                .clone()
                .narrow(0, s, 1)
                .narrow(1, ex, 1)
                .reshape([1, 1, 1, 1]);
            out.push(self.expert(ex, zs) * g);
        }
        let y = Tensor::cat(out, 0).permute([0, 2, 3, 1]);
        if self.training {
            // cv² of expert importance (sum of gate probabilities over the batch).
            let imp = probs.sum_dim(0).reshape([e]);
            let mean = imp.clone().mean();
            let var = (imp - mean.clone()).square().mean();
            let cv2 = var / (mean.square() + 1e-10);
            let aux = cv2 * self.aux_coef;
            AUX_LOSSES.with(|a| a.borrow_mut().push(aux));
        }
        let _ = (h, w);
        z + y
    }

    pub fn macs_per_token(&self, r: usize) -> usize {
        // Average expert: (i+1)² upsampled positions of a 3×3 conv.
        let e = self.experts.len();
        (1..=e).map(|f| f * f * 9 * r * r).sum::<usize>() / e
    }
}
