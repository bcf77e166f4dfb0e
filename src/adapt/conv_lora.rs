//! Conv-LoRA baseline: a mixture of convolutional experts in the LoRA bottleneck.
//! Expert i upsamples the bottleneck map ×(i+1), applies conv3x3 + GELU and resizes back;
//! a noisy top-1 gate on the pooled bottleneck picks one expert per sample, and a
//! load-balancing loss keeps the experts in use.

use std::cell::RefCell;

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::activation::{gelu, softmax, softplus};
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
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

/// Interpolation matrix (out × in) of 1-D linear resizing with `align_corners = false`, as
/// PyTorch's `F.interpolate(mode="bilinear", size=...)` does it (half-pixel centres, edges
/// clamped, no antialiasing).
pub fn linear_resize_matrix(n_in: usize, n_out: usize) -> Vec<f32> {
    let mut m = vec![0.0f32; n_out * n_in];
    let scale = n_in as f64 / n_out as f64;
    for o in 0..n_out {
        let src = ((o as f64 + 0.5) * scale - 0.5).max(0.0);
        let i0 = (src.floor() as usize).min(n_in - 1);
        let i1 = (i0 + 1).min(n_in - 1);
        let l1 = (src - i0 as f64) as f32;
        m[o * n_in + i0] += 1.0 - l1;
        m[o * n_in + i1] += l1;
    }
    m
}

