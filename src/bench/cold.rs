//! `segadapt bench --cold`: where a GPU cold start goes. Each first call runs in a fresh child
//! process (`segadapt bench` on one case) with cubecl's compilation log and autotune decisions
//! switched on (see `crate::kernels`), twice: a first launch on an empty kernel cache and a
//! second launch on what the first left. Per launch it reports the kernels compiled, the
//! autotuned keys, the autotune candidates run and their compile + bench time, and the cold and
//! warm call times the child measured.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::{BenchArgs, Record, Report};
use crate::adapt::Method;
use crate::kernels::{AUTOTUNE_LOG, CACHE_ENV, COMPILE_LOG, LOGS_ENV};

/// One first call, measured in a child process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ColdCase {
    /// Image embedding and the first box prompt → mask (what a user waits for after launch).
    Mask,
    /// One training step of the first `--methods` entry on the first `--train-models` entry.
    Train,
    /// One matrix product (4096×256 by 256×128, a decoder shape): one autotuned key, a few
    /// seconds even on a software driver, which is what the persistent-cache test runs.
    Matmul,
}

const MATMUL_OP: &str = "matmul 4096x256x128";

/// What one launch of one case cost.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ColdRecord {
    pub case: String,
    /// `first` (empty kernel cache) or `second` (the cache the first launch left).
    pub launch: String,
    pub kernels_compiled: usize,
    pub autotune_keys: usize,
    /// Candidates that were compiled and timed (skipped ones not counted).
    pub autotune_candidates: usize,
    /// Their compile + bench time, summed.
    pub autotune_ms: f64,
    pub cold_ms: f64,
    pub warm_ms: Option<f64>,
    /// The child's wall time, process start to exit (device start and model set-up included).
    pub process_ms: f64,
}

/// Autotune figures from cubecl's decisions log: one JSON object per tuned key.
#[derive(Debug, Default, PartialEq)]
pub struct AutotuneTally {
    pub keys: usize,
    pub candidates: usize,
    pub ms: f64,
    /// Lines that did not parse (a log cut short by a crash).
    pub unreadable: usize,
}

#[derive(Deserialize)]
struct Decision {
    results: Vec<CandidateResult>,
    log_context: Option<LogContext>,
}
#[derive(Deserialize)]
struct CandidateResult {
    outcome: serde_json::Value,
}
#[derive(Deserialize)]
struct LogContext {
    events: Vec<serde_json::Value>,
}
#[derive(Deserialize)]
struct Span {
    secs: u64,
    nanos: u32,
}

impl AutotuneTally {
    pub fn read(jsonl: &str) -> Self {
        let mut t = Self::default();
        for line in jsonl.lines().filter(|l| !l.trim().is_empty()) {
            let Ok(d) = serde_json::from_str::<Decision>(line) else {
                t.unreadable += 1;
                continue;
            };
            t.keys += 1;
            // A candidate that ran either measured (`Ok`) or failed while running; `Skip` means
            // it was never compiled for this key.
            t.candidates += d
                .results
                .iter()
                .filter(|r| r.outcome.pointer("/Err/Skip").is_none())
                .count();
            for e in d.log_context.iter().flat_map(|c| &c.events) {
                if let Some(span) = e.pointer("/TuningStep/1")
                    && let Ok(s) = serde_json::from_value::<Span>(span.clone())
                {
                    t.ms += s.secs as f64 * 1e3 + s.nanos as f64 / 1e6;
                }
            }
        }
        t
    }
}

/// Kernels in cubecl's compilation log (one `[Compiling kernel]` line each).
pub fn kernels_compiled(log: &str) -> usize {
    log.lines()
        .filter(|l| l.starts_with("[Compiling kernel]"))
        .count()
}

