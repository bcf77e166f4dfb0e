//! Shared helpers for the integration tests: fixture paths, reference tensors and configs
//! written by `tools/make_fixtures.py` from the official PyTorch code.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use burn::prelude::*;
use segadapt::sam::config::SamConfig;

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub struct Refs {
    pub map: HashMap<String, (Vec<f32>, Vec<usize>)>,
}

impl Refs {
    pub fn load(name: &str) -> Refs {
        Self::load_path(&fixture(name))
    }
    pub fn load_path(path: &std::path::Path) -> Refs {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
        let mut map = HashMap::new();
        for (k, v) in st.tensors() {
            assert_eq!(v.dtype(), safetensors::Dtype::F32, "{k} must be f32");
            let data: Vec<f32> = v
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            map.insert(k, (data, v.shape().to_vec()));
        }
        Refs { map }
    }
    pub fn has(&self, k: &str) -> bool {
        self.map.contains_key(k)
    }
    pub fn vec(&self, k: &str) -> &Vec<f32> {
        &self
            .map
            .get(k)
            .unwrap_or_else(|| panic!("reference '{k}' missing"))
            .0
    }
    pub fn shape(&self, k: &str) -> &Vec<usize> {
        &self.map[k].1
    }
    pub fn tensor<const D: usize>(&self, k: &str, device: &Device) -> Tensor<D> {
        let (v, s) = &self
            .map
            .get(k)
            .unwrap_or_else(|| panic!("reference '{k}' missing"));
        Tensor::from_data(TensorData::new(v.clone(), s.clone()), device)
    }
}

pub fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec().unwrap()
}

/// Max |a - b|, asserting equal length.
pub fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

pub fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    let d = max_abs(got, want);
    let scale = want.iter().map(|v| v.abs()).fold(0.0, f32::max);
    println!("{what}: max abs err {d:.3e} (max |ref| {scale:.3})");
    assert!(d <= tol, "{what}: max abs error {d} > {tol}");
}

/// The SamConfig of a tiny fixture model, from the json `make_fixtures.py` wrote.
pub fn fixture_config(json_name: &str) -> SamConfig {
    let j: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture(json_name)).unwrap()).unwrap();
    SamConfig::from_reference_json(&j).unwrap()
}

/// The device tests run on: the `flex` CPU backend, or Burn's wgpu backend when
/// SEGADAPT_TEST_DEVICE=wgpu (used to check parity on GPUs and on lavapipe).
pub fn cpu() -> Device {
    match std::env::var("SEGADAPT_TEST_DEVICE").as_deref() {
        Ok("wgpu") => Device::wgpu(burn::tensor::DeviceKind::DefaultDevice),
        _ => Device::flex(),
    }
}

/// Trains on the tiny random-weight ViT-SAM fixture; `cancel_at` requests a cancel after that
/// step (the run then stops at the next step boundary and leaves a resume folder).
pub fn train_tiny_vit(
    data: &segadapt::train::TrainData,
    cfg: &segadapt::train::TrainConfig,
    out: &std::path::Path,
    resume: bool,
    cancel_at: Option<usize>,
) -> (
    Vec<segadapt::train::TrainEvent>,
    Option<segadapt::train::TrainOutcome>,
) {
    use segadapt::train::TrainEvent;
    use std::sync::atomic::{AtomicBool, Ordering};
    // Runs of one test binary take turns: they share the device's random generator, which
    // each micro-step seeds, so a run drawing from it between another's seed and draws would
    // make both runs depend on thread timing.
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let (base, info) = segadapt::sam::load_sam(
        &fixture("sam_vit_tiny.pth"),
        Some(fixture_config("sam_vit_tiny.json")),
        &cpu(),
    )
    .unwrap();
    let cancel = AtomicBool::new(false);
    let mut events = Vec::new();
    let mut emit = |e: TrainEvent| {
        if let (TrainEvent::Step { step, .. }, Some(c)) = (&e, cancel_at)
            && *step == c
        {
            cancel.store(true, Ordering::Relaxed);
        }
        events.push(e);
    };
    let o = segadapt::train::train(
        &base,
        &info,
        data,
        cfg,
        &cpu(),
        out,
        resume,
        &mut emit,
        &cancel,
    )
    .unwrap();
    (events, o)
}

/// Runs the segadapt binary on the CPU with `args`. SEGADAPT_BIN: a copy of the binary, for
/// worktrees that share one target folder (each build there replaces the others' binary).
pub fn segadapt(args: &[&str]) -> Output {
    let bin = std::env::var_os("SEGADAPT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_segadapt")));
    Command::new(bin)
        .args(["--device", "cpu"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run segadapt")
}

/// A run's stdout and stderr together.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The real MobileSAM checkpoint and the nuclei image with its labels (tools/fetch_assets.sh).
pub struct Nuclei {
    pub model: PathBuf,
    pub img: PathBuf,
    pub labels: PathBuf,
}

/// [`Nuclei`] from `SEGADAPT_CACHE` (default `~/.cache/segadapt`), or `None` with a skip
/// message; with SEGADAPT_REQUIRE_ASSETS=1 missing assets fail the test instead.
pub fn nuclei_assets() -> Option<Nuclei> {
    let cache = std::env::var_os("SEGADAPT_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/segadapt")
        });
    let model = cache.join("models/mobile_sam.pt");
    // tools/fetch_assets.sh's layout, or the raw download (the demo project's copy).
    let layouts = [
        ("data/nuclei_eval", "images/img2d.tif", "masks/img2d.png"),
        ("data/nuclei", "img2d.tif", "mask2d.tif"),
    ];
    for (dir, img, labels) in layouts {
        let (img, labels) = (cache.join(dir).join(img), cache.join(dir).join(labels));
        if model.exists() && img.exists() && labels.exists() {
            return Some(Nuclei { model, img, labels });
        }
    }
    assert_ne!(
        std::env::var("SEGADAPT_REQUIRE_ASSETS").as_deref(),
        Ok("1"),
        "real assets missing: run tools/fetch_assets.sh"
    );
    eprintln!("SKIPPED: real MobileSAM assets not found (run tools/fetch_assets.sh)");
    None
}
