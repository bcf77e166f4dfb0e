//! Conv-LoRA baseline, as the reference implementation (autogluon multimodal,
//! `models/adaptation_layers.py`: `ConvLoRALinear`, `MoEGate`, `SparseDispatcher`) does it:
//! expert i upsamples the bottleneck map ×(i+1) (bicubic), applies conv3x3 + GELU and resizes
//! back (bicubic); a noisy top-1 gate on the pooled bottleneck picks one expert per sample,
//! whose output is added with weight 1 (`multiply_by_gates = False`; a top-1 softmax is 1
//! anyway); the auxiliary loss is `1e-2 · (cv²(importance) + cv²(load))`, with the load the
//! differentiable probability of each expert being in the top 1 under the gate noise.

use std::cell::RefCell;

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::activation::{gelu, softplus};
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

/// The reference's `MoEGate.forward` defaults.
pub const AUX_LOSS_COEF: f64 = 1e-2;
pub const NOISE_EPSILON: f64 = 1e-2;

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

/// PyTorch's cubic convolution constant (`upsample_bicubic2d`).
const CUBIC_A: f64 = -0.75;

/// Keys' cubic kernel for |x| ≤ 1 (PyTorch `cubic_convolution1`).
fn cubic1(x: f64) -> f64 {
    ((CUBIC_A + 2.0) * x - (CUBIC_A + 3.0)) * x * x + 1.0
}

/// Keys' cubic kernel for 1 < |x| < 2 (PyTorch `cubic_convolution2`).
fn cubic2(x: f64) -> f64 {
    ((CUBIC_A * x - 5.0 * CUBIC_A) * x + 8.0 * CUBIC_A) * x - 4.0 * CUBIC_A
}

/// Interpolation matrix (out × in) of 1-D cubic resizing as PyTorch's
/// `F.interpolate(mode="bicubic", align_corners=False)` computes it: half-pixel source
/// coordinate (not clamped at 0, unlike linear), four taps at floor(src)-1..floor(src)+2 with
/// weights from a = -0.75, out-of-range taps clamped to the border pixel, no antialiasing.
pub fn cubic_resize_matrix(n_in: usize, n_out: usize) -> Vec<f32> {
    let mut m = vec![0.0f64; n_out * n_in];
    let scale = n_in as f64 / n_out as f64;
    for o in 0..n_out {
        let src = (o as f64 + 0.5) * scale - 0.5;
        let i0 = src.floor();
        let t = src - i0;
        let w = [cubic2(t + 1.0), cubic1(t), cubic1(1.0 - t), cubic2(2.0 - t)];
        for (j, wj) in w.into_iter().enumerate() {
            let idx = (i0 as i64 - 1 + j as i64).clamp(0, n_in as i64 - 1) as usize;
            m[o * n_in + idx] += wj;
        }
    }
    m.into_iter().map(|v| v as f32).collect()
}

/// Separable resize of (B, C, H, W) as two matmuls with fixed 1-D interpolation matrices.
/// Differentiable on every backend: Burn's wgpu kernels have no bilinear/bicubic backward
/// (training Conv-LoRA there panicked).
fn resize_separable(
    x: Tensor<4>,
    size: [usize; 2],
    matrix: fn(usize, usize) -> Vec<f32>,
) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    let device = x.device();
    let ry = Tensor::<2>::from_data(TensorData::new(matrix(h, size[0]), [size[0], h]), &device);
    let rx_t = Tensor::<2>::from_data(TensorData::new(matrix(w, size[1]), [size[1], w]), &device)
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

/// Bilinear resize, same values as `interpolate(.., Bilinear, align_corners=false)`.
pub fn resize_bilinear(x: Tensor<4>, size: [usize; 2]) -> Tensor<4> {
    resize_separable(x, size, linear_resize_matrix)
}

/// Bicubic resize, same values as PyTorch's `F.interpolate(mode="bicubic")`.
pub fn resize_bicubic(x: Tensor<4>, size: [usize; 2]) -> Tensor<4> {
    resize_separable(x, size, cubic_resize_matrix)
}

/// Squared coefficient of variation (reference `cv_squared`): unbiased variance over the
/// squared mean (+1e-10); 0 for a single element.
pub fn cv_squared(x: Tensor<1>) -> Tensor<1> {
    let n = x.dims()[0];
    if n <= 1 {
        return Tensor::zeros([1], &x.device());
    }
    let mean = x.clone().mean();
    let var = (x - mean.clone()).square().sum() / (n - 1) as f64;
    var / (mean.square() + 1e-10)
}

