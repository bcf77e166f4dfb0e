//! The merged export: every tensor of the base checkpoint under its own (official) key and
//! dtype, with the weights the adapters folded into (and a trained mask decoder) replaced, so
//! the official code loads it with `load_state_dict(strict=True)`. Spatial NAS cells have no
//! place in the official modules; they are refused unless the caller drops them explicitly.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use burn::store::burn_pack::Tensor as PackTensor;
use burn::store::pytorch_reader::DType as PtDType;
use burn::store::{BurnToPyTorchAdapter, ModuleSnapshot, PyTorchToBurnAdapter, bridge};
use burn::tensor::{Bytes, DType};
use serde::{Deserialize, Serialize};

use super::for_each_slot;
use super::merge::{MergeReport, merge};
use crate::device::ComputeDevice;
use crate::fsutil::{atomic_write, check_writable_dir};
use crate::sam::Sam;
use crate::sam::checkpoint::{RawTensor, detect_config, official_key, read_raw_tensors};
use crate::sam::config::SamConfig;

/// Metadata key of the export report inside the merged safetensors file.
pub const EXPORT_KEY: &str = "segadapt_export";
const ANCHOR: &str = "mask_decoder.iou_token.weight";

/// What went into a merged file.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct MergedStats {
    /// Tensors written: exactly the base checkpoint's.
    pub tensors: usize,
    /// Keys whose values differ from the base (folded weights, a trained decoder).
    pub changed: Vec<String>,
    /// Keys the model does not hold, copied from the base as stored (BatchNorm
    /// `num_batches_tracked`, TinyViT's classifier head, ...).
    pub copied_from_base: Vec<String>,
    /// Side branches that are not in the file (only with `drop_side_branches`).
    pub side_branches_left_out: Vec<String>,
}

/// Encoder time of the exported model against the base, same device, same input.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Timing {
    pub device: String,
    pub runs: usize,
    pub base_ms: f64,
    pub merged_ms: f64,
    /// merged_ms / base_ms as measured.
    pub measured_ratio: f64,
    /// The cost against the base: exactly 1 when every adapter folded (the exported model is
    /// the base architecture, so any measured difference is noise), else the measured ratio.
    pub ratio: f64,
}

/// The report `export` prints and writes beside the merged file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExportReport {
    pub format: String,
    pub segadapt_version: String,
    pub base: String,
    pub base_sha256: String,
    pub adapter: String,
    pub merge: MergeReport,
    pub file: MergedStats,
    pub timing: Option<Timing>,
}

impl ExportReport {
    /// "inference 1.00× base (all adapters folded…)" or "1.03× base (4 side branches…)".
    pub fn timing_line(&self) -> Option<String> {
        let t = self.timing.as_ref()?;
        let n = self.merge.side_branches.len();
        let what = if n == 0 {
            "all adapters folded: the base architecture".to_string()
        } else {
            format!("{n} side branches, as segadapt runs the adapted model")
        };
        Some(format!(
            "inference {:.2}× base ({what}; encoder {:.1} ms vs {:.1} ms base, median of {} on {})",
            t.ratio, t.merged_ms, t.base_ms, t.runs, t.device
        ))
    }
}

/// A tensor to write, in the base file's dtype.
struct View<'a> {
    dtype: safetensors::Dtype,
    shape: Vec<usize>,
    bytes: Cow<'a, [u8]>,
}

impl safetensors::View for View<'_> {
    fn dtype(&self) -> safetensors::Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

fn st_dtype(d: PtDType) -> safetensors::Dtype {
    use safetensors::Dtype as S;
    match d {
        PtDType::F64 => S::F64,
        PtDType::F32 => S::F32,
        PtDType::F16 => S::F16,
        PtDType::BF16 => S::BF16,
        PtDType::I64 => S::I64,
        PtDType::I32 => S::I32,
        PtDType::I16 => S::I16,
        PtDType::I8 => S::I8,
        PtDType::U64 => S::U64,
        PtDType::U32 => S::U32,
        PtDType::U16 => S::U16,
        PtDType::U8 => S::U8,
        PtDType::Bool => S::BOOL,
    }
}

/// Burn's dtype for a float checkpoint dtype (the only kind the model's parameters have).
fn burn_float(d: PtDType) -> Option<DType> {
    match d {
        PtDType::F64 => Some(DType::F64),
        PtDType::F32 => Some(DType::F32),
        PtDType::F16 => Some(DType::F16),
        PtDType::BF16 => Some(DType::BF16),
        _ => None,
    }
}

/// Official key of a model tensor collected with PyTorch names and layouts.
fn key_of(t: &PackTensor) -> String {
    official_key(&t.name)
}

fn is_adapter(name: &str) -> bool {
    name.contains("_adapter.")
}

/// Projections that still carry an adapter (after [`super::merge::merge`]: the side branches).
pub fn remaining_adapters(model: &Sam) -> Vec<String> {
    let mut m = model.clone();
    let mut out = Vec::new();
    for_each_slot(&mut m, |info, slot, _| {
        if slot.is_some() {
            out.push(info.name.clone());
        }
    });
    out
}

