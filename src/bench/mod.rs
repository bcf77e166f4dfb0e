//! `segadapt bench`: latency, throughput and training-step cost of the engine, optionally side
//! by side with the official PyTorch code (`tools/bench_pytorch.py`) in the same run.
//!
//! Cases (the same names are used by the PyTorch script, so ratios pair up):
//! - `encoder/<model>`: `Sam::embed_image` on a (1, 3, 1024, 1024) input, random weights.
//! - `prompt/<model>/box<S>`: box prompt → mask logits at the original size, on an S×S image
//!   whose embedding is computed once (`Predictor::predict`, host copies included); split into
//!   `.../decode` (prompt encoder + mask decoder) and `.../postprocess` (upscaling to S×S);
//!   inside the decoder, `.../decode/dense_pe` and `.../decode/upscaling`.
//! - `train/<model>/<method>[+ckpt]`: one training step at 1024², batch 1 image with
//!   `--objects` box prompts, the trainer's recipe (frozen encoder prefix cached, adapters on
//!   every qkv, mask decoder trained, BCE+Dice + IoU loss, AdamW). NAS cells run in the search
//!   stage (all ops mixed, α trained), the most expensive one.
//! - `throughput/<model>`: images per second for batch segmentation (encoder + one box each).
//!
//! Every case reports the first call ("cold": kernel compilation and autotuning on a GPU,
//! allocations on the CPU) separately from the median of the following calls ("warm").
//! Peak memory: on a GPU the bytes the device allocator reserved over the step (cubecl's memory
//! pool, `Device::memory_pool_usage`; like `torch.cuda.max_memory_reserved`), measured after a
//! `memory_cleanup`; on the CPU the process's peak resident set (`VmHWM`, reset before the case).

mod cold;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use burn::module::{Module, ParamGroup};
use burn::optim::{AdamConfig, AdamWConfig, GradientsParams};
use burn::prelude::*;
use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::adapt::conv_lora::take_aux_losses;
use crate::adapt::{
    AdapterConfig, CellState, Method, apply_adapters, first_adapted_stage, set_cell_states,
    set_training,
};
use crate::device::ComputeDevice;
use crate::predict::{Predictor, PromptInput};
use crate::sam::{Prompts, Sam, SamConfig};
use crate::train::loss::{LossKind, hard_iou, mask_loss};
pub use cold::ColdCase;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Section {
    Encoder,
    Prompt,
    Train,
    Throughput,
    /// Single ops at the decoder's and encoders' shapes (GFLOP/s), to see where time goes.
    Ops,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Checkpointing {
    Off,
    On,
    Both,
}

#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Sections to run.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "encoder,prompt,train,throughput"
    )]
    pub sections: Vec<Section>,
    /// Encoders for the encoder-latency section: vit_t (MobileSAM), vit_b, vit_l, vit_h.
    #[arg(long, value_delimiter = ',', default_value = "vit_t,vit_b,vit_h")]
    pub models: Vec<String>,
    /// Model whose decoder answers the prompt section (the decoder is the same for all).
    #[arg(long, value_delimiter = ',', default_value = "vit_t")]
    pub prompt_models: Vec<String>,
    /// Models for the training-step section.
    #[arg(long, value_delimiter = ',', default_value = "vit_t,vit_b")]
    pub train_models: Vec<String>,
    /// Adapter methods for the training-step section.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "nas-lora,nas-pc-lora,lora,conv-lora"
    )]
    pub methods: Vec<Method>,
    /// Training steps: adapt only these encoder blocks (comma-separated indices; default all).
    /// The blocks before the first adapted one run once, outside autodiff, as in the trainer.
    #[arg(long, value_delimiter = ',')]
    pub blocks: Vec<usize>,
    /// Gradient checkpointing for the training steps (`both` runs each case twice).
    #[arg(long, value_enum, default_value = "off")]
    pub checkpointing: Checkpointing,
    /// Models for the batch-segmentation throughput section.
    #[arg(long, value_delimiter = ',', default_value = "vit_t")]
    pub throughput_models: Vec<String>,
    /// Warm calls per case (after the cold one), unless the time budget runs out first.
    #[arg(long, default_value_t = 5)]
    pub iters: usize,
    /// Warm calls of the prompt → mask case.
    #[arg(long, default_value_t = 30)]
    pub prompt_iters: usize,
    /// Time budget per case in seconds, counted after the warm-up calls; at least one warm call
    /// always runs.
    #[arg(long, default_value_t = 60.0)]
    pub budget_s: f64,
    /// Calls after the cold one that are still warm-up and left out of the warm median
    /// (default: 3 on a GPU, where the 2nd and 3rd calls still compile and autotune kernels
    /// for shapes the first did not reach, e.g. the optimiser's state; 0 on the CPU).
    #[arg(long)]
    pub warmup: Option<usize>,
    /// Side of the square test image of the prompt and throughput sections.
    #[arg(long, default_value_t = 512)]
    pub image_size: usize,
    /// Box prompts (objects) per training step.
    #[arg(long, default_value_t = 4)]
    pub objects: usize,
    /// Images of the throughput section.
    #[arg(long, default_value_t = 8)]
    pub images: usize,
    /// Write the report (ours, and PyTorch's with ratios when run) as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Also run the official PyTorch code on the same cases (tools/bench_pytorch.py) and
    /// print ratios ours/PyTorch.
    #[arg(long)]
    pub pytorch: bool,
    /// Python interpreter for --pytorch.
    #[arg(long, default_value = "python3")]
    pub python: String,
    /// Path of bench_pytorch.py (default: tools/bench_pytorch.py next to the working
    /// directory or the executable, or $SEGADAPT_BENCH_PYTORCH).
    #[arg(long)]
    pub pytorch_script: Option<PathBuf>,
    /// Device for the PyTorch side: cpu, cuda (default: cuda when ours runs on a GPU).
    #[arg(long)]
    pub pytorch_device: Option<String>,
    /// Read PyTorch results from this JSON instead of running the script.
    #[arg(long)]
    pub pytorch_json: Option<PathBuf>,
    /// Where the cold start goes instead of the usual cases: each listed first call (default
    /// mask,train) in a fresh process, on an empty kernel cache and again on the cache it left,
    /// with the kernels compiled and the autotune candidates run (`--json` writes the table).
    #[arg(long, value_enum, value_delimiter = ',', num_args = 0.., default_missing_value = "mask,train")]
    pub cold: Option<Vec<ColdCase>>,
    /// Ops section: only the ops whose name contains this (e.g. "matmul 4096x256x128").
    #[arg(long)]
    pub ops_filter: Option<String>,
    /// Working folder of `--cold` (logs and kernel caches; default: a temporary folder).
    #[arg(long)]
    pub cold_dir: Option<PathBuf>,
}

