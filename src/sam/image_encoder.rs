//! Mirrors `segment_anything/modeling/image_encoder.py`: the ViT image encoder with windowed
//! and global attention and decomposed relative position embeddings.

use burn::module::Param;
use burn::nn::conv::Conv2d;
use burn::nn::{LayerNorm, Linear};
use burn::prelude::*;
use burn::tensor::activation::softmax;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions, PadMode};

use super::common::{Act, LayerNorm2d, MlpBlock, conv2d, layer_norm, linear};
use super::config::VitConfig;
use crate::nn::{AdaptTarget, Adapter};

/// Largest attention matrix computed in one piece (elements). Global attention at 1024² is
/// 4096² per head; splitting by head keeps each piece at 64 MiB, under the 128 MiB storage
/// buffer limit of some Vulkan drivers, and bounds peak memory.
const MAX_ATTN_ELEMS: usize = 1 << 24;

#[derive(Module, Debug)]
pub struct PatchEmbed {
    pub proj: Conv2d,
}

impl PatchEmbed {
    /// (B, 3, H, W) -> (B, H/16, W/16, C)
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.proj.forward(x).permute([0, 2, 3, 1])
    }
}

/// The neck shared by the ViT and TinyViT encoders (`neck.0..3` in the checkpoints).
#[derive(Module, Debug)]
pub struct Neck {
    pub conv1: Conv2d,
    pub ln1: LayerNorm2d,
    pub conv2: Conv2d,
    pub ln2: LayerNorm2d,
}

impl Neck {
    pub fn new(c_in: usize, out_chans: usize, device: &Device) -> Self {
        Self {
            conv1: conv2d(c_in, out_chans, 1, 1, 0, 1, false, device),
            ln1: LayerNorm2d::new(out_chans, device),
            conv2: conv2d(out_chans, out_chans, 3, 1, 1, 1, false, device),
            ln2: LayerNorm2d::new(out_chans, device),
        }
    }
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = self.ln1.forward(self.conv1.forward(x));
        self.ln2.forward(self.conv2.forward(x))
    }
}

#[derive(Module, Debug)]
pub struct Attention {
    pub qkv: Linear,
    pub proj: Linear,
    pub rel_pos_h: Option<Param<Tensor<2>>>,
    pub rel_pos_w: Option<Param<Tensor<2>>>,
    pub num_heads: usize,
    /// Adapter on the fused qkv projection (NAS-LoRA and friends); `None` for the base model.
    pub qkv_adapter: Option<Adapter>,
    pub proj_adapter: Option<Adapter>,
}

impl Attention {
    pub fn new(
        dim: usize,
        num_heads: usize,
        qkv_bias: bool,
        rel_pos: Option<[usize; 2]>,
        device: &Device,
    ) -> Self {
        let head_dim = dim / num_heads;
        let rp = |n: usize| Param::from_tensor(Tensor::zeros([2 * n - 1, head_dim], device));
        Self {
            qkv: linear(dim, dim * 3, qkv_bias, device),
            proj: linear(dim, dim, true, device),
            rel_pos_h: rel_pos.map(|[h, _]| rp(h)),
            rel_pos_w: rel_pos.map(|[_, w]| rp(w)),
            num_heads,
            qkv_adapter: None,
            proj_adapter: None,
        }
    }

    /// x: (B, H, W, C) -> (B, H, W, C)
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.forward_with(x, None)
    }

    /// The qkv adapter's output on a whole (unpartitioned) token map, when the adapter asks
    /// for the full grid; the block partitions it like its input.
    pub fn full_grid_delta(&self, x: &Tensor<4>) -> Option<Tensor<4>> {
        let a = self.qkv_adapter.as_ref().filter(|a| a.full_grid)?;
        Some(a.forward(
            x.clone(),
            AdaptTarget::VitQkv {
                num_heads: self.num_heads,
            },
        ))
    }

    /// `qkv_delta`: the qkv adapter's output computed by the caller (full grid); `None`
    /// computes the adapter here on `x`.
    pub fn forward_with(&self, x: Tensor<4>, qkv_delta: Option<Tensor<4>>) -> Tensor<4> {
        let [b, h, w, c] = x.dims();
        let (nh, n) = (self.num_heads, h * w);
        let hd = c / nh;
        let mut qkv = self.qkv.forward(x.clone());
        if let Some(d) = qkv_delta {
            qkv = qkv + d;
        } else if let Some(a) = &self.qkv_adapter {
            qkv = qkv + a.forward(x, AdaptTarget::VitQkv { num_heads: nh });
        }
        let qkv = qkv
            .reshape([b, n, 3, nh, hd])
            .permute([2, 0, 3, 1, 4])
            .reshape([3, b * nh, n, hd]);
        let part = |i: usize| qkv.clone().narrow(0, i, 1).reshape([b * nh, n, hd]);
        let (q, k, v) = (part(0), part(1), part(2));
        let rel = self
            .rel_pos_h
            .as_ref()
            .zip(self.rel_pos_w.as_ref())
            .map(|(rh, rw)| (get_rel_pos(h, h, rh.val()), get_rel_pos(w, w, rw.val())));

        let scale = (hd as f64).powf(-0.5);
        let chunk = (MAX_ATTN_ELEMS / (n * n)).clamp(1, b * nh);
        let mut outs = Vec::new();
        let mut start = 0;
        while start < b * nh {
            let len = chunk.min(b * nh - start);
            let qc = q.clone().narrow(0, start, len);
            let kc = k.clone().narrow(0, start, len);
            let vc = v.clone().narrow(0, start, len);
            let mut attn = (qc.clone() * scale).matmul(kc.swap_dims(1, 2));
            if let Some((rh, rw)) = &rel {
                attn = add_decomposed_rel_pos(attn, qc, rh.clone(), rw.clone(), [h, w]);
            }
            outs.push(softmax(attn, 2).matmul(vc));
            start += len;
        }
        let out = if outs.len() == 1 {
            outs.pop().unwrap()
        } else {
            Tensor::cat(outs, 0)
        };
        let out = out
            .reshape([b, nh, h, w, hd])
            .permute([0, 2, 3, 1, 4])
            .reshape([b, h, w, c]);
        let mut y = self.proj.forward(out.clone());
        if let Some(a) = &self.proj_adapter {
            y = y + a.forward(out, AdaptTarget::Plain);
        }
        y
    }
}

