//! The PyTorch side: finding `tools/bench_pytorch.py`, running it on the same cases and
//! reading its records.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};

use super::{BenchArgs, Record};
use crate::device::ComputeDevice;

pub(super) fn find_script(args: &BenchArgs) -> Option<PathBuf> {
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
pub(super) fn pytorch_cases(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| r.case.clone())
        // Sub-cases (`prompt/vit_t/box512/decode`, `.../decode/upscaling`, ...) are ours only.
        .filter(|c| c.starts_with("ops/") || c.matches('/').count() <= 2)
        .collect()
}

pub(super) fn run_pytorch(
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

pub(super) fn pytorch_records(v: &serde_json::Value) -> BTreeMap<String, Record> {
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
