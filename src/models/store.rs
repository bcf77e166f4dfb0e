//! The model folder: where it is, what it holds (listing), and the `.verified` records that
//! spare a re-hash of unchanged files.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use sha2::{Digest, Sha256};

use super::{ModelSpec, REGISTRY, lookup, spec_for_path};
use crate::fsutil::{atomic_write, explain_io};
use crate::sam::ModelType;

/// The per-user cache folder (not created): `$SEGADAPT_CACHE`, else `segadapt` under the
/// platform's cache folder. Models, kernels and embeddings live in it.
pub fn cache_root() -> PathBuf {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(c) = env("SEGADAPT_CACHE") {
        return c;
    }
    if cfg!(windows)
        && let Some(l) = env("LOCALAPPDATA")
    {
        return l.join("segadapt");
    }
    if let Some(x) = env("XDG_CACHE_HOME") {
        return x.join("segadapt");
    }
    if let Some(h) = env("HOME").or_else(|| env("USERPROFILE")) {
        return h.join(".cache").join("segadapt");
    }
    std::env::temp_dir().join("segadapt")
}

/// The per-user model folder (not created).
pub fn models_dir() -> PathBuf {
    cache_root().join("models")
}

/// Where a download is staged until it verifies.
pub fn part_path(dest: &Path) -> PathBuf {
    let mut s = dest.as_os_str().to_os_string();
    s.push(".part");
    PathBuf::from(s)
}

pub(super) fn verified_record_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.verified"))
}

// ---------------------------------------------------------------------------------------------
// Verification

/// What a file must be.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expected {
    /// Lower-case hex.
    pub sha256: Option<String>,
    pub size: Option<u64>,
}

impl From<&ModelSpec> for Expected {
    fn from(s: &ModelSpec) -> Self {
        Expected {
            sha256: Some(s.sha256.to_string()),
            size: Some(s.size),
        }
    }
}

fn mtime_ns(m: &std::fs::Metadata) -> u128 {
    m.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// True when a `.verified` record vouches for this exact file (same size and mtime).
fn has_valid_record(path: &Path, sha256: &str) -> bool {
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    let Ok(text) = std::fs::read_to_string(verified_record_path(path)) else {
        return false;
    };
    let want = format!("{sha256} {} {}", meta.len(), mtime_ns(&meta));
    text.trim() == want
}

pub(super) fn write_record(path: &Path, sha256: &str) {
    if let Ok(meta) = std::fs::metadata(path) {
        let _ = atomic_write(
            &verified_record_path(path),
            format!("{sha256} {} {}\n", meta.len(), mtime_ns(&meta)).as_bytes(),
        );
    }
}

/// sha256 of a file, streamed, with progress (bytes hashed so far).
pub fn sha256_file_progress(path: &Path, mut progress: impl FnMut(u64)) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        done += n as u64;
        progress(done);
    }
    Ok(format!("{:x}", h.finalize()))
}

/// Checks a file against `expected` (size first, then the full hash unless a valid
/// `.verified` record exists). On success the record is (re)written.
pub fn verify_file(path: &Path, expected: &Expected) -> Result<(), String> {
    let meta =
        std::fs::metadata(path).map_err(|e| format!("{}: {}", path.display(), explain_io(&e)))?;
    if !meta.is_file() {
        return Err(format!("{} is not a file", path.display()));
    }
    if let Some(size) = expected.size
        && meta.len() != size
    {
        return Err(format!(
            "{} has {} bytes, expected {size}: the file is {}",
            path.display(),
            meta.len(),
            if meta.len() < size {
                "incomplete (a partial download?)"
            } else {
                "not the official file"
            }
        ));
    }
    if let Some(want) = &expected.sha256 {
        if has_valid_record(path, want) {
            return Ok(());
        }
        let got = sha256_file_progress(path, |_| {})
            .map_err(|e| format!("{}: cannot read ({})", path.display(), explain_io(&e)))?;
        if &got != want {
            return Err(format!(
                "{} is corrupt or not the official file: sha256 {got}, expected {want}",
                path.display()
            ));
        }
        write_record(path, want);
    }
    Ok(())
}