fn prefix_of<'a>(keys: impl Iterator<Item = &'a str>) -> Option<String> {
    let mut keys = keys;
    keys.find_map(|k| k.strip_suffix(ANCHOR).map(str::to_string))
}

/// Writes `model` (already merged) as the base checkpoint `base` with its values replaced.
/// A remaining adapter is an error unless `drop_side_branches`, in which case it is left out
/// (and listed). `report_json` goes into the file's metadata.
pub fn write_merged(
    model: &Sam,
    base: &Path,
    out: &Path,
    drop_side_branches: bool,
    report_json: Option<&str>,
) -> Result<MergedStats> {
    let remaining = remaining_adapters(model);
    if !remaining.is_empty() && !drop_side_branches {
        bail!(
            "{} projections keep spatial side branches that the official model has no place for: {}. \
             Nothing was written. Pass --drop-side-branches to write the official model with only \
             the foldable adapters folded (NOT equivalent to the adapted model), or keep using the \
             adapter file with segadapt",
            remaining.len(),
            remaining.join(", ")
        );
    }
    let raw = read_raw_tensors(base).with_context(|| "reading the base checkpoint")?;
    let prefix = prefix_of(raw.iter().map(|t| t.key.as_str()))
        .with_context(|| format!("{}: not a SAM checkpoint (no {ANCHOR})", base.display()))?;
    let by_key: HashMap<&str, &RawTensor> = raw.iter().map(|t| (t.key.as_str(), t)).collect();

    // The model's tensors with PyTorch names and layouts (Linear weights transposed).
    let collected = model.collect(None, Some(Box::new(BurnToPyTorchAdapter)), true);
    let mut from_model: HashMap<String, Vec<u8>> = HashMap::new();
    for t in collected {
        if is_adapter(&t.name) {
            continue;
        }
        let key = format!("{prefix}{}", key_of(&t));
        let Some(b) = by_key.get(key.as_str()) else {
            bail!(
                "model tensor '{}' (key '{key}') is not in the base checkpoint {}; \
                 was the model loaded from another file?",
                t.name,
                base.display()
            );
        };
        if t.shape.as_slice() != b.shape.as_slice() {
            bail!(
                "'{key}': model shape {:?} but the base checkpoint has {:?}",
                t.shape.as_slice(),
                b.shape
            );
        }
        let want = burn_float(b.dtype)
            .with_context(|| format!("'{key}': the base stores {:?}, not a float", b.dtype))?;
        let bytes = if t.dtype == want {
            t.into_bytes().map_err(|e| anyhow::anyhow!("{key}: {e}"))?
        } else {
            let data = bridge::into_data(t).map_err(|e| anyhow::anyhow!("{key}: {e}"))?;
            data.convert_dtype(want).into_bytes()
        };
        from_model.insert(key, bytes.to_vec());
    }

    let mut stats = MergedStats {
        tensors: raw.len(),
        side_branches_left_out: remaining,
        ..Default::default()
    };
    let mut views = Vec::with_capacity(raw.len());
    for t in &raw {
        let bytes = match from_model.remove(&t.key) {
            Some(b) => {
                if b != t.bytes {
                    stats.changed.push(t.key.clone());
                }
                Cow::Owned(b)
            }
            None => {
                stats.copied_from_base.push(t.key.clone());
                Cow::Borrowed(t.bytes.as_slice())
            }
        };
        let view = View {
            dtype: st_dtype(t.dtype),
            shape: t.shape.clone(),
            bytes,
        };
        views.push((t.key.clone(), view));
    }
    // "format": "pt" is what `safetensors.torch` writes; the report travels with the file.
    let mut meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    if let Some(j) = report_json {
        meta.insert(EXPORT_KEY.to_string(), j.to_string());
    }
    let bytes = safetensors::serialize(views, Some(meta))
        .map_err(|e| anyhow::anyhow!("cannot serialise the merged model: {e}"))?;
    atomic_write(out, &bytes)?;
    Ok(stats)
}