/// `--cold`'s report.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ColdReport {
    pub tool: String,
    pub device: String,
    pub features: Vec<String>,
    pub records: Vec<cold::ColdRecord>,
}

/// One measured case.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Record {
    pub case: String,
    /// First call, ms.
    pub cold_ms: f64,
    /// Median of the warm calls, ms.
    pub warm_ms: Option<f64>,
    pub warm_min_ms: Option<f64>,
    /// Every call in order, ms.
    pub calls_ms: Vec<f64>,
    /// Calls after the cold one left out of the warm median (still compiling).
    #[serde(default)]
    pub warmup_calls: usize,
    /// Peak memory of the case, bytes (see the module doc for what is counted).
    pub peak_bytes: Option<u64>,
    /// `gpu-reserved` or `cpu-vmhwm`.
    pub mem_kind: Option<String>,
    /// Throughput cases: images per second (warm).
    pub per_s: Option<f64>,
    pub note: String,
}

impl Record {
    fn from_calls(case: String, Calls { ms: calls, warmup }: Calls) -> Self {
        // A run cut short keeps at least one warm call.
        let warmup = warmup.min(calls.len().saturating_sub(2));
        let warm: Vec<f64> = calls.iter().skip(1 + warmup).copied().collect();
        Self {
            case,
            warmup_calls: warmup,
            cold_ms: calls.first().copied().unwrap_or(f64::NAN),
            warm_ms: median(&warm),
            warm_min_ms: warm.iter().copied().reduce(f64::min),
            calls_ms: calls,
            ..Default::default()
        }
    }
    /// The figure ratios use: warm median when there is one, else the cold call.
    pub fn value_ms(&self) -> f64 {
        self.warm_ms.unwrap_or(self.cold_ms)
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Report {
    pub tool: String,
    pub device: String,
    pub threads: usize,
    pub host: String,
    pub features: Vec<String>,
    pub records: Vec<Record>,
    pub pytorch: Option<serde_json::Value>,
    /// case -> ours/PyTorch for time (warm) and, where both exist, cold time and peak memory.
    pub ratios: BTreeMap<String, serde_json::Value>,
}

fn median(v: &[f64]) -> Option<f64> {
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
fn lcg_data(n: usize, seed: u64) -> Vec<f32> {
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

fn test_image(size: usize) -> RgbImage {
    // A smooth pattern with some texture: the bytes do not matter for timing.
    RgbImage::from_fn(size as u32, size as u32, |x, y| {
        let v = ((x * 7 + y * 13) % 256) as u8;
        image::Rgb([v, (x % 256) as u8, (y % 256) as u8])
    })
}

fn sync(dev: &Device) {
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

struct MemProbe {
    gpu: bool,
    dev: Device,
}

impl MemProbe {
    fn start(dev: &ComputeDevice) -> Self {
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
    fn finish(&self) -> (Option<u64>, Option<String>) {
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
struct Calls {
    ms: Vec<f64>,
    warmup: usize,
}

/// Runs `f` once cold, then `args.warmup` warm-up calls (resolved by `run`), then timed calls
/// until `iters` of them or `args.budget_s` (counted after the warm-up) is spent.
fn time_calls(args: &BenchArgs, iters: usize, mut f: impl FnMut()) -> Calls {
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

fn input_tensor(size: usize, batch: usize, seed: u64, dev: &Device) -> Tensor<4> {
    Tensor::from_data(
        TensorData::new(
            lcg_data(batch * 3 * size * size, seed),
            [batch, 3, size, size],
        ),
        dev,
    )
}

fn bench_encoder(name: &str, args: &BenchArgs, dev: &ComputeDevice) -> Result<Record> {
    let cfg = config_by_name(name)?;
    let d = &dev.device;
    let sam = Sam::new(&cfg, d);
    let s = cfg.img_size();
    let x = input_tensor(s, 1, 1, d);
    sync(d);
    let probe = MemProbe::start(dev);
    let calls = time_calls(args, args.iters, || {
        let e = sam.embed_image(x.clone());
        sync(d);
        drop(e);
    });
    let mut r = Record::from_calls(format!("encoder/{name}"), calls);
    (r.peak_bytes, r.mem_kind) = probe.finish();
    r.note = format!("1x3x{s}x{s} f32, random weights");
    Ok(r)
}

fn bench_prompt(name: &str, args: &BenchArgs, dev: &ComputeDevice) -> Result<Vec<Record>> {
    let cfg = config_by_name(name)?;
    let d = &dev.device;
    let predictor = Predictor::new(Sam::new(&cfg, d), d.clone());
    let sz = args.image_size;
    let img = test_image(sz);
    let emb = predictor.set_image(&img);
    sync(d);
    let f = sz as f64;
    let prompt = PromptInput {
        bbox: Some([0.2 * f, 0.25 * f, 0.7 * f, 0.8 * f]),
        ..Default::default()
    };
    let case = format!("prompt/{name}/box{sz}");
    let calls = time_calls(args, args.prompt_iters, || {
        let p = predictor.predict(&emb, &prompt, false);
        std::hint::black_box(&p.masks);
    });
    let mut full = Record::from_calls(case.clone(), calls);
    full.note = format!(
        "box on a {sz}x{sz} image: prompt encoder + mask decoder + upscaling to {sz}x{sz}, host copy included"
    );
    // Split: decoder alone, then post-processing alone (both synchronised).
    let prompts = predictor.prompt_tensors(&prompt, emb.original_size);
    let calls = time_calls(args, args.prompt_iters, || {
        let out = predictor
            .model
            .decode(emb.embedding.clone(), &prompts, false);
        let _ = out.low_res_masks.into_data();
    });
    let mut dec = Record::from_calls(format!("{case}/decode"), calls);
    dec.note = "prompt encoder + mask decoder, low-res logits read back".into();
    let low = predictor
        .model
        .decode(emb.embedding.clone(), &prompts, false)
        .low_res_masks;
    sync(d);
    let calls = time_calls(args, args.prompt_iters, || {
        let m = predictor
            .model
            .postprocess_masks(low.clone(), emb.input_size, emb.original_size);
        let _ = m.into_data();
    });
    let mut post = Record::from_calls(format!("{case}/postprocess"), calls);
    post.note = format!("bilinear 256→1024, crop, bilinear →{sz}, read back");
    // Where the decoder's time goes: the dense positional encoding (recomputed per call) and
    // the output upscaling (two transposed convs, LayerNorm2d, GELU); the two-way transformer
    // is the rest of `decode`.
    let sam = &predictor.model;
    let calls = time_calls(args, args.prompt_iters, || {
        let _ = sam.prompt_encoder.get_dense_pe().into_data();
    });
    let mut pe = Record::from_calls(format!("{case}/decode/dense_pe"), calls);
    pe.note = "prompt_encoder.get_dense_pe (64×64 random-Fourier features)".into();
    let x = emb.embedding.clone();
    let calls = time_calls(args, args.prompt_iters, || {
        let _ = sam
            .mask_decoder
            .output_upscaling
            .forward(x.clone())
            .into_data();
    });
    let mut up = Record::from_calls(format!("{case}/decode/upscaling"), calls);
    up.note = "output_upscaling on (1, 256, 64, 64)".into();
    Ok(vec![full, dec, post, pe, up])
}

fn bench_throughput(name: &str, args: &BenchArgs, dev: &ComputeDevice) -> Result<Record> {
    let cfg = config_by_name(name)?;
    let d = &dev.device;
    let predictor = Predictor::new(Sam::new(&cfg, d), d.clone());
    let sz = args.image_size;
    let images: Vec<RgbImage> = (0..args.images.max(1)).map(|_| test_image(sz)).collect();
    let f = sz as f64;
    let prompt = PromptInput {
        bbox: Some([0.2 * f, 0.25 * f, 0.7 * f, 0.8 * f]),
        ..Default::default()
    };
    let mut per_image = Vec::new();
    for img in &images {
        let t = Instant::now();
        let emb = predictor.set_image(img);
        let p = predictor.predict(&emb, &prompt, false);
        std::hint::black_box(&p.masks);
        per_image.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let per_image = Calls {
        ms: per_image,
        warmup: 0,
    };
    let mut r = Record::from_calls(format!("throughput/{name}"), per_image);
    r.per_s = r.warm_ms.map(|ms| 1e3 / ms);
    r.note = format!(
        "{} images of {sz}x{sz}, each: embedding + one box → mask; per_s from the warm median",
        images.len()
    );
    Ok(r)
}

/// The trainer's trainable set: adapters and the mask decoder.
fn trainable_group() -> ParamGroup {
    ParamGroup::from_regex(r"(_adapter\.)|(mask_decoder\.)").expect("valid regex")
}

fn bench_train(
    name: &str,
    method: Method,
    ckpt: bool,
    args: &BenchArgs,
    dev: &ComputeDevice,
) -> Result<Record> {
    let cfg = config_by_name(name)?;
    // The case is named `+blocksA-B` and the PyTorch side adapts A..=B.
    if !args.blocks.windows(2).all(|w| w[1] == w[0] + 1) {
        anyhow::bail!("--blocks must be consecutive ascending indices, e.g. 8,9,10,11");
    }
    let d = &dev.device;
    let s = cfg.img_size();
    let ad = if ckpt {
        d.clone().autodiff().gradient_checkpointing()
    } else {
        d.clone().autodiff()
    };
    // With checkpointing the parameters are built on the autodiff device itself: `fork` does
    // not carry the checkpointing strategy over (burn 0.22.1 then panics on "strategy
    // mismatch" at the first op that mixes a parameter with an input).
    let home = if ckpt { &ad } else { d };
    let mut model = Sam::new(&cfg, home);
    let acfg = AdapterConfig {
        method,
        blocks: args.blocks.clone(),
        ..Default::default()
    };
    apply_adapters(&mut model, &acfg, home);
    let first = first_adapted_stage(&model).unwrap_or(0);
    // Frozen prefix, computed once outside autodiff (the trainer caches it per image, from the
    // base model on the plain device). With checkpointing the model lives on the autodiff
    // device, so its plain twin (`valid`) computes it: on the autodiff device the prefix's
    // blocks would record a graph and hold their activations in the pool.
    let x = input_tensor(s, 1, 3, d);
    let prefix = if ckpt {
        model.valid().image_encoder.forward_prefix(x, first)
    } else {
        model.image_encoder.forward_prefix(x, first)
    };
    let prefix_data = prefix.into_data();
    eprintln!(
        "    train/{name}/{}: model and frozen prefix ready",
        method.name()
    );
    // As the trainer does: gradient flags take effect on the autodiff device.
    let model = if ckpt { model } else { model.fork(&ad) };
    let mut model = model
        .train()
        .no_grad()
        .set_require_grad_group(trainable_group(), true);
    set_training(&mut model, true);
    if method.has_cell() {
        set_cell_states(&mut model, CellState::Mixed);
    }
    let prefix = Tensor::<4>::from_data(prefix_data, &ad);
    let k = args.objects.max(1);
    let low = s / 4;
    // k boxes in the 1024 frame and their filled-rectangle targets at 256².
    let boxes: Vec<[f32; 4]> = (0..k)
        .map(|i| {
            let o = 64.0 + 96.0 * i as f32;
            [o, o * 0.8, o + 300.0, o * 0.8 + 260.0]
        })
        .collect();
    let mut tgt = vec![0f32; k * low * low];
    for (i, b) in boxes.iter().enumerate() {
        let (x0, y0, x1, y1) = (
            (b[0] / 4.0) as usize,
            (b[1] / 4.0) as usize,
            (b[2] / 4.0) as usize,
            (b[3] / 4.0) as usize,
        );
        for y in y0..y1.min(low) {
            for x in x0..x1.min(low) {
                tgt[i * low * low + y * low + x] = 1.0;
            }
        }
    }
    let box_data: Vec<f32> = boxes.iter().flatten().copied().collect();
    let mut optim = AdamWConfig::new()
        .with_weight_decay(0.01)
        .init()
        .with_group(
            ParamGroup::from_predicate("cell.alpha"),
            AdamConfig::new().build(),
            None,
        );
    let mut step = |model: Sam| -> Sam {
        let target = Tensor::<4>::from_data(TensorData::new(tgt.clone(), [k, 1, low, low]), &ad);
        let boxes_t = Tensor::<2>::from_data(TensorData::new(box_data.clone(), [k, 4]), &ad);
        let emb = model.image_encoder.forward_suffix(prefix.clone(), first);
        let prompts = Prompts {
            boxes: Some(boxes_t),
            ..Default::default()
        };
        let out = model.decode(emb, &prompts, false);
        let mask_l = mask_loss(LossKind::BceDice, out.low_res_masks.clone(), target.clone()).mean();
        let actual = hard_iou(out.low_res_masks, target);
        let pred_iou = out.iou_predictions.reshape([k]);
        let iou_l = (pred_iou - actual).square().mean();
        let mut total = mask_l + iou_l;
        if let Some(a) = take_aux_losses().into_iter().reduce(|a, b| a + b) {
            total = total + a;
        }
        let loss = total.clone().detach().into_scalar::<f32>();
        std::hint::black_box(loss);
        let grads = GradientsParams::from_grads(total.backward(), &model);
        let model = optim.step(1e-4, model, grads);
        sync(&ad);
        model
    };
    let mut slot = Some(model);
    let probe = MemProbe::start(dev);
    let calls = time_calls(args, args.iters, || {
        let m = slot.take().expect("model");
        slot = Some(step(m));
    });
    let case = format!(
        "train/{name}/{}{}{}",
        method.name(),
        if ckpt { "+ckpt" } else { "" },
        match (args.blocks.first(), args.blocks.last()) {
            (Some(a), Some(b)) => format!("+blocks{a}-{b}"),
            _ => String::new(),
        }
    );
    let mut r = Record::from_calls(case, calls);
    (r.peak_bytes, r.mem_kind) = probe.finish();
    r.note = format!(
        "1 image {s}x{s}, {k} box prompts, adapters on {} qkv (rank 4){}, mask decoder trained, AdamW; frozen prefix (stages < {first}) cached",
        if args.blocks.is_empty() {
            "every".to_string()
        } else {
            format!("blocks {:?}", args.blocks)
        },
        if method.has_cell() {
            ", cells in the search stage (all ops, α trained)"
        } else {
            ""
        }
    );
    Ok(r)
}

/// Single ops at shapes the models use; `note` carries the achieved GFLOP/s.
fn bench_ops(args: &BenchArgs, dev: &ComputeDevice) -> Vec<Record> {
    let want = |name: &str| args.ops_filter.as_deref().is_none_or(|f| name.contains(f));
    use burn::tensor::activation::{gelu, softmax};
    use burn::tensor::module::{conv_transpose2d, conv2d, interpolate};
    use burn::tensor::ops::{
        ConvOptions, ConvTransposeOptions, InterpolateMode, InterpolateOptions,
    };
    let d = &dev.device;
    let rnd = |shape: Vec<usize>, seed: u64| -> TensorData {
        let n = shape.iter().product();
        TensorData::new(lcg_data(n, seed), shape)
    };
    let t4 = |s: [usize; 4], seed| Tensor::<4>::from_data(rnd(s.to_vec(), seed), d);
    let t3 = |s: [usize; 3], seed| Tensor::<3>::from_data(rnd(s.to_vec(), seed), d);
    let mut out = Vec::new();
    let mut run = |name: &str, flop: f64, f: &mut dyn FnMut()| {
        let calls = time_calls(args, args.iters.max(3), || {
            f();
            sync(d);
        });
        let mut r = Record::from_calls(format!("ops/{name}"), calls);
        r.note = format!("{:.1} GFLOP/s", flop / (r.value_ms() * 1e-3) / 1e9);
        out.push(r);
    };
    // Decoder-sized matmuls.
    if want("matmul 4096x256x128") {
        let (a, b) = (t3([1, 4096, 256], 1), t3([1, 256, 128], 2));
        run(
            "matmul 4096x256x128",
            2.0 * 4096.0 * 256.0 * 128.0,
            &mut || {
                let _ = a.clone().matmul(b.clone()).into_data();
            },
        );
    }
    if want("matmul 56x256x4096") {
        let (a, b) = (t3([1, 56, 256], 3), t3([1, 256, 4096], 4));
        run(
            "matmul 56x256x4096",
            2.0 * 56.0 * 256.0 * 4096.0,
            &mut || {
                let _ = a.clone().matmul(b.clone()).into_data();
            },
        );
    }
    // Encoder-sized: ViT-B MLP and a global-attention head.
    if want("matmul 4096x768x3072") {
        let (a, b) = (t3([1, 4096, 768], 5), t3([1, 768, 3072], 6));
        run(
            "matmul 4096x768x3072",
            2.0 * 4096.0 * 768.0 * 3072.0,
            &mut || {
                let _ = a.clone().matmul(b.clone()).into_data();
            },
        );
    }
    if want("attn scores 4096x64x4096") {
        let (q, k) = (t3([1, 4096, 64], 7), t3([1, 64, 4096], 8));
        run(
            "attn scores 4096x64x4096",
            2.0 * 4096.0 * 64.0 * 4096.0,
            &mut || {
                let _ = q.clone().matmul(k.clone()).into_data();
            },
        );
    }
    if want("softmax 12x4096x4096") {
        let s = t3([12, 4096, 4096], 9);
        run(
            "softmax 12x4096x4096",
            5.0 * 12.0 * 4096.0 * 4096.0,
            &mut || {
                let _ = softmax(s.clone(), 2).into_data();
            },
        );
    }
    // Decoder upscaling.
    if want("conv_transpose 256->64 @64") {
        let x = t4([1, 256, 64, 64], 10);
        let w = t4([256, 64, 2, 2], 11);
        run(
            "conv_transpose 256->64 @64",
            2.0 * 64.0 * 64.0 * 256.0 * 64.0 * 4.0,
            &mut || {
                let _ = conv_transpose2d(
                    x.clone(),
                    w.clone(),
                    None,
                    ConvTransposeOptions::new([2, 2], [0, 0], [0, 0], [1, 1], 1),
                )
                .into_data();
            },
        );
    }
    if want("gelu 64x128x128") {
        let x = t4([1, 64, 128, 128], 12);
        run("gelu 64x128x128", 1.0e6, &mut || {
            let _ = gelu(x.clone()).into_data();
        });
    }
    // The model's GELU: on the CPU outside autodiff it runs the host kernel.
    if want("gelu (model's) 64x128x128") {
        let x = t4([1, 64, 128, 128], 12);
        run("gelu (model's) 64x128x128", 1.0e6, &mut || {
            let _ = crate::sam::common::gelu(x.clone()).into_data();
        });
    }
    if want("bilinear 4x256->1024") {
        let m = t4([1, 4, 256, 256], 13);
        let opts = |s: usize| {
            InterpolateOptions::new(InterpolateMode::Bilinear)
                .with_output_size([s, s])
                .with_align_corners(false)
        };
        run(
            "bilinear 4x256->1024",
            4.0 * 1024.0 * 1024.0 * 8.0,
            &mut || {
                let _ = interpolate(m.clone(), opts(1024)).into_data();
            },
        );
    }
    // TinyViT stage-0 sized convs.
    if want("conv1x1 64->256 @256") {
        let x = t4([1, 64, 256, 256], 14);
        let w = t4([256, 64, 1, 1], 15);
        run(
            "conv1x1 64->256 @256",
            2.0 * 256.0 * 256.0 * 64.0 * 256.0,
            &mut || {
                let _ = conv2d(
                    x.clone(),
                    w.clone(),
                    None,
                    ConvOptions::new([1, 1], [0, 0], [1, 1], 1),
                )
                .into_data();
            },
        );
    }
    if want("dwconv3x3 256 @256") {
        let x = t4([1, 256, 256, 256], 16);
        let w = t4([256, 1, 3, 3], 17);
        run(
            "dwconv3x3 256 @256",
            2.0 * 256.0 * 256.0 * 256.0 * 9.0,
            &mut || {
                let _ = conv2d(
                    x.clone(),
                    w.clone(),
                    None,
                    ConvOptions::new([1, 1], [1, 1], [1, 1], 256),
                )
                .into_data();
            },
        );
    }
    out
}

fn fmt_ms(v: f64) -> String {
    if v.is_nan() {
        "-".into()
    } else if v >= 10_000.0 {
        format!("{:.1} s", v / 1e3)
    } else if v >= 100.0 {
        format!("{v:.0} ms")
    } else {
        format!("{v:.1} ms")
    }
}

fn fmt_bytes(b: Option<u64>) -> String {
    match b {
        Some(b) => format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64),
        None => "-".into(),
    }
}

fn print_table(records: &[Record], pytorch: Option<&BTreeMap<String, Record>>) {
    let with_pt = pytorch.is_some();
    print!(
        "{:<38} {:>10} {:>10} {:>10}",
        "case", "cold", "warm", "peak mem"
    );
    if with_pt {
        print!(
            " | {:>10} {:>10} {:>10} | {:>7} {:>7} {:>7}",
            "PT cold", "PT warm", "PT mem", "warm ×", "cold ×", "mem ×"
        );
    }
    println!();
    for r in records {
        let warm = r.warm_ms.map(fmt_ms).unwrap_or_else(|| "-".into());
        let warm = match r.per_s {
            Some(p) => format!("{warm} ({p:.2}/s)"),
            None => warm,
        };
        print!(
            "{:<38} {:>10} {:>10} {:>10}",
            r.case,
            fmt_ms(r.cold_ms),
            warm,
            fmt_bytes(r.peak_bytes)
        );
        if let Some(pt) = pytorch {
            match pt.get(&r.case) {
                Some(p) => {
                    let ratio = |a: f64, b: f64| {
                        if a.is_finite() && b.is_finite() && b > 0.0 {
                            format!("{:.2}", a / b)
                        } else {
                            "-".into()
                        }
                    };
                    let mem = match (r.peak_bytes, p.peak_bytes) {
                        (Some(a), Some(b)) if b > 0 => format!("{:.2}", a as f64 / b as f64),
                        _ => "-".into(),
                    };
                    print!(
                        " | {:>10} {:>10} {:>10} | {:>7} {:>7} {:>7}",
                        fmt_ms(p.cold_ms),
                        p.warm_ms.map(fmt_ms).unwrap_or_else(|| "-".into()),
                        fmt_bytes(p.peak_bytes),
                        ratio(r.value_ms(), p.value_ms()),
                        ratio(r.cold_ms, p.cold_ms),
                        mem
                    );
                }
                None => print!(
                    " | {:>10} {:>10} {:>10} | {:>7} {:>7} {:>7}",
                    "-", "-", "-", "-", "-", "-"
                ),
            }
        }
        println!();
    }
}

fn find_script(args: &BenchArgs) -> Option<PathBuf> {
    if let Some(p) = &args.pytorch_script {
        return Some(p.clone());
    }
    if let Ok(p) = std::env::var("SEGADAPT_BENCH_PYTORCH") {
        return Some(PathBuf::from(p));
    }
    let mut cands = vec![PathBuf::from("tools/bench_pytorch.py")];
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1).take(4) {
            cands.push(dir.join("tools/bench_pytorch.py"));
        }
    }
    cands.into_iter().find(|p| p.is_file())
}

/// The cases the PyTorch script should run, mirroring ours.
fn pytorch_cases(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| r.case.clone())
        // Sub-cases (`prompt/vit_t/box512/decode`, `.../decode/upscaling`, ...) are ours only.
        .filter(|c| c.starts_with("ops/") || c.matches('/').count() <= 2)
        .collect()
}

fn run_pytorch(
    args: &BenchArgs,
    dev: &ComputeDevice,
    records: &[Record],
) -> Result<serde_json::Value> {
    if let Some(p) = &args.pytorch_json {
        let s =
            std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
        return Ok(serde_json::from_str(&s)?);
    }
    let script =
        find_script(args).context("tools/bench_pytorch.py not found (give --pytorch-script)")?;
    let out = std::env::temp_dir().join(format!(
        "segadapt_bench_pytorch_{}.json",
        std::process::id()
    ));
    let device = args.pytorch_device.clone().unwrap_or_else(|| {
        if dev.is_gpu {
            "cuda".into()
        } else {
            "cpu".into()
        }
    });
    let cases = pytorch_cases(records).join(",");
    eprintln!(
        "running {} {} --device {device} ...",
        args.python,
        script.display()
    );
    let status = std::process::Command::new(&args.python)
        .arg(&script)
        .args(["--device", &device, "--cases", &cases, "--json"])
        .arg(&out)
        .args([
            "--iters",
            &args.iters.to_string(),
            "--prompt-iters",
            &args.prompt_iters.to_string(),
        ])
        .args([
            "--budget-s",
            &args.budget_s.to_string(),
            "--image-size",
            &args.image_size.to_string(),
        ])
        .args([
            "--objects",
            &args.objects.to_string(),
            "--images",
            &args.images.to_string(),
        ])
        .status()
        .with_context(|| format!("cannot start {}", args.python))?;
    if !status.success() {
        anyhow::bail!("{} exited with {status}", script.display());
    }
    let s =
        std::fs::read_to_string(&out).with_context(|| format!("cannot read {}", out.display()))?;
    let _ = std::fs::remove_file(&out);
    Ok(serde_json::from_str(&s)?)
}

fn pytorch_records(v: &serde_json::Value) -> BTreeMap<String, Record> {
    let mut m = BTreeMap::new();
    if let Some(rs) = v.get("records").and_then(|r| r.as_array()) {
        for r in rs {
            if let Ok(rec) = serde_json::from_value::<Record>(r.clone()) {
                m.insert(rec.case.clone(), rec);
            }
        }
    }
    m
}

fn enabled_features() -> Vec<String> {
    let mut f = Vec::new();
    if cfg!(feature = "kernel-cache") {
        f.push("kernel-cache".to_string());
    }
    if cfg!(feature = "vulkan-spirv") {
        f.push("vulkan-spirv".to_string());
    }
    if cfg!(debug_assertions) {
        f.push("debug-build".to_string());
    }
    f
}

pub fn run(mut args: BenchArgs, dev: ComputeDevice) -> Result<()> {
    if let Some(cases) = args.cold.clone() {
        return run_cold(&cases, &args, &dev);
    }
    args.warmup = Some(args.warmup.unwrap_or(if dev.is_gpu { 3 } else { 0 }));
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    eprintln!(
        "device: {} ({} CPU threads){}",
        dev.description,
        threads,
        if cfg!(debug_assertions) {
            " — dev profile: dependencies (Burn, cubecl, wgpu) at opt-level 3, segadapt's own code at opt-level 1"
        } else {
            ""
        }
    );
    let mut records = Vec::new();
    let push = |r: Result<Record>, records: &mut Vec<Record>| match r {
        Ok(r) => {
            eprintln!(
                "  {:<38} cold {:>10}  warm {:>10}  mem {}",
                r.case,
                fmt_ms(r.cold_ms),
                r.warm_ms.map(fmt_ms).unwrap_or_default(),
                fmt_bytes(r.peak_bytes)
            );
            records.push(r);
        }
        Err(e) => eprintln!("  failed: {e:#}"),
    };
    for section in &args.sections {
        match section {
            Section::Encoder => {
                for m in &args.models {
                    push(bench_encoder(m, &args, &dev), &mut records);
                }
            }
            Section::Prompt => {
                for m in &args.prompt_models {
                    match bench_prompt(m, &args, &dev) {
                        Ok(rs) => rs.into_iter().for_each(|r| push(Ok(r), &mut records)),
                        Err(e) => push(Err(e), &mut records),
                    }
                }
            }
            Section::Train => {
                let modes: &[bool] = match args.checkpointing {
                    Checkpointing::Off => &[false],
                    Checkpointing::On => &[true],
                    Checkpointing::Both => &[false, true],
                };
                for m in &args.train_models {
                    for &method in &args.methods {
                        for &ck in modes {
                            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                bench_train(m, method, ck, &args, &dev)
                            }))
                            .unwrap_or_else(|p| {
                                let msg = p
                                    .downcast_ref::<String>()
                                    .cloned()
                                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()));
                                Err(anyhow::anyhow!(
                                    "train/{m}/{} panicked: {}",
                                    method.name(),
                                    msg.unwrap_or_default()
                                ))
                            });
                            push(r, &mut records);
                        }
                    }
                }
            }
            Section::Ops => {
                for r in bench_ops(&args, &dev) {
                    push(Ok(r), &mut records);
                }
            }
            Section::Throughput => {
                for m in &args.throughput_models {
                    push(bench_throughput(m, &args, &dev), &mut records);
                }
            }
        }
    }
    let mut report = Report {
        tool: "segadapt".into(),
        device: dev.description.clone(),
        threads,
        host: std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap_or_default()
            .trim()
            .to_string(),
        features: enabled_features(),
        records: records.clone(),
        ..Default::default()
    };
    let mut pt_map = None;
    if args.pytorch || args.pytorch_json.is_some() {
        match run_pytorch(&args, &dev, &records) {
            Ok(v) => {
                let m = pytorch_records(&v);
                for r in &records {
                    if let Some(p) = m.get(&r.case) {
                        let mut o = serde_json::Map::new();
                        o.insert(
                            "warm".into(),
                            serde_json::json!(r.value_ms() / p.value_ms()),
                        );
                        o.insert("cold".into(), serde_json::json!(r.cold_ms / p.cold_ms));
                        if let (Some(a), Some(b)) = (r.peak_bytes, p.peak_bytes) {
                            o.insert("mem".into(), serde_json::json!(a as f64 / b as f64));
                        }
                        report
                            .ratios
                            .insert(r.case.clone(), serde_json::Value::Object(o));
                    }
                }
                report.pytorch = Some(v);
                pt_map = Some(m);
            }
            Err(e) => eprintln!("PyTorch side failed: {e:#}"),
        }
    }
    println!();
    println!(
        "segadapt bench on {}{}",
        dev.description,
        if report.features.is_empty() {
            String::new()
        } else {
            format!(" [{}]", report.features.join(", "))
        }
    );
    print_table(&records, pt_map.as_ref());
    if let Some(p) = &args.json {
        write_json(p, &report)?;
        eprintln!("wrote {}", p.display());
    }
    Ok(())
}

fn run_cold(cases: &[ColdCase], args: &BenchArgs, dev: &ComputeDevice) -> Result<()> {
    let tmp;
    let work = match &args.cold_dir {
        Some(d) => d.clone(),
        None => {
            tmp = TempWork::new()?;
            tmp.0.clone()
        }
    };
    eprintln!(
        "device: {}; work folder {}",
        dev.description,
        work.display()
    );
    let device_flag = if dev.is_gpu { "gpu" } else { "cpu" };
    let records = cold::run(cases, args, device_flag, &work)?;
    let report = ColdReport {
        tool: "segadapt bench --cold".into(),
        device: dev.description.clone(),
        features: enabled_features(),
        records,
    };
    println!();
    println!("segadapt bench --cold on {}", dev.description);
    cold::print_table(&report.records);
    if let Some(p) = &args.json {
        write_json(p, &report)?;
        eprintln!("wrote {}", p.display());
    }
    Ok(())
}

/// A temporary folder removed on drop.
struct TempWork(PathBuf);
impl TempWork {
    fn new() -> Result<Self> {
        let p = std::env::temp_dir().join(format!("segadapt-cold-{}", std::process::id()));
        std::fs::create_dir_all(&p)?;
        Ok(Self(p))
    }
}
impl Drop for TempWork {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn write_json(path: &Path, report: &impl Serialize) -> Result<()> {
    crate::fsutil::atomic_write(path, serde_json::to_string_pretty(report)?.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every top-level case goes to PyTorch (encoders have one slash, training steps two);
    /// only our sub-case breakdowns stay ours.
    #[test]
    fn pytorch_gets_every_case_but_our_sub_cases() {
        let recs: Vec<Record> = [
            "encoder/vit_t",
            "prompt/vit_t/box512",
            "prompt/vit_t/box512/decode",
            "prompt/vit_t/box512/decode/upscaling",
            "train/vit_b/nas-lora",
            "throughput/vit_t",
            "ops/matmul 4096x256x128",
        ]
        .iter()
        .map(|c| Record {
            case: c.to_string(),
            ..Default::default()
        })
        .collect();
        assert_eq!(
            pytorch_cases(&recs),
            [
                "encoder/vit_t",
                "prompt/vit_t/box512",
                "train/vit_b/nas-lora",
                "throughput/vit_t",
                "ops/matmul 4096x256x128"
            ]
        );
    }
}