/// For loaders: when `path` carries an official checkpoint's file name, the file's `sha256`
/// must be the official one. Catches a truncated or corrupted download before it is used.
pub fn check_official(path: &Path, sha256: &str) -> Result<(), String> {
    match spec_for_path(path) {
        Some(spec) if spec.sha256 != sha256 => Err(format!(
            "{} is named like the official {} checkpoint but its sha256 is {}, not {}: the file is corrupt or \
             incomplete. Delete it and run `segadapt models download {}`",
            path.display(),
            spec.name,
            sha256,
            spec.sha256,
            spec.name
        )),
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------------
// Listing

/// The state of one model file.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelState {
    /// Official checkpoint, size and sha256 checked.
    Verified,
    /// Official file name, right size, hash not checked yet (listing without `deep`).
    NotVerified,
    /// An unfinished download (`.part`), resumable.
    Partial { bytes: u64 },
    /// Fails its check; never used.
    Corrupt { reason: String },
    /// Not an official file, but a readable SAM checkpoint of the detected type.
    Custom { model_type: ModelType },
    /// Registry entry not downloaded.
    Missing,
}

impl ModelState {
    pub fn usable(&self) -> bool {
        matches!(self, ModelState::Verified | ModelState::Custom { .. })
    }
}

#[derive(Clone, Debug)]
pub struct ModelEntry {
    pub spec: Option<&'static ModelSpec>,
    pub path: PathBuf,
    pub size: u64,
    pub state: ModelState,
}

impl ModelEntry {
    pub fn name(&self) -> String {
        match self.spec {
            Some(s) => s.name.to_string(),
            None => self
                .path
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default(),
        }
    }
}

/// Reads tensor shapes (no data) and detects a SAM configuration; never panics.
fn probe_checkpoint(path: &Path) -> Result<ModelType, String> {
    use burn::store::pytorch_reader::PytorchReader;
    let p = path.to_path_buf();
    let shapes = std::panic::catch_unwind(move || {
        PytorchReader::new(&p).map(|r| {
            r.tensors()
                .iter()
                .map(|(k, t)| (k.clone(), t.shape().to_vec()))
                .collect::<std::collections::HashMap<_, _>>()
        })
    })
    .map_err(|_| "unreadable (malformed data)".to_string())?
    .map_err(|e| format!("not a PyTorch checkpoint ({e})"))?;
    let prefix = shapes
        .keys()
        .find_map(|k| {
            k.strip_suffix("mask_decoder.iou_token.weight")
                .map(str::to_string)
        })
        .ok_or("not a SAM checkpoint (no mask_decoder.iou_token.weight)")?;
    let stripped = shapes
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix(prefix.as_str())
                .map(|k| (k.to_string(), v.clone()))
        })
        .collect();
    crate::sam::checkpoint::detect_config(&stripped)
        .map(|c| c.model_type)
        .map_err(|e| format!("not a SAM checkpoint ({e})"))
}

/// Everything in the model folder: each registry model (present, partial, corrupt or
/// missing) and other `.pth`/`.pt` files. `deep` hashes files that have no valid
/// `.verified` record yet (slow for the large models); otherwise they are `NotVerified`.
pub fn list_models(dir: &Path, deep: bool) -> Vec<ModelEntry> {
    let mut out = Vec::new();
    for spec in REGISTRY.iter() {
        let path = dir.join(spec.file_name);
        let part = part_path(&path);
        let entry = match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => {
                let size = m.len();
                let state = if size != spec.size {
                    ModelState::Corrupt {
                        reason: format!("{size} bytes, expected {}", spec.size),
                    }
                } else if has_valid_record(&path, spec.sha256) {
                    ModelState::Verified
                } else if deep {
                    match verify_file(&path, &Expected::from(spec)) {
                        Ok(()) => ModelState::Verified,
                        Err(reason) => ModelState::Corrupt { reason },
                    }
                } else {
                    ModelState::NotVerified
                };
                ModelEntry {
                    spec: Some(spec),
                    path,
                    size,
                    state,
                }
            }
            _ => match std::fs::metadata(&part) {
                Ok(m) => ModelEntry {
                    spec: Some(spec),
                    path,
                    size: m.len(),
                    state: ModelState::Partial { bytes: m.len() },
                },
                Err(_) => ModelEntry {
                    spec: Some(spec),
                    path,
                    size: 0,
                    state: ModelState::Missing,
                },
            },
        };
        out.push(entry);
    }
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    let mut others: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && spec_for_path(p).is_none())
        .filter(|p| {
            let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            !n.starts_with('.') && (n.ends_with(".pth") || n.ends_with(".pt"))
        })
        .collect();
    others.sort();
    for path in others {
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let state = match probe_checkpoint(&path) {
            Ok(model_type) => ModelState::Custom { model_type },
            Err(reason) => ModelState::Corrupt { reason },
        };
        out.push(ModelEntry {
            spec: None,
            path,
            size,
            state,
        });
    }
    out
}

/// The checkpoints in `dir` that may be used: official ones whose size and sha256 check out
/// (hashed once, then remembered), and other readable SAM checkpoints.
pub fn find_models(dir: &Path) -> Vec<ModelEntry> {
    list_models(dir, true)
        .into_iter()
        .filter(|e| e.state.usable())
        .collect()
}

/// Turns `--model` into a file: an existing path is used as is; a registry name
/// (`mobile_sam`, `vit_b`, ...) means its verified file in the model folder.
pub fn resolve_model(name_or_path: &str) -> Result<PathBuf, String> {
    let p = Path::new(name_or_path);
    if p.exists() {
        return Ok(p.to_path_buf());
    }
    let Some(spec) = lookup(name_or_path) else {
        let names: Vec<&str> = REGISTRY.iter().map(|s| s.name).collect();
        return Err(format!(
            "model {name_or_path}: no such file, and not a known model name ({})",
            names.join(", ")
        ));
    };
    let path = models_dir().join(spec.file_name);
    if !path.exists() {
        return Err(format!(
            "model {} is not downloaded yet ({} missing); run `segadapt models download {}`",
            spec.name,
            path.display(),
            spec.name
        ));
    }
    verify_file(&path, &Expected::from(spec)).map_err(|e| {
        format!(
            "{e}; run `segadapt models download {}` to replace it",
            spec.name
        )
    })?;
    Ok(path)
}
