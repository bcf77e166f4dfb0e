//! The model manager: the official checkpoints (SAM ViT-B/L/H, MobileSAM), where they live
//! on this machine, and a resumable, hash-checked download.
//!
//! * Folder: `$SEGADAPT_CACHE/models`, else `$XDG_CACHE_HOME/segadapt/models`, else
//!   `~/.cache/segadapt/models` (`%LOCALAPPDATA%\segadapt\models` on Windows).
//! * A download goes to `NAME.part` (resumed with an HTTP `Range` request after an
//!   interruption, a cancel or a crash), is checked against the registry's size and sha256,
//!   and only then renamed to `NAME`. A file that fails the check is deleted, so a corrupt or
//!   partial file never sits under the final name. The `.part` file is locked while a
//!   download runs, so two downloads of one model (app and CLI) cannot interleave.
//! * After a successful check a small `.NAME.verified` record (sha256, size, mtime) is
//!   written beside the file, so later listings need not re-hash gigabytes; any change of
//!   size or mtime invalidates it.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::fsutil::{atomic_write, explain_io, sync_dir};
use crate::sam::ModelType;

/// One official checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelSpec {
    /// Name used on the command line (`segadapt models download vit_b`).
    pub name: &'static str,
    /// Other accepted names.
    pub aliases: &'static [&'static str],
    pub title: &'static str,
    /// File name in the models folder (the official one).
    pub file_name: &'static str,
    pub url: &'static str,
    pub sha256: &'static str,
    pub size: u64,
    pub model_type: ModelType,
}

/// The official checkpoints. SHA-256 and sizes are those of the files the official URLs
/// serve (the `_01ec64`-style suffix of the SAM names is the first six hex digits of their
/// MD5: 01ec64d29a2fca3f0661936605ae66f8, 0b3195507c641ddb6910d2bb5adee89c,
/// 4b8939a88964f0f4ff5f5b2642c598a6).
pub const REGISTRY: [ModelSpec; 4] = [
    ModelSpec {
        name: "mobile_sam",
        aliases: &["mobilesam", "vit_t", "mobile_sam.pt"],
        title: "MobileSAM (TinyViT encoder, 40.7 MB): fast, the default",
        file_name: "mobile_sam.pt",
        url: "https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/mobile_sam.pt",
        sha256: "6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f",
        size: 40_728_226,
        model_type: ModelType::VitT,
    },
    ModelSpec {
        name: "vit_b",
        aliases: &["sam_vit_b", "sam_vit_b_01ec64.pth"],
        title: "SAM ViT-B (375 MB)",
        file_name: "sam_vit_b_01ec64.pth",
        url: "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
        sha256: "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
        size: 375_042_383,
        model_type: ModelType::VitB,
    },
    ModelSpec {
        name: "vit_l",
        aliases: &["sam_vit_l", "sam_vit_l_0b3195.pth"],
        title: "SAM ViT-L (1.25 GB)",
        file_name: "sam_vit_l_0b3195.pth",
        url: "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
        sha256: "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
        size: 1_249_524_607,
        model_type: ModelType::VitL,
    },
    ModelSpec {
        name: "vit_h",
        aliases: &["sam_vit_h", "sam_vit_h_4b8939.pth"],
        title: "SAM ViT-H (2.56 GB): the most accurate, slow on CPU",
        file_name: "sam_vit_h_4b8939.pth",
        url: "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
        sha256: "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
        size: 2_564_550_879,
        model_type: ModelType::VitH,
    },
];

/// The model a new user gets.
pub fn default_model() -> &'static ModelSpec {
    &REGISTRY[0]
}

/// Finds a registry entry by name, alias or file name (case-insensitive).
pub fn lookup(name: &str) -> Option<&'static ModelSpec> {
    let n = name.trim().to_ascii_lowercase().replace('-', "_");
    REGISTRY
        .iter()
        .find(|s| s.name == n || s.file_name == n || s.aliases.contains(&n.as_str()))
}

/// The registry entry whose official file name `path` carries.
pub fn spec_for_path(path: &Path) -> Option<&'static ModelSpec> {
    let name = path.file_name()?.to_str()?;
    REGISTRY.iter().find(|s| s.file_name == name)
}

