//! What a bench run reports: one record per case, the whole report (JSON), and the table
//! printed side by side with PyTorch.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::cold;
use super::measure::{Calls, median};

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
    pub(super) fn from_calls(case: String, Calls { ms: calls, warmup }: Calls) -> Self {
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

pub(super) fn fmt_ms(v: f64) -> String {
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

pub(super) fn fmt_bytes(b: Option<u64>) -> String {
    match b {
        Some(b) => format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64),
        None => "-".into(),
    }
}

pub(super) fn print_table(records: &[Record], pytorch: Option<&BTreeMap<String, Record>>) {
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

pub(super) fn write_json(path: &Path, report: &impl Serialize) -> Result<()> {
    crate::fsutil::atomic_write(path, serde_json::to_string_pretty(report)?.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}
