//! Mirrors `mobile_sam/modeling/tiny_vit_sam.py`: MobileSAM's TinyViT image encoder.
//! BatchNorm layers run in inference mode (running statistics), as the official model does
//! after `.eval()`.

use burn::module::Param;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::nn::{LayerNorm, Linear};
use burn::prelude::*;
use burn::tensor::activation::softmax;
use burn::tensor::ops::{ConvOptions, PadMode};

use super::common::{conv2d, gelu, layer_norm, linear};
use super::config::TinyVitConfig;
use super::image_encoder::Neck;
use crate::nn::{AdaptTarget, Adapter};

/// `torch.nn.BatchNorm2d` in eval mode.
#[derive(Module, Debug)]
pub struct BatchNorm2d {
    pub weight: Param<Tensor<1>>,
    pub bias: Param<Tensor<1>>,
    pub running_mean: Param<Tensor<1>>,
    pub running_var: Param<Tensor<1>>,
    pub eps: f64,
}

impl BatchNorm2d {
    pub fn new(c: usize, device: &Device) -> Self {
        let p = |t: Tensor<1>| Param::from_tensor(t);
        Self {
            weight: p(Tensor::ones([c], device)),
            bias: p(Tensor::zeros([c], device)),
            running_mean: p(Tensor::zeros([c], device)),
            running_var: p(Tensor::ones([c], device)),
            eps: 1e-5,
        }
    }
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let c = self.weight.dims()[0];
        let inv = (self.running_var.val() + self.eps).sqrt().recip() * self.weight.val();
        let shift = self.bias.val() - self.running_mean.val() * inv.clone();
        x * inv.reshape([1, c, 1, 1]) + shift.reshape([1, c, 1, 1])
    }
}

/// `Conv2d_BN`: a bias-free conv followed by BatchNorm.
#[derive(Module, Debug)]
pub struct Conv2dBn {
    pub c: Conv2d,
    pub bn: BatchNorm2d,
}

impl Conv2dBn {
    pub fn new(
        a: usize,
        b: usize,
        ks: usize,
        stride: usize,
        pad: usize,
        groups: usize,
        device: &Device,
    ) -> Self {
        Self {
            c: conv2d(a, b, ks, stride, pad, groups, false, device),
            bn: BatchNorm2d::new(b, device),
        }
    }
    /// BatchNorm (inference statistics) folded into the conv: `conv(x, W·s) + (β - μ·s)` with
    /// `s = γ/√(σ²+ε)`. Same function as conv then BN, one pass over the activations instead of
    /// three; the fold costs a few thousand multiplies on the weights per call.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let bn = &self.bn;
        let c = bn.weight.dims()[0];
        let s = (bn.running_var.val() + bn.eps).sqrt().recip() * bn.weight.val();
        let shift = bn.bias.val() - bn.running_mean.val() * s.clone();
        let w = self.c.weight.val() * s.reshape([c, 1, 1, 1]);
        let padding = match self.c.padding {
            PaddingConfig2d::Explicit(top, left, bottom, right) => [(top, bottom), (left, right)],
            // `Conv2dBn::new` always builds explicit padding; anything else keeps the plain path.
            _ => return self.bn.forward(self.c.forward(x)),
        };
        let options =
            ConvOptions::new_with_padding(self.c.stride, padding, self.c.dilation, self.c.groups);
        burn::tensor::module::conv2d(x, w, Some(shift), options)
    }
}

#[derive(Module, Debug)]
pub struct PatchEmbed {
    pub seq0: Conv2dBn,
    pub seq2: Conv2dBn,
}

impl PatchEmbed {
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.seq2.forward(gelu(self.seq0.forward(x)))
    }
}

#[derive(Module, Debug)]
pub struct MbConv {
    pub conv1: Conv2dBn,
    pub conv2: Conv2dBn,
    pub conv3: Conv2dBn,
}

impl MbConv {
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let shortcut = x.clone();
        let x = gelu(self.conv1.forward(x));
        let x = gelu(self.conv2.forward(x));
        gelu(self.conv3.forward(x) + shortcut)
    }
}

#[derive(Module, Debug)]
pub struct PatchMerging {
    pub conv1: Conv2dBn,
    pub conv2: Conv2dBn,
    pub conv3: Conv2dBn,
}