/// The per-user model folder (not created).
pub fn models_dir() -> PathBuf {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(c) = env("SEGADAPT_CACHE") {
        return c.join("models");
    }
    if cfg!(windows)
        && let Some(l) = env("LOCALAPPDATA")
    {
        return l.join("segadapt").join("models");
    }
    if let Some(x) = env("XDG_CACHE_HOME") {
        return x.join("segadapt").join("models");
    }
    if let Some(h) = env("HOME").or_else(|| env("USERPROFILE")) {
        return h.join(".cache").join("segadapt").join("models");
    }
    std::env::temp_dir().join("segadapt").join("models")
}

/// Where a download is staged until it verifies.
pub fn part_path(dest: &Path) -> PathBuf {
    let mut s = dest.as_os_str().to_os_string();
    s.push(".part");
    PathBuf::from(s)
}

fn verified_record_path(path: &Path) -> PathBuf {
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

fn write_record(path: &Path, sha256: &str) {
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

// ---------------------------------------------------------------------------------------------
// Download

/// Progress of a download.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    pub phase: Phase,
    /// Bytes present (including what an earlier, interrupted attempt left).
    pub done: u64,
    pub total: Option<u64>,
    /// Where this attempt resumed (0 for a fresh download).
    pub resumed_from: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Re-hashing what an earlier attempt left in the `.part` file.
    Rehashing,
    Downloading,
    /// Checking a finished file.
    Verifying,
    Done,
}

#[derive(Clone, Debug)]
pub struct DownloadOptions {
    /// Automatic resumes after a dropped connection within one call.
    pub retries: u32,
    pub retry_wait: Duration,
    pub connect_timeout: Duration,
    /// A connection that sends nothing for this long counts as dropped.
    pub read_timeout: Duration,
}

impl Default for DownloadOptions {
    fn default() -> Self {
        Self {
            retries: 5,
            retry_wait: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error(
        "download cancelled; {bytes} bytes kept in {part}, the next download resumes from there"
    )]
    Cancelled { part: PathBuf, bytes: u64 },
    #[error(
        "download of {url} failed: {reason}; {bytes} bytes kept in {part}, run the download again to resume"
    )]
    Interrupted {
        url: String,
        reason: String,
        part: PathBuf,
        bytes: u64,
    },
    #[error("cannot download {url}: {reason}")]
    Network { url: String, reason: String },
    #[error("cannot download {url}: the server answered HTTP {status}")]
    Http { url: String, status: u16 },
    #[error(
        "download of {url} is corrupt: sha256 {got}, expected {expected}. The bad download was deleted and nothing \
         was installed; try again (if this repeats, the server or a proxy is altering the file)"
    )]
    HashMismatch {
        url: String,
        got: String,
        expected: String,
    },
    #[error(
        "download of {url} has {got} bytes, expected {expected}; it was deleted and nothing was installed"
    )]
    SizeMismatch {
        url: String,
        got: u64,
        expected: u64,
    },
    #[error("{path}: {reason}")]
    Io { path: PathBuf, reason: String },
    #[error(
        "{part} is being written by another download (another segadapt window or command); wait for it to finish"
    )]
    Busy { part: PathBuf },
}

fn io_err(path: &Path, what: &str, e: std::io::Error) -> DownloadError {
    DownloadError::Io {
        path: path.to_path_buf(),
        reason: format!("cannot {what} ({}: {e})", explain_io(&e)),
    }
}

fn is_loopback(url: &str) -> bool {
    let rest = url.split("://").nth(1).unwrap_or("");
    let host = rest.split('/').next().unwrap_or("");
    let host = host.rsplit_once('@').map(|(_, h)| h).unwrap_or(host);
    let host = if host.starts_with('[') {
        host.split(']').next().unwrap_or("").trim_start_matches('[')
    } else {
        host.split(':').next().unwrap_or("")
    };
    host == "localhost" || host.starts_with("127.") || host == "::1"
}

fn agent(url: &str, opts: &DownloadOptions) -> ureq::Agent {
    let mut cfg = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(opts.connect_timeout))
        .timeout_recv_response(Some(opts.read_timeout))
        .timeout_per_read(Some(opts.read_timeout))
        .user_agent(concat!("segadapt/", env!("CARGO_PKG_VERSION")));
    if is_loopback(url) {
        cfg = cfg.proxy(None);
    }
    cfg.build().into()
}

/// `bytes START-END/TOTAL` → (START, TOTAL)
fn parse_content_range(v: &str) -> Option<(u64, Option<u64>)> {
    let v = v.trim().strip_prefix("bytes")?.trim();
    let (range, total) = v.split_once('/')?;
    let (start, _) = range.split_once('-')?;
    Some((start.trim().parse().ok()?, total.trim().parse().ok()))
}