/// Relative positional embeddings for every (query, key) pair along one axis:
/// `rel_pos[q - k + (k_size - 1)]` after resizing the table to `2·max(q,k) - 1` rows.
pub fn get_rel_pos(q_size: usize, k_size: usize, rel_pos: Tensor<2>) -> Tensor<3> {
    let max_rel_dist = 2 * q_size.max(k_size) - 1;
    let [len, dim] = rel_pos.dims();
    let device = rel_pos.device();
    let resized = if len != max_rel_dist {
        // F.interpolate(mode="linear") == bilinear on a (1, C, L, 1) map, align_corners=false.
        let x = rel_pos.swap_dims(0, 1).reshape([1, dim, len, 1]);
        let x = interpolate(
            x,
            InterpolateOptions::new(InterpolateMode::Bilinear)
                .with_output_size([max_rel_dist, 1])
                .with_align_corners(false),
        );
        x.reshape([dim, max_rel_dist]).swap_dims(0, 1)
    } else {
        rel_pos
    };
    let qs = (k_size as f64 / q_size as f64).max(1.0);
    let ks = (q_size as f64 / k_size as f64).max(1.0);
    let mut idx = Vec::with_capacity(q_size * k_size);
    for qi in 0..q_size {
        for ki in 0..k_size {
            let r = qi as f64 * qs - ki as f64 * ks + (k_size as f64 - 1.0) * ks;
            idx.push(r as i64);
        }
    }
    let idx = Tensor::<1, Int>::from_data(TensorData::new(idx, [q_size * k_size]), &device);
    resized.select(0, idx).reshape([q_size, k_size, dim])
}

/// attn: (B, qh*qw, kh*kw); q: (B, qh*qw, C); rel_h: (qh, kh, C); rel_w: (qw, kw, C).
pub fn add_decomposed_rel_pos(
    attn: Tensor<3>,
    q: Tensor<3>,
    rel_h: Tensor<3>,
    rel_w: Tensor<3>,
    [qh, qw]: [usize; 2],
) -> Tensor<3> {
    let [b, _, dim] = q.dims();
    let [_, kh, _] = rel_h.dims();
    let [_, kw, _] = rel_w.dims();
    let r_q = q.reshape([b, qh, qw, dim]);
    // einsum("bhwc,hkc->bhwk"): batch the matmul over h.
    let rh = r_q
        .clone()
        .permute([1, 0, 2, 3])
        .reshape([qh, b * qw, dim])
        .matmul(rel_h.swap_dims(1, 2))
        .reshape([qh, b, qw, kh])
        .permute([1, 0, 2, 3]);
    // einsum("bhwc,wkc->bhwk"): batch over w.
    let rw = r_q
        .permute([2, 0, 1, 3])
        .reshape([qw, b * qh, dim])
        .matmul(rel_w.swap_dims(1, 2))
        .reshape([qw, b, qh, kw])
        .permute([1, 2, 0, 3]);
    let attn = attn.reshape([b, qh, qw, kh, kw])
        + rh.reshape([b, qh, qw, kh, 1])
        + rw.reshape([b, qh, qw, 1, kw]);
    attn.reshape([b, qh * qw, kh * kw])
}

