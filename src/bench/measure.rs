//! Measuring: timed calls (cold apart from warm), peak memory, device sync, the models by
//! name and deterministic inputs.

use std::time::Instant;

use anyhow::Result;
use burn::prelude::*;
use image::RgbImage;

use super::BenchArgs;
use crate::device::ComputeDevice;
use crate::sam::SamConfig;

pub(super) fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    Some(if n % 2 == 1 {
        s[n / 2]
    } else {
        0.5 * (s[n / 2 - 1] + s[n / 2])
    })
}

pub fn config_by_name(name: &str) -> Result<SamConfig> {
    Ok(match name.trim() {
        "vit_t" | "mobilesam" => SamConfig::vit_t(),
        "vit_b" => SamConfig::vit_b(),
        "vit_l" => SamConfig::vit_l(),
        "vit_h" => SamConfig::vit_h(),
        "vit_tiny" => SamConfig::vit_tiny(),
        other => {
            anyhow::bail!("unknown model '{other}' (known: vit_t, vit_b, vit_l, vit_h, vit_tiny)")
        }
    })
}

/// Deterministic pseudo-random numbers (the same stream as the PyTorch script's inputs is not
/// needed: timings do not depend on values, only on shapes).
pub(super) fn lcg_data(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            // Roughly N(0, 1): sum of 4 uniforms, centred and scaled.
            let mut acc = 0.0f32;
            for k in 0..4 {
                let u = ((s >> (16 + 8 * k)) & 0xFFFF) as f32 / 65535.0;
                acc += u;
            }
            (acc - 2.0) * 1.732
        })
        .collect()
}

pub(super) fn test_image(size: usize) -> RgbImage {
    // A smooth pattern with some texture: the bytes do not matter for timing.
    RgbImage::from_fn(size as u32, size as u32, |x, y| {
        let v = ((x * 7 + y * 13) % 256) as u8;
        image::Rgb([v, (x % 256) as u8, (y % 256) as u8])
    })
}

pub(super) fn sync(dev: &Device) {
    let _ = dev.sync();
}

/// Peak resident set of this process (bytes), from /proc/self/status.
pub fn vm_hwm() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Resets VmHWM to the current RSS (Linux ≥ 4.0); returns whether it worked.
pub fn reset_vm_hwm() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

pub(super) struct MemProbe {
    gpu: bool,
    dev: Device,
}

impl MemProbe {
    pub(super) fn start(dev: &ComputeDevice) -> Self {
        if dev.is_gpu {
            sync(&dev.device);
            dev.device.memory_cleanup();
        } else {
            reset_vm_hwm();
        }
        Self {
            gpu: dev.is_gpu,
            dev: dev.device.clone(),
        }
    }
    pub(super) fn finish(&self) -> (Option<u64>, Option<String>) {
        if self.gpu {
            sync(&self.dev);
            let u = self.dev.memory_pool_usage();
            (u.map(|u| u.bytes_reserved), Some("gpu-reserved".into()))
        } else {
            (vm_hwm(), Some("cpu-vmhwm".into()))
        }
    }
}

/// Call times of one case in ms, and how many calls after the first were warm-up.
pub(super) struct Calls {
    pub(super) ms: Vec<f64>,
    pub(super) warmup: usize,
}

/// Runs `f` once cold, then `args.warmup` warm-up calls (resolved by `run`), then timed calls
/// until `iters` of them or `args.budget_s` (counted after the warm-up) is spent.
pub(super) fn time_calls(args: &BenchArgs, iters: usize, mut f: impl FnMut()) -> Calls {
    let (warmup, budget_s) = (args.warmup.unwrap_or(0), args.budget_s);
    let mut t_case = Instant::now();
    let mut calls = Vec::new();
    loop {
        let t = Instant::now();
        f();
        calls.push(t.elapsed().as_secs_f64() * 1e3);
        if t.elapsed().as_secs_f64() > 2.0 || calls.len() <= 1 + warmup {
            // Slow calls (cold GPU starts) and warm-up calls show progress, so a run cut short
            // says where it was and how the warm-up converged.
            eprintln!(
                "    call {}: {:.3} s",
                calls.len(),
                t.elapsed().as_secs_f64()
            );
        }
        if calls.len() <= 1 + warmup {
            t_case = Instant::now(); // the budget is for timed calls
            continue;
        }
        let warm = calls.len() - 1 - warmup;
        if warm >= iters || (warm >= 1 && t_case.elapsed().as_secs_f64() > budget_s) {
            break;
        }
    }
    Calls { ms: calls, warmup }
}

pub(super) fn input_tensor(size: usize, batch: usize, seed: u64, dev: &Device) -> Tensor<4> {
    Tensor::from_data(
        TensorData::new(
            lcg_data(batch * 3 * size * size, seed),
            [batch, 3, size, size],
        ),
        dev,
    )
}