enum Attempt {
    /// The body was read to its end.
    Complete,
    /// The connection dropped; what was read is in the part file.
    Dropped(String),
}

/// Downloads a registry model into `dir` (usually [`models_dir`]). Returns the final path.
/// A file already there that verifies is kept (no network access).
pub fn download(
    spec: &ModelSpec,
    dir: &Path,
    opts: &DownloadOptions,
    progress: &mut dyn FnMut(Progress),
    cancel: &AtomicBool,
) -> Result<PathBuf, DownloadError> {
    download_file(
        spec.url,
        &dir.join(spec.file_name),
        &Expected::from(spec),
        opts,
        progress,
        cancel,
    )
}

/// Downloads `url` to `dest` through `dest.part`: resumes what an earlier attempt left,
/// retries dropped connections with `Range` requests, checks `expected`, then renames.
pub fn download_file(
    url: &str,
    dest: &Path,
    expected: &Expected,
    opts: &DownloadOptions,
    progress: &mut dyn FnMut(Progress),
    cancel: &AtomicBool,
) -> Result<PathBuf, DownloadError> {
    let dir = match dest.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(|e| io_err(&dir, "create the model folder", e))?;
    if dest.exists() {
        if expected.sha256.is_some() && verify_file(dest, expected).is_ok() {
            let size = std::fs::metadata(dest).map(|m| m.len()).unwrap_or(0);
            progress(Progress {
                phase: Phase::Done,
                done: size,
                total: Some(size),
                resumed_from: size,
            });
            return Ok(dest.to_path_buf());
        }
        // A file under the final name that fails its check is never kept there.
        std::fs::remove_file(dest).map_err(|e| io_err(dest, "remove the corrupt file", e))?;
        let _ = std::fs::remove_file(verified_record_path(dest));
    }
    let part = part_path(dest);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&part)
        .map_err(|e| io_err(&part, "create the download file", e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Err(DownloadError::Busy { part }),
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(io_err(&part, "lock the download file", e));
        }
    }
    let agent = agent(url, opts);
    let mut hasher = Sha256::new();
    let mut hashed: u64 = 0; // bytes of the part file the hasher has seen
    let mut total: Option<u64> = expected.size;
    let mut attempts_left = opts.retries;
    let mut restarted_after_416 = false;
    loop {
        let have = file.metadata().map_err(|e| io_err(&part, "read", e))?.len();
        if let Some(t) = total
            && have > t
        {
            truncate(&mut file, &part)?;
            hasher = Sha256::new();
            hashed = 0;
            continue;
        }
        if hashed != have {
            // Catch up with what an earlier run left (the hash must cover the whole file).
            hasher = Sha256::new();
            hashed = 0;
            file.seek(SeekFrom::Start(0))
                .map_err(|e| io_err(&part, "read", e))?;
            let mut buf = vec![0u8; 1 << 20];
            while hashed < have {
                let want = buf.len().min((have - hashed) as usize);
                file.read_exact(&mut buf[..want])
                    .map_err(|e| io_err(&part, "read", e))?;
                hasher.update(&buf[..want]);
                hashed += want as u64;
                progress(Progress {
                    phase: Phase::Rehashing,
                    done: hashed,
                    total,
                    resumed_from: have,
                });
                if cancel.load(Ordering::Relaxed) {
                    return Err(DownloadError::Cancelled { part, bytes: have });
                }
            }
        }
        if total == Some(have) && have > 0 {
            break; // complete: verify below
        }
        if cancel.load(Ordering::Relaxed) {
            return Err(DownloadError::Cancelled { part, bytes: have });
        }
        let mut req = agent.get(url);
        if have > 0 {
            req = req.header("Range", format!("bytes={have}-"));
        }
        let resp = match req.call() {
            Ok(r) => r,
            Err(e) => {
                let reason = describe_ureq(&e);
                if attempts_left > 0 && retryable(&e) {
                    attempts_left -= 1;
                    std::thread::sleep(opts.retry_wait);
                    continue;
                }
                return Err(if have > 0 {
                    DownloadError::Interrupted {
                        url: url.into(),
                        reason,
                        part,
                        bytes: have,
                    }
                } else {
                    DownloadError::Network {
                        url: url.into(),
                        reason,
                    }
                });
            }
        };
        let status = resp.status().as_u16();
        let header = |k: &str| {
            resp.headers()
                .get(k)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let length: Option<u64> = header("content-length").and_then(|v| v.trim().parse().ok());
        match status {
            206 if have > 0 => {
                let (start, full) = header("content-range")
                    .as_deref()
                    .and_then(parse_content_range)
                    .unwrap_or((u64::MAX, None));
                if start != have {
                    // The server sent another range: start over.
                    truncate(&mut file, &part)?;
                    hasher = Sha256::new();
                    hashed = 0;
                    continue;
                }
                if let Some(f) = full.or(length.map(|l| have + l)) {
                    check_total(url, expected, f)?;
                    total = Some(f);
                }
            }
            200 | 206 => {
                if have > 0 {
                    // Range ignored: the whole file comes again.
                    truncate(&mut file, &part)?;
                    hasher = Sha256::new();
                    hashed = 0;
                }
                if let Some(l) = length {
                    check_total(url, expected, l)?;
                    total = Some(l);
                }
            }
            416 if have > 0 && !restarted_after_416 => {
                // Nothing after `have`: either complete (size unknown) or the file changed.
                // Verify what is there; if it fails, start over once.
                if expected.size.is_none() {
                    total = Some(have);
                    break;
                }
                restarted_after_416 = true;
                truncate(&mut file, &part)?;
                hasher = Sha256::new();
                hashed = 0;
                continue;
            }
            s if (500..600).contains(&s) && attempts_left > 0 => {
                attempts_left -= 1;
                std::thread::sleep(opts.retry_wait);
                continue;
            }
            s => {
                return Err(DownloadError::Http {
                    url: url.into(),
                    status: s,
                });
            }
        }
        let start = file.metadata().map_err(|e| io_err(&part, "read", e))?.len();
        file.seek(SeekFrom::End(0))
            .map_err(|e| io_err(&part, "write", e))?;
        let mut reader = resp.into_body().into_reader();
        let outcome = copy_body(
            &mut reader,
            &mut file,
            &part,
            &mut hasher,
            &mut hashed,
            total,
            start,
            progress,
            cancel,
        )?;
        file.flush().map_err(|e| io_err(&part, "write", e))?;
        match outcome {
            Attempt::Complete => {
                let now = hashed;
                match total {
                    Some(t) if now < t => {
                        // Body ended early without an error (connection closed).
                        if attempts_left > 0 {
                            attempts_left -= 1;
                            std::thread::sleep(opts.retry_wait);
                            continue;
                        }
                        let _ = file.sync_all();
                        return Err(DownloadError::Interrupted {
                            url: url.into(),
                            reason: format!("the connection closed after {now} of {t} bytes"),
                            part,
                            bytes: now,
                        });
                    }
                    None => total = Some(now),
                    _ => {}
                }
                break;
            }
            Attempt::Dropped(reason) => {
                let now = hashed;
                let _ = file.sync_all();
                if cancel.load(Ordering::Relaxed) {
                    return Err(DownloadError::Cancelled { part, bytes: now });
                }
                if attempts_left > 0 {
                    attempts_left -= 1;
                    std::thread::sleep(opts.retry_wait);
                    continue;
                }
                return Err(DownloadError::Interrupted {
                    url: url.into(),
                    reason,
                    part,
                    bytes: now,
                });
            }
        }
    }
    // Verify, then publish under the final name.
    let size = hashed;
    progress(Progress {
        phase: Phase::Verifying,
        done: size,
        total,
        resumed_from: 0,
    });
    let got = format!("{:x}", hasher.finalize());
    let fail = |file: std::fs::File, err: DownloadError| {
        drop(file);
        let _ = std::fs::remove_file(&part);
        Err(err)
    };
    if let Some(want) = expected.size
        && size != want
    {
        return fail(
            file,
            DownloadError::SizeMismatch {
                url: url.into(),
                got: size,
                expected: want,
            },
        );
    }
    if let Some(want) = &expected.sha256
        && &got != want
    {
        return fail(
            file,
            DownloadError::HashMismatch {
                url: url.into(),
                got,
                expected: want.clone(),
            },
        );
    }
    file.sync_all()
        .map_err(|e| io_err(&part, "flush to disk", e))?;
    drop(file);
    std::fs::rename(&part, dest).map_err(|e| io_err(dest, "install the download", e))?;
    sync_dir(&dir);
    write_record(dest, &got);
    progress(Progress {
        phase: Phase::Done,
        done: size,
        total: Some(size),
        resumed_from: 0,
    });
    Ok(dest.to_path_buf())
}