impl PatchMerging {
    pub fn new(dim: usize, out_dim: usize, device: &Device) -> Self {
        // The official code keeps the last stage at stride 1 for these widths (64×64 output).
        let stride = if matches!(out_dim, 320 | 448 | 576) {
            1
        } else {
            2
        };
        Self {
            conv1: Conv2dBn::new(dim, out_dim, 1, 1, 0, 1, device),
            conv2: Conv2dBn::new(out_dim, out_dim, 3, stride, 1, out_dim, device),
            conv3: Conv2dBn::new(out_dim, out_dim, 1, 1, 0, 1, device),
        }
    }
    /// (B, C, H, W) -> (B, C', H', W')
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = gelu(self.conv1.forward(x));
        let x = gelu(self.conv2.forward(x));
        self.conv3.forward(x)
    }
}

#[derive(Module, Debug)]
pub struct ConvLayer {
    pub blocks: Vec<MbConv>,
    pub downsample: Option<PatchMerging>,
}

#[derive(Module, Debug)]
pub struct Mlp {
    pub norm: LayerNorm,
    pub fc1: Linear,
    pub fc2: Linear,
    pub fc1_adapter: Option<Adapter>,
    pub fc2_adapter: Option<Adapter>,
}

impl Mlp {
    /// x: (B, H, W, C) tokens kept spatial so adapters can see the grid.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = self.norm.forward(x);
        let mut h = self.fc1.forward(x.clone());
        if let Some(a) = &self.fc1_adapter {
            h = h + a.forward(x, AdaptTarget::Plain);
        }
        let h = gelu(h);
        let mut y = self.fc2.forward(h.clone());
        if let Some(a) = &self.fc2_adapter {
            y = y + a.forward(h, AdaptTarget::Plain);
        }
        y
    }
}

#[derive(Module, Debug)]
pub struct Attention {
    pub norm: LayerNorm,
    pub qkv: Linear,
    pub proj: Linear,
    pub attention_biases: Param<Tensor<2>>,
    pub num_heads: usize,
    pub key_dim: usize,
    /// Flattened (N, N) index of each token pair's offset into `attention_biases`.
    #[module(skip)]
    pub bias_idxs: Vec<i64>,
    pub qkv_adapter: Option<Adapter>,
    pub proj_adapter: Option<Adapter>,
}

impl Attention {
    pub fn new(dim: usize, num_heads: usize, resolution: usize, device: &Device) -> Self {
        let key_dim = dim / num_heads;
        let mut offsets: Vec<(usize, usize)> = Vec::new();
        let points: Vec<(usize, usize)> = (0..resolution)
            .flat_map(|i| (0..resolution).map(move |j| (i, j)))
            .collect();
        let mut idxs = Vec::with_capacity(points.len() * points.len());
        for p1 in &points {
            for p2 in &points {
                let off = (p1.0.abs_diff(p2.0), p1.1.abs_diff(p2.1));
                let i = match offsets.iter().position(|o| *o == off) {
                    Some(i) => i,
                    None => {
                        offsets.push(off);
                        offsets.len() - 1
                    }
                };
                idxs.push(i as i64);
            }
        }
        Self {
            norm: layer_norm(dim, 1e-5, device),
            qkv: linear(dim, 3 * dim, true, device),
            proj: linear(dim, dim, true, device),
            attention_biases: Param::from_tensor(Tensor::zeros([num_heads, offsets.len()], device)),
            num_heads,
            key_dim,
            bias_idxs: idxs,
            qkv_adapter: None,
            proj_adapter: None,
        }
    }