/// Bilinear resize of (B, C, H, W) as two matmuls with fixed interpolation matrices. Same
/// values as `interpolate(.., Bilinear, align_corners=false)`, but differentiable on every
/// backend: Burn's wgpu kernels have no bilinear backward (training Conv-LoRA there panicked).
pub fn resize_bilinear(x: Tensor<4>, size: [usize; 2]) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    let device = x.device();
    let ry = Tensor::<2>::from_data(
        TensorData::new(linear_resize_matrix(h, size[0]), [size[0], h]),
        &device,
    );
    let rx_t = Tensor::<2>::from_data(
        TensorData::new(linear_resize_matrix(w, size[1]), [size[1], w]),
        &device,
    )
    .transpose();
    let x = x
        .reshape([b * c * h, w])
        .matmul(rx_t)
        .reshape([b * c, h, size[1]]);
    ry.unsqueeze::<3>()
        .expand([b * c, size[0], h])
        .matmul(x)
        .reshape([b, c, size[0], size[1]])
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
    /// Run every expert and mask (true) or only the picked one (false); `None` picks by device.
    pub dense_routing: Option<bool>,
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
            dense_routing: None,
        }
    }

    fn expert(&self, i: usize, x: Tensor<4>) -> Tensor<4> {
        let [_, _, h, w] = x.dims();
        let f = i + 1;
        let up = if f > 1 {
            resize_bilinear(x, [h * f, w * f])
        } else {
            x
        };
        let y = gelu(conv2d(
            up,
            self.experts[i].val(),
            Some(self.expert_bias[i].val()),
            ConvOptions::new([1, 1], [1, 1], [1, 1], 1),
        ));
        if f > 1 { resize_bilinear(y, [h, w]) } else { y }
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
        // Top-1 routing. On the CPU the argmax is read back and only the picked expert runs
        // (sparse dispatch, as the reference code does). On a GPU that read-back flushes the
        // queue in every block and the graph changes with the routing, so wgpu compiled new
        // kernels on every step (≈14 s/step on an H200 instead of ≈0.3 s); there every expert
        // runs on every sample and a one-hot mask of the argmax keeps one. The experts are tiny
        // (r channels). Both give the same values, and a masked expert gets zero gradient.
        let dense = self
            .dense_routing
            .unwrap_or(device.clone().without_autodiff() != Device::flex());
        let y = if dense {
            let picked = probs.clone().detach();
            let best = picked.clone().max_dim(1).expand([b, e]);
            let gate = probs.clone() * picked.greater_equal(best).float();
            (0..e)
                .map(|ex| {
                    let g = gate.clone().narrow(1, ex, 1).reshape([b, 1, 1, 1]);
                    self.expert(ex, zc.clone()) * g
                })
                .reduce(|acc, part| acc + part)
        } else {
            let top: Vec<i64> = probs
                .clone()
                .detach()
                .argmax(1)
                .into_data()
                .convert::<i64>()
                .try_to_vec()
                .unwrap_or_default();
            let out: Vec<Tensor<4>> = top
                .iter()
                .enumerate()
                .map(|(s, &ex)| {
                    let ex = ex as usize;
                    let g = probs
                        .clone()
                        .narrow(0, s, 1)
                        .narrow(1, ex, 1)
                        .reshape([1, 1, 1, 1]);
                    self.expert(ex, zc.clone().narrow(0, s, 1)) * g
                })
                .collect();
            (!out.is_empty()).then(|| Tensor::cat(out, 0))
        };
        let Some(y) = y else {
            return z; // no experts: the bottleneck passes through
        };
        let y = y.permute([0, 2, 3, 1]);
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
        // The method's cost with sparse routing, averaged over experts: expert i convolves
        // (i+1)² upsampled positions. (On a GPU `forward` runs all of them, see there.)
        let e = self.experts.len().max(1);
        (1..=self.experts.len())
            .map(|f| f * f * 9 * r * r)
            .sum::<usize>()
            / e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::module::interpolate;
    use burn::tensor::ops::{InterpolateMode, InterpolateOptions};

    #[test]
    fn linear_resize_matches_pytorch_by_hand() {
        // F.interpolate(torch.tensor([[[[1., 2.]]]]), size=(1, 4), mode="bilinear") = [1, 1.25, 1.75, 2]
        let m = linear_resize_matrix(2, 4);
        let y: Vec<f32> = (0..4).map(|o| m[o * 2] + 2.0 * m[o * 2 + 1]).collect();
        assert_eq!(y, vec![1.0, 1.25, 1.75, 2.0]);
        // Every row is a convex combination.
        for n in [(3, 9), (9, 3), (5, 7)] {
            let m = linear_resize_matrix(n.0, n.1);
            for row in m.chunks(n.0) {
                assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn matmul_resize_equals_interpolate() {
        let device = Device::flex();
        let x = Tensor::<4>::random([2, 3, 5, 7], Distribution::Normal(0.0, 1.0), &device);
        for size in [[15, 21], [10, 14], [3, 4]] {
            let want = interpolate(
                x.clone(),
                InterpolateOptions::new(InterpolateMode::Bilinear)
                    .with_output_size(size)
                    .with_align_corners(false),
            );
            let got = resize_bilinear(x.clone(), size);
            let err: f32 = (want - got).abs().max().into_scalar::<f32>();
            assert!(err < 1e-5, "size {size:?}: max abs err {err}");
        }
    }

    /// Both routings equal the textbook definition: each sample gets z + p_top · expert_top(z),
    /// computed here one sample at a time with the argmax taken on the host; and with dense
    /// routing only the picked experts receive gradient.
    #[test]
    fn dense_routing_equals_sparse_dispatch() {
        use rand::SeedableRng;
        let device = Device::flex().autodiff();
        let mut rng = StdRng::seed_from_u64(3);
        let mut moe = ConvLoraMoe::new(4, 4, &mut rng, &device);
        // A gate that sends the two samples to different experts.
        moe.gate = Param::from_tensor(Tensor::random(
            [4, 4],
            Distribution::Normal(0.0, 3.0),
            &device,
        ));
        let z = Tensor::<4>::random([3, 6, 5, 4], Distribution::Normal(0.0, 1.0), &device);
        moe.dense_routing = Some(true);
        let got = moe.forward(z.clone());
        moe.dense_routing = Some(false);
        let sparse = moe.forward(z.clone());

        let zc = z.clone().permute([0, 3, 1, 2]);
        let pooled = zc.clone().mean_dim(3).mean_dim(2).reshape([3, 4]);
        let probs: Vec<f32> = softmax(pooled.matmul(moe.gate.val()), 1)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let mut picked = Vec::new();
        for s in 0..3 {
            let row = &probs[s * 4..s * 4 + 4];
            let ex = (0..4).fold(0, |m, i| if row[i] > row[m] { i } else { m });
            picked.push(ex);
            let want = z.clone().narrow(0, s, 1)
                + moe
                    .expert(ex, zc.clone().narrow(0, s, 1))
                    .permute([0, 2, 3, 1])
                    * row[ex];
            for (name, y) in [("dense", &got), ("sparse", &sparse)] {
                let err: f32 = (y.clone().narrow(0, s, 1) - want.clone())
                    .abs()
                    .max()
                    .into_scalar::<f32>();
                assert!(err < 1e-5, "{name}, sample {s}: max abs err {err}");
            }
        }
        let grads = got.sum().backward();
        for ex in 0..4 {
            let g = moe.experts[ex]
                .grad(&grads)
                .map(|g| g.abs().sum().into_scalar::<f32>());
            let used = picked.contains(&ex);
            assert_eq!(
                used,
                g.is_some_and(|g| g > 0.0),
                "expert {ex}: picked {used}, grad {g:?}"
            );
        }
    }
}
