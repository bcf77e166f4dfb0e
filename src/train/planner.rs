//! Before training: estimate peak memory and time per step for the model, resolution, method
//! and device, and suggest settings that fit. Estimates are analytic (FLOPs and stored
//! activations of the adapted part of the encoder) scaled by a throughput measured on the
//! device in a fraction of a second.

use std::time::Instant;

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::trainer::TrainConfig;
use crate::adapt::Method;
use crate::sam::config::{EncoderConfig, SamConfig};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Plan {
    /// Forward multiply-accumulates of the trained part of the encoder + decoder, per step.
    pub gmacs_per_step: f64,
    /// Estimated training step time (s).
    pub step_seconds: f64,
    /// Estimated peak memory of activations kept for the backward pass (MiB).
    pub activation_mib: f64,
    pub measured_gflops: f64,
    pub suggestions: Vec<String>,
}

/// (forward MACs, stored activation floats) of one attention block with `tokens` tokens in
/// windows of `win` tokens, width `c`, `heads` heads and MLP width `mlp`.
fn block_cost(tokens: f64, win: f64, c: f64, heads: f64, mlp: f64) -> (f64, f64) {
    let linear = tokens * (4.0 * c * c + 2.0 * c * mlp);
    let attn = 2.0 * tokens * win * c;
    let acts = tokens * (8.0 * c + 2.0 * mlp) + 2.0 * heads * tokens * win;
    (linear + attn, acts)
}

/// Encoder cost of the stages a method trains through (everything after the cached prefix).
fn encoder_cost(cfg: &SamConfig, img: usize, first_stage: usize) -> (f64, f64) {
    let (mut macs, mut acts) = (0.0, 0.0);
    match &cfg.encoder {
        EncoderConfig::Vit(v) => {
            let grid = (img / v.patch_size) as f64;
            let n = grid * grid;
            let c = v.embed_dim as f64;
            for i in first_stage..v.depth {
                let win = if v.global_attn_indexes.contains(&i) {
                    n
                } else {
                    (v.window_size * v.window_size) as f64
                };
                let (m, a) = block_cost(n, win, c, v.num_heads as f64, c * v.mlp_ratio);
                macs += m;
                acts += a;
            }
        }
        EncoderConfig::TinyVit(t) => {
            let mut res = (img / 4) as f64;
            for (i, &d) in t.embed_dims.iter().enumerate() {
                if i > 0 {
                    let n = res * res;
                    let win = (t.window_sizes[i] * t.window_sizes[i]) as f64;
                    if i >= first_stage {
                        for _ in 0..t.depths[i] {
                            let (m, a) = block_cost(
                                n,
                                win,
                                d as f64,
                                t.num_heads[i] as f64,
                                d as f64 * t.mlp_ratio,
                            );
                            macs += m + n * d as f64 * 9.0;
                            acts += a + n * d as f64;
                        }
                    }
                }
                let next = t.embed_dims.get(i + 1).copied().unwrap_or(d);
                if i + 1 < t.embed_dims.len() && !matches!(next, 320 | 448 | 576) {
                    res /= 2.0;
                }
            }
        }
    }
    (macs, acts)
}

/// Floating-point throughput of `device` on a mid-sized matmul (GFLOP/s).
pub fn measure_gflops(device: &Device) -> f64 {
    let n = 384;
    let a = Tensor::<2>::ones([n, n], device);
    let b = Tensor::<2>::ones([n, n], device);
    let _ = a.clone().matmul(b.clone()).into_data();
    let t = Instant::now();
    let reps = 4;
    for _ in 0..reps {
        let _ = a.clone().matmul(b.clone()).into_data();
    }
    let s = t.elapsed().as_secs_f64().max(1e-6);
    2.0 * (n * n * n * reps) as f64 / s / 1e9
}

pub fn plan(
    model: &SamConfig,
    cfg: &TrainConfig,
    first_stage: usize,
    device: &Device,
    memory_budget_mib: f64,
) -> Plan {
    let img = model.img_size();
    let (enc_macs, enc_acts) = encoder_cost(model, img, first_stage);
    let k = cfg.objects_per_step.max(1) as f64;
    let emb = (img / 16) as f64;
    let d = model.mask_decoder.transformer_dim as f64;
    // Decoder: two-way transformer over the embedding grid per prompt, plus upscaling.
    let dec_macs = k * (emb * emb * d * d * 8.0 + 16.0 * emb * emb * d * d / 16.0);
    let dec_acts = k * emb * emb * d * 24.0;
    let method_factor = match cfg.adapter.method {
        Method::Lora | Method::DecoderOnly => 1.0,
        Method::NasLora | Method::NasPcLora => 1.05,
        Method::ConvLora => 1.15,
    };
    let macs = (enc_macs + dec_macs) * method_factor * cfg.grad_accum.max(1) as f64;
    let measured = measure_gflops(device);
    // Forward + backward ≈ 3× forward; big kernels reach ~60% of the matmul probe.
    let step_seconds = 3.0 * 2.0 * macs / (measured * 1e9 * 0.6);
    let activation_mib = (enc_acts + dec_acts) * 4.0 / (1024.0 * 1024.0);
    let mut suggestions = Vec::new();
    if activation_mib > memory_budget_mib {
        suggestions.push(format!(
            "estimated {activation_mib:.0} MiB of activations exceeds the {memory_budget_mib:.0} MiB budget: adapt fewer (later) blocks with --blocks, \
             lower --objects-per-step and use --grad-accum, or use MobileSAM"
        ));
    }
    if step_seconds * cfg.schedule.steps as f64 > 3600.0 {
        suggestions.push(format!(
            "{} steps at ~{step_seconds:.1} s/step take over an hour on this device: use fewer --steps, adapt fewer blocks, or a GPU",
            cfg.schedule.steps
        ));
    }
    Plan {
        gmacs_per_step: macs / 1e9,
        step_seconds,
        activation_mib,
        measured_gflops: measured,
        suggestions,
    }
}