    /// x: (B', ws, ws, C) windows -> (B', ws, ws, C)
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.forward_with(x, None)
    }

    /// The qkv adapter's output on the whole unpadded token map (B, H, W, C), when the adapter
    /// asks for the full grid. The official block pads before this attention's LayerNorm, so
    /// padded tokens equal the LayerNorm bias; computed here they never reach the cell.
    pub fn full_grid_delta(&self, x: &Tensor<4>) -> Option<Tensor<4>> {
        let a = self.qkv_adapter.as_ref().filter(|a| a.full_grid)?;
        Some(a.forward(
            self.norm.forward(x.clone()),
            AdaptTarget::TinyVitQkv {
                num_heads: self.num_heads,
            },
        ))
    }

    /// The qkv adapter's output for one padded token (LayerNorm of zeros), as a (1, 1, 1, 3C)
    /// map. Per token, so it equals the merged weights' change for foldable adapters.
    pub fn padded_token_delta(&self, c: usize, device: &Device) -> Tensor<4> {
        let zero = Tensor::<4>::zeros([1, 1, 1, c], device);
        match &self.qkv_adapter {
            Some(a) => a.forward(
                self.norm.forward(zero),
                AdaptTarget::TinyVitQkv {
                    num_heads: self.num_heads,
                },
            ),
            None => Tensor::zeros([1, 1, 1, 3 * c], device),
        }
    }

    /// `qkv_delta`: the qkv adapter's output for these windows computed by the caller (full
    /// grid); `None` computes the adapter here, per window.
    pub fn forward_with(&self, x: Tensor<4>, qkv_delta: Option<Tensor<4>>) -> Tensor<4> {
        let [b, wh, ww, c] = x.dims();
        let n = wh * ww;
        let (nh, kd) = (self.num_heads, self.key_dim);
        let x = self.norm.forward(x);
        let mut qkv = self.qkv.forward(x.clone());
        if let Some(d) = qkv_delta {
            qkv = qkv + d;
        } else if let Some(a) = &self.qkv_adapter {
            qkv = qkv + a.forward(x, AdaptTarget::TinyVitQkv { num_heads: nh });
        }
        // view(B, N, heads, -1).split([kd, kd, d], dim=3): q, k, v interleaved per head.
        let qkv = qkv.reshape([b, n, nh, 3 * kd]);
        let part = |i: usize| qkv.clone().narrow(3, i * kd, kd).permute([0, 2, 1, 3]);
        let (q, k, v) = (part(0), part(1), part(2));
        let device = q.device();
        let idx =
            Tensor::<1, Int>::from_data(TensorData::new(self.bias_idxs.clone(), [n * n]), &device);
        let ab = self
            .attention_biases
            .val()
            .select(1, idx)
            .reshape([1, nh, n, n]);
        let attn = q.matmul(k.swap_dims(2, 3)) * (kd as f64).powf(-0.5) + ab;
        let out = softmax(attn, 3)
            .matmul(v)
            .swap_dims(1, 2)
            .reshape([b, wh, ww, c]);
        let mut y = self.proj.forward(out.clone());
        if let Some(a) = &self.proj_adapter {
            y = y + a.forward(out, AdaptTarget::Plain);
        }
        y
    }
}

#[derive(Module, Debug)]
pub struct TinyViTBlock {
    pub attn: Attention,
    pub mlp: Mlp,
    pub local_conv: Conv2dBn,
    pub window_size: usize,
}

impl TinyViTBlock {
    /// x: (B, H, W, C) -> (B, H, W, C)
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, h, w, c] = x.dims();
        let ws = self.window_size;
        let res = x.clone();
        let x = if h == ws && w == ws {
            self.attn.forward(x)
        } else {
            let pad_b = (ws - h % ws) % ws;
            let pad_r = (ws - w % ws) % ws;
            let (ph, pw) = (h + pad_b, w + pad_r);
            let (nh, nw) = (ph / ws, pw / ws);
            let partition = |t: Tensor<4>| {
                let d = t.dims()[3];
                let t = if pad_b > 0 || pad_r > 0 {
                    t.pad([(0, pad_b), (0, pad_r), (0, 0)], PadMode::Constant(0.0))
                } else {
                    t
                };
                t.reshape([b, nh, ws, nw, ws, d])
                    .swap_dims(2, 3)
                    .reshape([b * nh * nw, ws, ws, d])
            };
            let delta = self.attn.full_grid_delta(&x).map(|d| {
                if pad_b == 0 && pad_r == 0 {
                    return partition(d);
                }
                // Padded tokens are LayerNorm(0) = β, as in the official layout; they get the
                // adapter's per-token output on β (what merged weights give them), not zero.
                let device = d.device();
                let pad_delta = self.attn.padded_token_delta(c, &device);
                let padded = partition(Tensor::<4>::ones([b, h, w, 1], &device)).neg() + 1.0;
                partition(d) + padded * pad_delta
            });
            let win = partition(x);
            let x = self
                .attn
                .forward_with(win, delta)
                .reshape([b, nh, nw, ws, ws, c])
                .swap_dims(2, 3)
                .reshape([b, ph, pw, c]);
            if pad_b > 0 || pad_r > 0 {
                x.slice(s![.., 0..h, 0..w, ..])
            } else {
                x
            }
        };
        let x = res + x;
        let x = self
            .local_conv
            .forward(x.permute([0, 3, 1, 2]))
            .permute([0, 2, 3, 1]);
        x.clone() + self.mlp.forward(x)
    }
}

#[derive(Module, Debug)]
pub struct BasicLayer {
    pub blocks: Vec<TinyViTBlock>,
    pub downsample: Option<PatchMerging>,
}