fn check_total(url: &str, expected: &Expected, offered: u64) -> Result<(), DownloadError> {
    match expected.size {
        Some(want) if want != offered => Err(DownloadError::SizeMismatch {
            url: url.into(),
            got: offered,
            expected: want,
        }),
        _ => Ok(()),
    }
}

fn truncate(file: &mut std::fs::File, part: &Path) -> Result<(), DownloadError> {
    file.set_len(0)
        .map_err(|e| io_err(part, "reset the download file", e))?;
    file.seek(SeekFrom::Start(0))
        .map_err(|e| io_err(part, "reset the download file", e))?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn copy_body(
    reader: &mut impl Read,
    file: &mut std::fs::File,
    part: &Path,
    hasher: &mut Sha256,
    hashed: &mut u64,
    total: Option<u64>,
    start: u64,
    progress: &mut dyn FnMut(Progress),
    cancel: &AtomicBool,
) -> Result<Attempt, DownloadError> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut last = Instant::now();
    let mut reported = *hashed;
    progress(Progress {
        phase: Phase::Downloading,
        done: *hashed,
        total,
        resumed_from: start,
    });
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Ok(Attempt::Dropped("cancelled".into()));
        }
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Ok(Attempt::Dropped(format!("the connection dropped ({e})"))),
        };
        // Never write past the announced size (a misbehaving server).
        let n = match total {
            Some(t) if *hashed + n as u64 > t => (t - *hashed) as usize,
            _ => n,
        };
        file.write_all(&buf[..n]).map_err(|e| match e.kind() {
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => DownloadError::Io {
                path: part.to_path_buf(),
                reason: format!(
                    "the disk is full after {} bytes{}; free some space and run the download again to resume",
                    *hashed,
                    total.map(|t| format!(" of {t}")).unwrap_or_default()
                ),
            },
            _ => io_err(part, "write", e),
        })?;
        hasher.update(&buf[..n]);
        *hashed += n as u64;
        // Report at least every 100 ms and every MiB (a fast link must still see progress and
        // get a chance to cancel).
        if last.elapsed() >= Duration::from_millis(100) || *hashed - reported >= 1 << 20 {
            last = Instant::now();
            reported = *hashed;
            progress(Progress {
                phase: Phase::Downloading,
                done: *hashed,
                total,
                resumed_from: start,
            });
        }
        if total.is_some_and(|t| *hashed >= t) {
            break;
        }
    }
    progress(Progress {
        phase: Phase::Downloading,
        done: *hashed,
        total,
        resumed_from: start,
    });
    Ok(Attempt::Complete)
}

