//! Mirrors `segment_anything/modeling/common.py`: `MLPBlock` and `LayerNorm2d`,
//! plus small layer helpers shared by the encoders and the decoder.

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::DType;
use burn::tensor::activation::relu;
use rayon::prelude::*;
use wide::f32x8;

use crate::nn::{AdaptTarget, Adapter};

/// Which activation an MLP uses (SAM's ViT uses GELU, the two-way transformer ReLU).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    Gelu,
    Relu,
}

/// GELU in its exact form, `0.5·x·(1 + erf(x/√2))`, as `torch.nn.GELU()` computes it.
///
/// On the CPU backend outside autodiff (inference) the values go through [`gelu_host`]:
/// flex evaluates libm's scalar `erff` on one core (9–12 ms per million values on the reference
/// machine, 1.1–1.3 ms this way; `bench --sections ops`), and the MobileSAM encoder applies GELU to
/// about 137 M values per 1024² image. Elsewhere (GPU, training) Burn's own op runs, so
/// autodiff and fusion see it.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if !host_inference(&x) {
        return burn::tensor::activation::gelu(x);
    }
    let (device, shape) = (x.device(), x.shape());
    match x.clone().into_data().try_into_vec::<f32>() {
        Ok(mut values) => {
            gelu_host(&mut values);
            Tensor::from_data(TensorData::new(values, shape), &device)
        }
        Err(_) => burn::tensor::activation::gelu(x),
    }
}

/// Inference on the CPU backend (f32, no autodiff): where the model takes CPU-only fast paths
/// that neither autodiff nor the GPU's fusion should see.
fn host_inference<const D: usize>(x: &Tensor<D>) -> bool {
    !x.is_autodiff() && x.dtype() == DType::F32 && x.device() == Device::flex()
}

/// Exact-form GELU in place, on all cores. erf is Eigen's rational approximation
/// (`x·P(x²)/Q(x²)` on x clamped to ±4; max abs error 4e-7 against the true erf, checked in
/// the tests against Burn's libm-based op): no branches or libm calls. Eight lanes at a time
/// through `wide`, because our crate is built at opt-level 1, where LLVM does not vectorise
/// the scalar loop (it ran at scalar speed, about a quarter of the CPU encoder's time).
fn gelu_host(values: &mut [f32]) {
    values.par_chunks_mut(1 << 15).for_each(|chunk| {
        // SAFETY: every bit pattern is a valid f32 and a valid f32x8 (eight packed f32).
        let (head, lanes, tail) = unsafe { chunk.align_to_mut::<f32x8>() };
        for lane in lanes {
            *lane = gelu_erf_rational(*lane);
        }
        for v in head.iter_mut().chain(tail) {
            *v = gelu_erf_rational(f32x8::splat(*v)).to_array()[0];
        }
    });
}

/// `0.5·x·(1 + erf(x/√2))` with the rational erf of [`gelu_host`], lane by lane.
#[inline(always)]
fn gelu_erf_rational(v: f32x8) -> f32x8 {
    const A: [f32; 7] = [
        -2.726_142_3e-10,
        2.770_681_4e-8,
        -2.101_024e-6,
        -5.692_506_4e-5,
        -7.349_906_3e-4,
        -2.954_6e-3,
        -1.609_603_3e-2,
    ];
    const B: [f32; 5] = [
        -1.456_607_2e-5,
        -2.133_740_6e-4,
        -1.682_827e-3,
        -7.373_329e-3,
        -1.426_473_9e-2,
    ];
    let z = (v * f32x8::splat(std::f32::consts::FRAC_1_SQRT_2))
        .fast_max(f32x8::splat(-4.0))
        .fast_min(f32x8::splat(4.0));
    let z2 = z * z;
    let p = A
        .iter()
        .fold(f32x8::ZERO, |acc, &c| acc * z2 + f32x8::splat(c));
    let q = B
        .iter()
        .fold(f32x8::ZERO, |acc, &c| acc * z2 + f32x8::splat(c));
    f32x8::splat(0.5) * v * (f32x8::ONE + z * p / q)
}

pub fn act<const D: usize>(kind: Act, x: Tensor<D>) -> Tensor<D> {
    match kind {
        Act::Gelu => gelu(x),
        Act::Relu => relu(x),
    }
}

#[derive(Module, Debug)]
pub struct MlpBlock {
    pub lin1: Linear,
    pub lin2: Linear,
    #[module(skip)]
    pub act: Act,
    pub lin1_adapter: Option<Adapter>,
    pub lin2_adapter: Option<Adapter>,
}

impl MlpBlock {
    pub fn new(embedding_dim: usize, mlp_dim: usize, act: Act, device: &Device) -> Self {
        Self {
            lin1: LinearConfig::new(embedding_dim, mlp_dim).init(device),
            lin2: LinearConfig::new(mlp_dim, embedding_dim).init(device),
            act,
            lin1_adapter: None,
            lin2_adapter: None,
        }
    }

    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        self.lin2.forward(act(self.act, self.lin1.forward(x)))
    }

    /// Forward on (B, H, W, C) tokens, with adapters when present (ViT blocks).
    pub fn forward_spatial(&self, x: Tensor<4>) -> Tensor<4> {
        let mut h = self.lin1.forward(x.clone());
        if let Some(a) = &self.lin1_adapter {
            h = h + a.forward(x, AdaptTarget::Plain);
        }
        let h = act(self.act, h);
        let mut y = self.lin2.forward(h.clone());
        if let Some(a) = &self.lin2_adapter {
            y = y + a.forward(h, AdaptTarget::Plain);
        }
        y
    }
}

