//! Mirrors `segment_anything/modeling/common.py`: `MLPBlock` and `LayerNorm2d`,
//! plus small layer helpers shared by the encoders and the decoder.

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::{gelu, relu};

use crate::adapt::{AdaptTarget, Adapter};

/// Which activation an MLP uses (SAM's ViT uses GELU, the two-way transformer ReLU).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    Gelu,
    Relu,
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