/// `TinyViT.layers[i]`: the first stage is convolutional, the rest are transformer stages.
#[derive(Module, Debug)]
pub enum TinyLayer {
    Conv(ConvLayer),
    Basic(BasicLayer),
}

#[derive(Module, Debug)]
pub struct TinyViT {
    pub patch_embed: PatchEmbed,
    pub layers: Vec<TinyLayer>,
    pub neck: Neck,
    pub img_size: usize,
}

impl TinyViT {
    pub fn new(cfg: &TinyVitConfig, device: &Device) -> Self {
        let dims = &cfg.embed_dims;
        let n = dims.len();
        let layers = (0..n)
            .map(|i| {
                let downsample = (i < n - 1)
                    .then(|| PatchMerging::new(dims[i], dims[(i + 1).min(n - 1)], device));
                if i == 0 {
                    let hidden = (dims[0] as f64 * cfg.mbconv_expand_ratio) as usize;
                    TinyLayer::Conv(ConvLayer {
                        blocks: (0..cfg.depths[0])
                            .map(|_| MbConv {
                                conv1: Conv2dBn::new(dims[0], hidden, 1, 1, 0, 1, device),
                                conv2: Conv2dBn::new(hidden, hidden, 3, 1, 1, hidden, device),
                                conv3: Conv2dBn::new(hidden, dims[0], 1, 1, 0, 1, device),
                            })
                            .collect(),
                        downsample,
                    })
                } else {
                    let dim = dims[i];
                    let mlp_hidden = (dim as f64 * cfg.mlp_ratio) as usize;
                    let ks = cfg.local_conv_size;
                    TinyLayer::Basic(BasicLayer {
                        blocks: (0..cfg.depths[i])
                            .map(|_| TinyViTBlock {
                                attn: Attention::new(
                                    dim,
                                    cfg.num_heads[i],
                                    cfg.window_sizes[i],
                                    device,
                                ),
                                mlp: Mlp {
                                    norm: layer_norm(dim, 1e-5, device),
                                    fc1: linear(dim, mlp_hidden, true, device),
                                    fc2: linear(mlp_hidden, dim, true, device),
                                    fc1_adapter: None,
                                    fc2_adapter: None,
                                },
                                local_conv: Conv2dBn::new(dim, dim, ks, 1, ks / 2, dim, device),
                                window_size: cfg.window_sizes[i],
                            })
                            .collect(),
                        downsample,
                    })
                }
            })
            .collect();
        Self {
            patch_embed: {
                // MobileSAM's strided 3×3 stem, or LiteMedSAM's full-resolution 1×1 one.
                let (k, st, p) = cfg.stem.conv();
                PatchEmbed {
                    seq0: Conv2dBn::new(cfg.in_chans, dims[0] / 2, k, st, p, 1, device),
                    seq2: Conv2dBn::new(dims[0] / 2, dims[0], k, st, p, 1, device),
                }
            },
            layers,
            neck: Neck::new(dims[n - 1], cfg.out_chans, device),
            img_size: cfg.img_size,
        }
    }

    /// Output of the convolutional stem + first stage, as (B, H, W, C) tokens.
    pub fn embed(&self, x: Tensor<4>) -> Tensor<4> {
        let x = self.patch_embed.forward(x);
        self.forward_layers(x.permute([0, 2, 3, 1]), 0..1)
    }

    /// Runs stages `range` on (B, H, W, C) tokens.
    pub fn forward_layers(&self, mut x: Tensor<4>, range: std::ops::Range<usize>) -> Tensor<4> {
        for layer in &self.layers[range] {
            let (blocks_out, down) = match layer {
                TinyLayer::Conv(l) => {
                    let mut y = x.permute([0, 3, 1, 2]);
                    for blk in &l.blocks {
                        y = blk.forward(y);
                    }
                    (y, &l.downsample)
                }
                TinyLayer::Basic(l) => {
                    let mut y = x;
                    for blk in &l.blocks {
                        y = blk.forward(y);
                    }
                    (y.permute([0, 3, 1, 2]), &l.downsample)
                }
            };
            let y = match down {
                Some(d) => d.forward(blocks_out),
                None => blocks_out,
            };
            x = y.permute([0, 2, 3, 1]);
        }
        x
    }

    pub fn forward_neck(&self, x: Tensor<4>) -> Tensor<4> {
        self.neck.forward(x.permute([0, 3, 1, 2]))
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = self.embed(x);
        let x = self.forward_layers(x, 1..self.layers.len());
        self.forward_neck(x)
    }
}