/// (B, H, W, C) -> (B·nW, ws, ws, C), zero-padding bottom/right to a multiple of ws.
pub fn window_partition(x: Tensor<4>, ws: usize) -> (Tensor<4>, [usize; 2]) {
    let [b, h, w, c] = x.dims();
    let pad_h = (ws - h % ws) % ws;
    let pad_w = (ws - w % ws) % ws;
    let x = if pad_h > 0 || pad_w > 0 {
        x.pad([(0, pad_h), (0, pad_w), (0, 0)], PadMode::Constant(0.0))
    } else {
        x
    };
    let (hp, wp) = (h + pad_h, w + pad_w);
    let windows = x
        .reshape([b, hp / ws, ws, wp / ws, ws, c])
        .permute([0, 1, 3, 2, 4, 5])
        .reshape([b * (hp / ws) * (wp / ws), ws, ws, c]);
    (windows, [hp, wp])
}

pub fn window_unpartition(
    windows: Tensor<4>,
    ws: usize,
    [hp, wp]: [usize; 2],
    [h, w]: [usize; 2],
) -> Tensor<4> {
    let [bw, _, _, c] = windows.dims();
    let b = bw / (hp * wp / ws / ws);
    let x = windows
        .reshape([b, hp / ws, wp / ws, ws, ws, c])
        .permute([0, 1, 3, 2, 4, 5])
        .reshape([b, hp, wp, c]);
    if hp > h || wp > w {
        x.slice(s![.., 0..h, 0..w, ..])
    } else {
        x
    }
}

#[derive(Module, Debug)]
pub struct Block {
    pub norm1: LayerNorm,
    pub attn: Attention,
    pub norm2: LayerNorm,
    pub mlp: MlpBlock,
    pub window_size: usize,
}

impl Block {
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let shortcut = x.clone();
        let x = self.norm1.forward(x);
        let x = if self.window_size > 0 {
            let [_, h, w, _] = x.dims();
            let delta = self
                .attn
                .full_grid_delta(&x)
                .map(|d| window_partition(d, self.window_size).0);
            let (win, pad_hw) = window_partition(x, self.window_size);
            window_unpartition(
                self.attn.forward_with(win, delta),
                self.window_size,
                pad_hw,
                [h, w],
            )
        } else {
            self.attn.forward(x)
        };
        let x = shortcut + x;
        x.clone() + self.mlp.forward_spatial(self.norm2.forward(x))
    }
}

#[derive(Module, Debug)]
pub struct ImageEncoderViT {
    pub patch_embed: PatchEmbed,
    pub pos_embed: Option<Param<Tensor<4>>>,
    pub blocks: Vec<Block>,
    pub neck: Neck,
    pub img_size: usize,
}

impl ImageEncoderViT {
    pub fn new(cfg: &VitConfig, device: &Device) -> Self {
        let grid = cfg.img_size / cfg.patch_size;
        let blocks = (0..cfg.depth)
            .map(|i| {
                let window_size = if cfg.global_attn_indexes.contains(&i) {
                    0
                } else {
                    cfg.window_size
                };
                let input = if window_size == 0 {
                    [grid, grid]
                } else {
                    [window_size, window_size]
                };
                Block {
                    norm1: layer_norm(cfg.embed_dim, 1e-6, device),
                    attn: Attention::new(
                        cfg.embed_dim,
                        cfg.num_heads,
                        cfg.qkv_bias,
                        cfg.use_rel_pos.then_some(input),
                        device,
                    ),
                    norm2: layer_norm(cfg.embed_dim, 1e-6, device),
                    mlp: MlpBlock::new(
                        cfg.embed_dim,
                        (cfg.embed_dim as f64 * cfg.mlp_ratio) as usize,
                        Act::Gelu,
                        device,
                    ),
                    window_size,
                }
            })
            .collect();
        Self {
            patch_embed: PatchEmbed {
                proj: burn::nn::conv::Conv2dConfig::new(
                    [cfg.in_chans, cfg.embed_dim],
                    [cfg.patch_size, cfg.patch_size],
                )
                .with_stride([cfg.patch_size, cfg.patch_size])
                .init(device),
            },
            pos_embed: Some(Param::from_tensor(Tensor::zeros(
                [1, grid, grid, cfg.embed_dim],
                device,
            ))),
            blocks,
            neck: Neck::new(cfg.embed_dim, cfg.out_chans, device),
            img_size: cfg.img_size,
        }
    }

    /// Tokens after patch embedding and position embedding: (B, H/16, W/16, C).
    pub fn embed(&self, x: Tensor<4>) -> Tensor<4> {
        let x = self.patch_embed.forward(x);
        match &self.pos_embed {
            Some(p) => x + p.val(),
            None => x,
        }
    }

    /// Runs blocks `range` on tokens (B, h, w, C); lets training cache the frozen prefix.
    pub fn forward_blocks(&self, mut x: Tensor<4>, range: std::ops::Range<usize>) -> Tensor<4> {
        for blk in &self.blocks[range] {
            x = blk.forward(x);
        }
        x
    }

    pub fn forward_neck(&self, x: Tensor<4>) -> Tensor<4> {
        self.neck.forward(x.permute([0, 3, 1, 2]))
    }

    /// (B, 3, img, img) -> (B, out_chans, img/16, img/16)
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = self.embed(x);
        let x = self.forward_blocks(x, 0..self.blocks.len());
        self.forward_neck(x)
    }
}