/// Standard normal CDF.
fn normal_cdf(x: Tensor<2>) -> Tensor<2> {
    (x / std::f64::consts::SQRT_2).erf().add_scalar(1.0) * 0.5
}

/// Noisy top-1 gating of the reference's `MoEGate` (k = 1).
pub struct Gating {
    /// (B, E) one-hot of each sample's expert; the gate value itself (softmax over the single
    /// top logit) is the constant 1 and carries no gradient in the reference either.
    pub pick: Tensor<2>,
    /// `AUX_LOSS_COEF · (cv²(importance) + cv²(load))`, shape [1].
    pub loss: Tensor<1>,
}

/// `pooled`: (B, r). `noise`: standard-normal draws (B, E) while training, `None` in eval.
/// Everything stays on the device (argmax and one-hot by comparison, no read-back).
pub fn noisy_top1_gating(
    pooled: Tensor<2>,
    w_gate: Tensor<2>,
    w_noise: Tensor<2>,
    noise: Option<Tensor<2>>,
    coef: f64,
) -> Gating {
    let [b, _] = pooled.dims();
    let e = w_gate.dims()[1];
    let device = pooled.device();
    let clean = pooled.clone().matmul(w_gate);
    let noisy = noise.map(|n| {
        let std = softplus(pooled.matmul(w_noise), 1.0).add_scalar(NOISE_EPSILON);
        (clean.clone() + n * std.clone(), std)
    });
    let logits = noisy.as_ref().map_or(clean.clone(), |(l, _)| l.clone());
    let top = logits.clone().argmax(1).expand([b, e]);
    let ids = Tensor::<1, Int>::arange(0..e as i64, &device)
        .reshape([1, e])
        .expand([b, e]);
    let pick_b = ids.equal(top);
    let pick = pick_b.clone().float();
    let importance = pick.clone().sum_dim(0).reshape([e]);
    let load = match noisy {
        // `_prob_in_top_k`: P(expert in the top 1 under fresh noise), differentiable in
        // w_gate and w_noise; thresholds are the noisy top-2 values (with their gradients).
        Some((noisy, std)) if e > 1 => {
            let thr_out = noisy.clone().max_dim(1).expand([b, e]);
            let thr_in = noisy
                .clone()
                .mask_fill(pick_b, f32::NEG_INFINITY)
                .max_dim(1)
                .expand([b, e]);
            let is_in = noisy.greater(thr_in.clone()).float();
            let p_in = normal_cdf((clean.clone() - thr_in) / std.clone());
            let p_out = normal_cdf((clean - thr_out) / std);
            let prob = p_in * is_in.clone() + p_out * (is_in.neg().add_scalar(1.0));
            prob.sum_dim(0).reshape([e])
        }
        // `_gates_to_load`: how many samples each expert got.
        _ => importance.clone(),
    };
    let loss = (cv_squared(importance) + cv_squared(load)) * coef;
    Gating { pick, loss }
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
            // nn.Conv2d's default init; its bias is zeroed in the reference.
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
            aux_coef: AUX_LOSS_COEF,
            training: false,
            dense_routing: None,
        }
    }

    fn expert(&self, i: usize, x: Tensor<4>) -> Tensor<4> {
        let [_, _, h, w] = x.dims();
        let f = i + 1;
        let up = if f > 1 {
            resize_bicubic(x, [h * f, w * f])
        } else {
            x
        };
        let y = gelu(conv2d(
            up,
            self.experts[i].val(),
            Some(self.expert_bias[i].val()),
            ConvOptions::new([1, 1], [1, 1], [1, 1], 1),
        ));
        if f > 1 { resize_bicubic(y, [h, w]) } else { y }
    }

    /// The gating of `forward` for `zc` (B, r, H, W), with the noise drawn while training.
    pub fn gating(&self, zc: Tensor<4>) -> Gating {
        let [b, r, _, _] = zc.dims();
        let e = self.experts.len();
        let pooled = zc.mean_dim(3).mean_dim(2).reshape([b, r]);
        let noise = self
            .training
            .then(|| Tensor::random([b, e], Distribution::Normal(0.0, 1.0), &pooled.device()));
        noisy_top1_gating(
            pooled,
            self.gate.val(),
            self.noise.val(),
            noise,
            self.aux_coef,
        )
    }

    /// z: (B, H, W, r) -> (B, H, W, r): z plus the output of each sample's top-1 expert.
    pub fn forward(&self, z: Tensor<4>) -> Tensor<4> {
        let [b, _, _, _] = z.dims();
        let e = self.experts.len();
        if e == 0 {
            return z; // no experts: the bottleneck passes through
        }
        let zc = z.clone().permute([0, 3, 1, 2]);
        let device = z.device();
        let g = self.gating(zc.clone());
        // Top-1 routing. On the CPU the pick is read back and only the picked expert runs
        // (sparse dispatch, as the reference code does). On a GPU that read-back flushes the
        // queue in every block and the graph changes with the routing, so wgpu compiled new
        // kernels on every step (≈14 s/step on an H200 instead of ≈0.3 s); there every expert
        // runs on every sample and the one-hot pick keeps one. The experts are tiny (r
        // channels). Both give the same values, and an unpicked expert gets zero gradient.
        let dense = self
            .dense_routing
            .unwrap_or(device.clone().without_autodiff() != Device::flex());
        let y = if dense {
            (0..e)
                .map(|ex| {
                    let m = g.pick.clone().narrow(1, ex, 1).reshape([b, 1, 1, 1]);
                    self.expert(ex, zc.clone()) * m
                })
                .reduce(|acc, part| acc + part)
                .expect("e > 0")
        } else {
            let top: Vec<i64> = g
                .pick
                .clone()
                .argmax(1)
                .into_data()
                .convert::<i64>()
                .try_to_vec()
                .unwrap_or_default();
            let out: Vec<Tensor<4>> = top
                .iter()
                .enumerate()
                .map(|(s, &ex)| self.expert(ex as usize, zc.clone().narrow(0, s, 1)))
                .collect();
            Tensor::cat(out, 0)
        };
        if self.training {
            AUX_LOSSES.with(|a| a.borrow_mut().push(g.loss));
        }
        z + y.permute([0, 2, 3, 1])
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
    use rand::SeedableRng;

    fn vals<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_to_vec().unwrap()
    }

    #[test]
    fn linear_resize_matches_pytorch_by_hand() {
        // F.interpolate(torch.tensor([[[[1., 2.]]]]), size=(1, 4), mode="bilinear") = [1, 1.25, 1.75, 2]
        let m = linear_resize_matrix(2, 4);
        let y: Vec<f32> = (0..4).map(|o| m[o * 2] + 2.0 * m[o * 2 + 1]).collect();
        assert_eq!(y, vec![1.0, 1.25, 1.75, 2.0]);
    }

    /// PyTorch's bicubic, worked by hand from `upsample_bicubic2d` (a = -0.75,
    /// src = (o + 0.5)·in/out - 0.5, taps floor(src)-1..+2 clamped to the border).
    #[test]
    fn cubic_resize_matches_pytorch_by_hand() {
        // 2 -> 4, o = 0: src = -0.25, t = 0.75, taps -2,-1,0,1 -> 0,0,0,1 with weights
        // W(1.75) = -0.03515625, W(0.75) = 0.26171875, W(0.25) = 0.87890625, W(1.25) = -0.10546875.
        // o = 1: src = 0.25, taps -1,0,1,2 -> 0,0,1,1 with W(1.25), W(0.25), W(0.75), W(1.75).
        #[rustfmt::skip]
        #[allow(clippy::excessive_precision)] // exact binary fractions, written out by hand
        let want = [
            1.10546875, -0.10546875,
            0.7734375, 0.2265625,
            0.2265625, 0.7734375,
            -0.10546875, 1.10546875,
        ];
        assert_eq!(cubic_resize_matrix(2, 4), want);
        // 4 -> 2: src = 0.5 and 2.5, t = 0.5: W(1.5) = -0.09375, W(0.5) = 0.59375.
        #[rustfmt::skip]
        let want = [
            0.5, 0.59375, -0.09375, 0.0,
            0.0, -0.09375, 0.59375, 0.5,
        ];
        assert_eq!(cubic_resize_matrix(4, 2), want);
        // Rows of every size sum to 1 (the kernel is a partition of unity).
        for n in [(3, 9), (9, 3), (5, 7), (4, 16), (1, 3)] {
            for row in cubic_resize_matrix(n.0, n.1).chunks(n.0) {
                assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6, "{n:?}");
            }
        }
        // F.interpolate(torch.arange(1., 5.).view(1, 1, 2, 2), scale_factor=2, mode="bicubic")
        // first row: [0.6836, 1.0156, 1.5625, 1.8945] (PyTorch's printed output).
        let x = Tensor::<4>::from_data(
            TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0], [1, 1, 2, 2]),
            &Device::flex(),
        );
        let y = vals(resize_bicubic(x, [4, 4]));
        for (got, want) in y[..4].iter().zip([0.6836, 1.0156, 1.5625, 1.8945]) {
            assert!((got - want).abs() < 1e-4, "{:?}", &y[..4]);
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

    /// The auxiliary loss on a small case worked out with plain math (Python `math.erf`, not
    /// this code): B = 2, E = 3, r = 1, pooled = [1, 2], w_gate = [0, 1, -1],
    /// w_noise = [0.5, 0, -0.5], fixed noise draws. Picks: sample 0 -> 0, sample 1 -> 1;
    /// importance [1, 1, 0] (cv² 0.75); load = Σ_b P(in top 1) = [0.23863, 1.50681, 2.0776e-5]
    /// (cv² 1.93768); loss = 1e-2 · (0.75 + 1.93768).
    #[test]
    fn aux_loss_matches_hand_computed_case() {
        let device = Device::flex().autodiff();
        let t2 =
            |v: Vec<f32>, s: [usize; 2]| Tensor::<2>::from_data(TensorData::new(v, s), &device);
        let w_gate = t2(vec![0.0, 1.0, -1.0], [1, 3]).require_grad();
        let w_noise = t2(vec![0.5, 0.0, -0.5], [1, 3]).require_grad();
        let noise = t2(vec![1.0, -0.2, 0.1, 0.0, 0.3, -0.4], [2, 3]);
        let g = noisy_top1_gating(
            t2(vec![1.0, 2.0], [2, 1]),
            w_gate.clone(),
            w_noise.clone(),
            Some(noise),
            AUX_LOSS_COEF,
        );
        assert_eq!(vals(g.pick.clone()), vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
        let loss = g.loss.clone().into_scalar::<f32>();
        assert!((loss - 0.026876798).abs() < 1e-6, "loss {loss}");
        // The load term is differentiable in both gate matrices (importance is not).
        let grads = g.loss.backward();
        for (name, w) in [("w_gate", &w_gate), ("w_noise", &w_noise)] {
            let gsum = w.grad(&grads).map(|g| g.abs().sum().into_scalar::<f32>());
            assert!(gsum.is_some_and(|s| s > 0.0), "{name}: {gsum:?}");
        }
        // Eval: no noise, load = counts = importance; clean logits pick 1 and 1.
        let g = noisy_top1_gating(
            t2(vec![1.0, 2.0], [2, 1]),
            w_gate,
            w_noise,
            None,
            AUX_LOSS_COEF,
        );
        assert_eq!(vals(g.pick), vec![0.0, 1.0, 0.0, 0.0, 1.0, 0.0]);
        // importance = load = [0, 2, 0]: mean 2/3, unbiased var 4/3, cv² 3 each.
        let loss = g.loss.into_scalar::<f32>();
        assert!((loss - 0.06).abs() < 1e-6, "eval loss {loss}");
        // One expert: cv² of a single value is 0.
        let one = Tensor::<1>::from_data(TensorData::new(vec![5.0f32], [1]), &device);
        assert_eq!(cv_squared(one).into_scalar::<f32>(), 0.0);
    }

    /// Both routings equal the reference: each sample gets z + expert_top(z) with gate value 1
    /// (top-1 softmax, `multiply_by_gates = False`), the expert picked by the argmax of the
    /// gate logits computed here on the host; with dense routing only the picked experts
    /// receive gradient. Training mode routes on noisy logits and records one aux loss.
    #[test]
    fn dense_routing_equals_sparse_dispatch() {
        let device = Device::flex().autodiff();
        let mut rng = StdRng::seed_from_u64(3);
        let mut moe = ConvLoraMoe::new(4, 4, &mut rng, &device);
        // A gate that sends the samples to different experts.
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
        let logits = vals(pooled.matmul(moe.gate.val()));
        let mut picked = Vec::new();
        for s in 0..3 {
            let row = &logits[s * 4..s * 4 + 4];
            let ex = (0..4).fold(0, |m, i| if row[i] > row[m] { i } else { m });
            picked.push(ex);
            let want = z.clone().narrow(0, s, 1)
                + moe
                    .expert(ex, zc.clone().narrow(0, s, 1))
                    .permute([0, 2, 3, 1]);
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
        assert!(take_aux_losses().is_empty(), "eval records no aux loss");
        moe.training = true;
        moe.dense_routing = Some(true);
        let _ = moe.forward(z);
        assert_eq!(take_aux_losses().len(), 1);
    }
}