/// Loads a merged export (official keys, PyTorch layouts) back into segadapt. `config`
/// overrides detection, as for [`crate::sam::load_sam`].
pub fn load_merged(path: &Path, config: Option<SamConfig>, device: &Device) -> Result<Sam> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: not a safetensors file ({e})", path.display()))?;
    let names = st.names();
    let prefix = prefix_of(names.iter().copied())
        .with_context(|| format!("{}: not a SAM model (no {ANCHOR})", path.display()))?;
    let config = match config {
        Some(c) => c,
        None => {
            let shapes = st
                .tensors()
                .into_iter()
                .filter_map(|(k, v)| {
                    k.strip_prefix(prefix.as_str())
                        .map(|k| (k.to_string(), v.shape().to_vec()))
                })
                .collect();
            detect_config(&shapes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        }
    };
    let mut model = Sam::new(&config, device);
    // Official key -> this port's path (PyTorch leaf names), from the model's own tensors.
    let ours: HashMap<String, String> = model
        .collect(None, Some(Box::new(BurnToPyTorchAdapter)), true)
        .into_iter()
        .map(|t| (format!("{prefix}{}", key_of(&t)), t.name))
        .collect();
    let mut tensors = Vec::new();
    for (key, v) in st.tensors() {
        let Some(name) = ours.get(&key) else { continue };
        let dtype = match v.dtype() {
            safetensors::Dtype::F32 => DType::F32,
            safetensors::Dtype::F16 => DType::F16,
            safetensors::Dtype::BF16 => DType::BF16,
            safetensors::Dtype::F64 => DType::F64,
            d => bail!("{}: '{key}' is {d:?}, expected a float", path.display()),
        };
        let data = Bytes::from_bytes_vec(v.data().to_vec());
        tensors.push(PackTensor::new(
            name.clone(),
            dtype,
            v.shape().to_vec(),
            None,
            data,
        ));
    }
    let res = model.apply(tensors, None, Some(Box::new(PyTorchToBurnAdapter)), true);
    if !res.errors.is_empty() || !res.missing.is_empty() {
        bail!(
            "{}: does not fit the {} model ({} missing, e.g. {:?}; errors: {})",
            path.display(),
            config.model_type.name(),
            res.missing.len(),
            res.missing.first().map(|m| &m.0),
            res.errors
                .iter()
                .take(3)
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    Ok(model)
}

fn encoder_ms(model: &Sam, x: &Tensor<4>) -> f64 {
    let t = Instant::now();
    // Reading the result back waits for the device.
    let _ = model.embed_image(x.clone()).into_data();
    t.elapsed().as_secs_f64() * 1e3
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Median encoder time of `merged` and `base` over `runs` interleaved runs after one warm-up
/// each (interleaving keeps clock and thermal drift out of the ratio).
pub fn time_against_base(
    base: &Sam,
    merged: &Sam,
    runs: usize,
    device: &Device,
    device_name: &str,
) -> Timing {
    let s = base.img_size();
    let x = Tensor::<4>::zeros([1, 3, s, s], device);
    encoder_ms(base, &x);
    encoder_ms(merged, &x);
    let runs = runs.max(1);
    let (mut b, mut m) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        b.push(encoder_ms(base, &x));
        m.push(encoder_ms(merged, &x));
    }
    let (base_ms, merged_ms) = (median(b), median(m));
    let measured_ratio = merged_ms / base_ms;
    Timing {
        device: device_name.to_string(),
        runs,
        base_ms,
        merged_ms,
        measured_ratio,
        ratio: if remaining_adapters(merged).is_empty() {
            1.0
        } else {
            measured_ratio
        },
    }
}

/// `<merged>.json`: where [`export`] writes its report.
pub fn report_path(merged: &Path) -> std::path::PathBuf {
    merged.with_extension("json")
}

/// `segadapt export`: loads the base and the adapter (checked against each other), folds what
/// folds, refuses remaining side branches unless `drop_side_branches`, times the encoder
/// against the base (`timing_runs` = 0 skips it), and writes the merged file and its report.
pub fn export(
    model: &Path,
    adapter: &Path,
    merged: &Path,
    drop_side_branches: bool,
    timing_runs: usize,
    dev: ComputeDevice,
) -> Result<ExportReport> {
    // Input checks first: a bad path must not cost a model load and timing runs.
    if merged.extension().and_then(|e| e.to_str()) != Some("safetensors") {
        bail!(
            "--merged {}: the merged model is written as safetensors; name it *.safetensors",
            merged.display()
        );
    }
    let same = |a: &Path, b: &Path| {
        a == b || matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
    };
    if same(merged, model) || same(merged, adapter) {
        bail!("--merged {} would overwrite an input", merged.display());
    }
    let out_dir = match merged.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    check_writable_dir(&out_dir).with_context(|| format!("cannot write {}", merged.display()))?;
    if !adapter.exists() {
        bail!("adapter file {} not found", adapter.display());
    }
    let (base, info) = crate::sam::load_sam(model, None, &dev.device)?;
    let (device_name, device) = (dev.description.clone(), dev.device.clone());
    let mut m = crate::engine::with_adapter(base.clone(), info, Some(adapter), dev)?;
    let sam = &mut m.predictor.model;
    let mut report = ExportReport {
        format: "segadapt-merged-export".into(),
        segadapt_version: env!("CARGO_PKG_VERSION").into(),
        base: model.display().to_string(),
        base_sha256: m.info.sha256.clone(),
        adapter: adapter.display().to_string(),
        merge: merge(sam),
        file: MergedStats::default(),
        timing: None,
    };
    // Refuse before the timing runs: nothing to measure for a file that will not be written.
    if !report.merge.side_branches.is_empty() && !drop_side_branches {
        write_merged(sam, model, merged, false, None)?;
    }
    if timing_runs > 0 {
        report.timing = Some(time_against_base(
            &base,
            sam,
            timing_runs,
            &device,
            &device_name,
        ));
    }
    // The copy in the file's metadata is written before the file stats exist; the .json
    // beside it has them.
    let json = serde_json::to_string_pretty(&report)?;
    report.file = write_merged(sam, model, merged, drop_side_branches, Some(&json))?;
    let json = serde_json::to_string_pretty(&report)?;
    atomic_write(&report_path(merged), json.as_bytes())?;
    Ok(report)
}
