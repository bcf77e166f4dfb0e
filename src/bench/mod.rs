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
//! `memory_cleanup`; on the CPU the process's peak resident set (`VmHWM`, reset before the case).//!
//! Files: this one runs the sections and writes the report; `args` the flags, `measure` the
//! timing and memory probes, `cases` the inference cases, `train_step` the training step,
//! `pytorch` the PyTorch side, `report` the records and the table, `cold` the `--cold` run.

mod args;
mod cases;
mod cold;
mod measure;
mod pytorch;
mod report;
mod train_step;

use std::path::PathBuf;

use anyhow::Result;

pub use args::{BenchArgs, Checkpointing, Section};
use cases::{bench_encoder, bench_ops, bench_prompt, bench_throughput};
pub use cold::ColdCase;
pub use measure::{config_by_name, reset_vm_hwm, vm_hwm};
use pytorch::{pytorch_records, run_pytorch};
pub use report::{ColdReport, Record, Report};
use report::{fmt_bytes, fmt_ms, print_table, write_json};
use train_step::bench_train;

use crate::device::ComputeDevice;

fn enabled_features() -> Vec<String> {
    let mut f = Vec::new();
    if cfg!(feature = "kernel-cache") {
        f.push("kernel-cache".to_string());
    }
    if cfg!(feature = "vulkan-spirv") {
        f.push("vulkan-spirv".to_string());
    }
    if !cfg!(feature = "autotune") {
        f.push("no-autotune".to_string());
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