/// The `segadapt bench` arguments that run `case` alone.
fn child_args(case: ColdCase, args: &BenchArgs, json: &Path) -> Vec<String> {
    let mut a: Vec<String> = vec!["bench".into()];
    let model = |v: &[String]| v.first().cloned().unwrap_or_else(|| "vit_t".into());
    match case {
        ColdCase::Mask => {
            let m = model(&args.prompt_models);
            a.extend(["--sections".into(), "encoder,prompt".into()]);
            a.extend(["--models".into(), m.clone(), "--prompt-models".into(), m]);
        }
        ColdCase::Train => {
            let method = args.methods.first().copied().unwrap_or(Method::NasLora);
            a.extend(["--sections".into(), "train".into()]);
            a.extend(["--train-models".into(), model(&args.train_models)]);
            a.extend(["--methods".into(), method.name().into()]);
            a.extend(["--objects".into(), args.objects.to_string()]);
            if !args.blocks.is_empty() {
                let b: Vec<String> = args.blocks.iter().map(|b| b.to_string()).collect();
                a.extend(["--blocks".into(), b.join(",")]);
            }
        }
        ColdCase::Matmul => {
            a.extend(["--sections".into(), "ops".into()]);
            a.extend(["--ops-filter".into(), MATMUL_OP.into()]);
        }
    }
    a.extend(["--image-size".into(), args.image_size.to_string()]);
    // A few warm calls: the warm figure only says what the cold one is measured against.
    a.extend([
        "--iters".into(),
        "3".into(),
        "--prompt-iters".into(),
        "5".into(),
    ]);
    a.extend(["--json".into(), json.display().to_string()]);
    a
}

/// The cold call of a case: the sum over the child's top-level records (embedding + first mask
/// for `mask`), and the warm median likewise.
fn case_times(case: ColdCase, records: &[Record]) -> (f64, Option<f64>) {
    let top: Vec<&Record> = records
        .iter()
        .filter(|r| match case {
            ColdCase::Mask => r.case.starts_with("encoder/") || r.case.matches('/').count() == 2,
            ColdCase::Train => r.case.starts_with("train/"),
            ColdCase::Matmul => r.case.starts_with("ops/"),
        })
        .collect();
    let cold = top.iter().map(|r| r.cold_ms).sum();
    let warm = top.iter().map(|r| r.warm_ms).sum::<Option<f64>>();
    (cold, warm)
}

fn launch(
    case: ColdCase,
    which: &str,
    args: &BenchArgs,
    device_flag: &str,
    cache: &Path,
    work: &Path,
) -> Result<ColdRecord> {
    let logs = work.join(format!("{}-{which}", case_name(case)));
    if logs.exists() {
        std::fs::remove_dir_all(&logs)?;
    }
    std::fs::create_dir_all(&logs)?;
    let json = logs.join("records.json");
    let exe = std::env::current_exe().context("cannot find the segadapt executable")?;
    let started = std::time::Instant::now();
    let out = Command::new(exe)
        .args(["--device", device_flag])
        .args(child_args(case, args, &json))
        .env(CACHE_ENV, cache)
        .env(LOGS_ENV, &logs)
        .output()
        .context("cannot start the child benchmark")?;
    let process_ms = started.elapsed().as_secs_f64() * 1e3;
    if !out.status.success() || !json.exists() {
        bail!(
            "{} ({which} launch) failed: {}",
            case_name(case),
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
    }
    let report: Report = serde_json::from_slice(&std::fs::read(&json)?)
        .with_context(|| format!("cannot read {}", json.display()))?;
    let read = |f: &str| std::fs::read_to_string(logs.join(f)).unwrap_or_default();
    let tally = AutotuneTally::read(&read(AUTOTUNE_LOG));
    let (cold_ms, warm_ms) = case_times(case, &report.records);
    Ok(ColdRecord {
        case: case_name(case).into(),
        launch: which.into(),
        kernels_compiled: kernels_compiled(&read(COMPILE_LOG)),
        autotune_keys: tally.keys,
        autotune_candidates: tally.candidates,
        autotune_ms: tally.ms,
        cold_ms,
        warm_ms,
        process_ms,
    })
}

fn case_name(case: ColdCase) -> &'static str {
    match case {
        ColdCase::Mask => "mask",
        ColdCase::Train => "train",
        ColdCase::Matmul => "matmul",
    }
}