fn retryable(e: &ureq::Error) -> bool {
    matches!(
        e,
        ureq::Error::Io(_)
            | ureq::Error::Timeout(_)
            | ureq::Error::ConnectionFailed
            | ureq::Error::Protocol(_)
    )
}

fn describe_ureq(e: &ureq::Error) -> String {
    match e {
        ureq::Error::HostNotFound => "host not found (no network, or a DNS problem)".into(),
        ureq::Error::ConnectionFailed => "connection failed (no network, or a firewall)".into(),
        ureq::Error::Timeout(t) => format!("timed out ({t})"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_lookup() {
        assert_eq!(lookup("vit_b").unwrap().file_name, "sam_vit_b_01ec64.pth");
        assert_eq!(lookup("MobileSAM").unwrap().name, "mobile_sam");
        assert_eq!(lookup("sam_vit_h_4b8939.pth").unwrap().name, "vit_h");
        assert!(lookup("vit_x").is_none());
        for s in REGISTRY.iter() {
            assert_eq!(s.sha256.len(), 64);
            assert!(s.url.starts_with("https://"));
        }
    }

    #[test]
    fn content_range_and_loopback() {
        assert_eq!(
            parse_content_range("bytes 100-199/1000"),
            Some((100, Some(1000)))
        );
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, None)));
        assert_eq!(parse_content_range("garbage"), None);
        assert!(is_loopback("http://127.0.0.1:8080/x"));
        assert!(is_loopback("http://localhost/x"));
        assert!(is_loopback("http://[::1]:80/x"));
        assert!(!is_loopback("https://dl.fbaipublicfiles.com/x"));
    }
}