/// Channel-wise LayerNorm on (B, C, H, W) maps; eps 1e-6 as in the official code.
#[derive(Module, Debug)]
pub struct LayerNorm2d {
    pub weight: Param<Tensor<1>>,
    pub bias: Param<Tensor<1>>,
    pub eps: f64,
}

impl LayerNorm2d {
    pub fn new(num_channels: usize, device: &Device) -> Self {
        Self {
            weight: Param::from_tensor(Tensor::ones([num_channels], device)),
            bias: Param::from_tensor(Tensor::zeros([num_channels], device)),
            eps: 1e-6,
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let c = self.weight.dims()[0];
        let u = x.clone().mean_dim(1);
        let xc = x - u;
        let s = xc.clone().square().mean_dim(1);
        let x = xc / (s + self.eps).sqrt();
        x * self.weight.val().reshape([1, c, 1, 1]) + self.bias.val().reshape([1, c, 1, 1])
    }
}

pub fn linear(d_in: usize, d_out: usize, bias: bool, device: &Device) -> Linear {
    LinearConfig::new(d_in, d_out).with_bias(bias).init(device)
}

pub fn layer_norm(dim: usize, eps: f64, device: &Device) -> LayerNorm {
    LayerNormConfig::new(dim).with_epsilon(eps).init(device)
}

/// A plain `nn.Conv2d` with symmetric padding.
#[allow(clippy::too_many_arguments)]
pub fn conv2d(
    c_in: usize,
    c_out: usize,
    kernel: usize,
    stride: usize,
    pad: usize,
    groups: usize,
    bias: bool,
    device: &Device,
) -> Conv2d {
    Conv2dConfig::new([c_in, c_out], [kernel, kernel])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .with_groups(groups)
        .with_bias(bias)
        .init(device)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The host GELU against Burn's op (libm `erff`, a separate implementation), over the range
    /// where erf changes and far outside it, and on a shape the encoder uses.
    #[test]
    fn host_gelu_matches_burn_gelu() {
        let device = Device::flex();
        let mut xs: Vec<f32> = (0..=40_000).map(|i| -10.0 + i as f32 * 5e-4).collect();
        xs.extend([0.0, -0.0, 1e-30, -1e-30, 60.0, -60.0, 1e4, -1e4]);
        let n = xs.len();
        let x = Tensor::<1>::from_data(TensorData::new(xs.clone(), [n]), &device);
        let reference: Vec<f32> = burn::tensor::activation::gelu(x.clone())
            .into_data()
            .try_into_vec()
            .unwrap();
        let ours: Vec<f32> = gelu(x).into_data().try_into_vec().unwrap();
        for ((x, r), o) in xs.iter().zip(&reference).zip(&ours) {
            // erf is within 4e-7 of the true value, so GELU within 0.5·|x|·4e-7 plus rounding.
            let tol = 1e-6 * x.abs().max(1.0);
            assert!((r - o).abs() <= tol, "gelu({x}): burn {r}, host {o}");
        }
        // Starting at an odd offset: the lanes before the first 32-byte boundary take the
        // one-value path.
        let mut shifted = xs.clone();
        gelu_host(&mut shifted[3..]);
        for ((x, r), o) in xs.iter().zip(&reference).zip(&shifted).skip(3) {
            assert!(
                (r - o).abs() <= 1e-6 * x.abs().max(1.0),
                "gelu({x}): burn {r}, host {o}"
            );
        }
        // Hand-computed: GELU(1) = 0.5·(1 + erf(1/√2)) = 0.841344746..., GELU(-3) = -0.004049694...
        let pts = Tensor::<1>::from_data(TensorData::new(vec![1.0f32, -3.0], [2]), &device);
        let v: Vec<f32> = gelu(pts).into_data().try_into_vec().unwrap();
        assert!((v[0] - 0.841_344_7).abs() < 1e-6, "{v:?}");
        assert!((v[1] + 0.004_049_694).abs() < 1e-6, "{v:?}");
    }

    /// Under autodiff the model keeps Burn's op, so training gets its gradient.
    #[test]
    fn gelu_keeps_gradients_under_autodiff() {
        let device = Device::flex().autodiff();
        let x = Tensor::<1>::from_data(TensorData::new(vec![0.5f32, -1.0], [2]), &device)
            .require_grad();
        let grads = gelu(x.clone()).sum().backward();
        let g: Vec<f32> = x.grad(&grads).unwrap().into_data().try_into_vec().unwrap();
        // d/dx GELU = Φ(x) + x·φ(x): at 0.5 → 0.691462 + 0.5·0.352065 = 0.867495
        assert!((g[0] - 0.867_495).abs() < 1e-5, "{g:?}");
        // at -1 → 0.158655 - 0.241971 = -0.083316
        assert!((g[1] + 0.083_316).abs() < 1e-5, "{g:?}");
    }
}