/// Runs every case's first and second launch; `cache` starts empty (a fresh folder under
/// `work`) unless the caller passes one, so "first" means a machine that never ran segadapt.
pub fn run(
    cases: &[ColdCase],
    args: &BenchArgs,
    device_flag: &str,
    work: &Path,
) -> Result<Vec<ColdRecord>> {
    let mut out = Vec::new();
    for &case in cases {
        let cache: PathBuf = work.join(format!("{}-cache", case_name(case)));
        if cache.exists() {
            std::fs::remove_dir_all(&cache)?;
        }
        for which in ["first", "second"] {
            eprintln!("cold: {} ({which} launch) …", case_name(case));
            match launch(case, which, args, device_flag, &cache, work) {
                Ok(r) => {
                    eprintln!(
                        "  {} kernels, {} keys, {} candidates ({:.1} s), cold {:.1} s",
                        r.kernels_compiled,
                        r.autotune_keys,
                        r.autotune_candidates,
                        r.autotune_ms / 1e3,
                        r.cold_ms / 1e3
                    );
                    out.push(r);
                }
                Err(e) => eprintln!("  failed: {e:#}"),
            }
        }
    }
    Ok(out)
}

pub fn print_table(records: &[ColdRecord]) {
    println!(
        "| first call | launch | kernels compiled | autotune keys | candidates run | \
         their compile + bench | cold | warm | process |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in records {
        println!(
            "| {} | {} | {} | {} | {} | {:.1} s | {:.1} s | {} | {:.1} s |",
            r.case,
            r.launch,
            r.kernels_compiled,
            r.autotune_keys,
            r.autotune_candidates,
            r.autotune_ms / 1e3,
            r.cold_ms / 1e3,
            r.warm_ms.map(|w| format!("{w:.1} ms")).unwrap_or_default(),
            r.process_ms / 1e3
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two decisions as cubecl 0.11 writes them (trimmed): skipped candidates are not counted,
    /// a candidate that failed while running is, and the tuning steps' spans add up.
    #[test]
    fn autotune_tally_counts_run_candidates_and_their_time() {
        let a = r#"{"key":{"k":1},"fastest_index":0,"fastest_time":{"secs":0,"nanos":5},"results":[{"outcome":{"Ok":{"name":"a","index":0}}},{"outcome":{"Err":{"Skip":{"name":"b"}}}},{"outcome":{"Err":{"Unknown":{"name":"c","err":"x"}}}}],"log_context":{"bounds":null,"limit":null,"events":[{"TuningStep":["a",{"secs":1,"nanos":500000000}]},{"TuningStep":["c",{"secs":0,"nanos":250000000}]}],"checks":null},"checks":null}"#;
        let b = r#"{"key":{"k":2},"fastest_index":0,"fastest_time":{"secs":0,"nanos":5},"results":[{"outcome":{"Ok":{"name":"a","index":0}}}],"log_context":null,"checks":null}"#;
        let cut = r#"{"key":{"k":3},"results":[{"outc"#;
        let t = AutotuneTally::read(&format!("{a}\n{b}\n\n{cut}\n"));
        assert_eq!(
            t,
            AutotuneTally {
                keys: 2,
                candidates: 3,
                ms: 1750.0,
                unreadable: 1
            }
        );
    }

    #[test]
    fn kernels_are_counted_by_their_log_lines() {
        let log = "[Compiling kernel] a::B\n[Compiling kernel] c::D\nother line\n";
        assert_eq!(kernels_compiled(log), 2);
    }

    #[test]
    fn mask_time_is_embedding_plus_first_box_without_sub_cases() {
        let rec = |case: &str, cold: f64, warm: f64| Record {
            case: case.into(),
            cold_ms: cold,
            warm_ms: Some(warm),
            ..Default::default()
        };
        let rs = [
            rec("encoder/vit_t", 1000.0, 10.0),
            rec("prompt/vit_t/box512", 200.0, 2.0),
            rec("prompt/vit_t/box512/decode", 150.0, 1.5),
        ];
        assert_eq!(case_times(ColdCase::Mask, &rs), (1200.0, Some(12.0)));
        assert_eq!(case_times(ColdCase::Train, &rs), (0.0, Some(0.0)));
    }
}
