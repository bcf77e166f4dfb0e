//! Crash-safe file writes: write a temp file in the same folder, fsync, rename, fsync the folder.
//!
//! Guarantees of [`atomic_write`]: a reader (or the next start after a crash, kill -9 or power
//! loss) sees either the complete old file or the complete new one, never a mix or a prefix;
//! when the write fails (disk full, read-only folder, permission denied) the old file is left
//! as it was and the temp file is removed. A process killed mid-write leaves at most a hidden
//! `.NAME.tmp-PID-N` file beside the target, which [`remove_stale_temps`] cleans up.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Result;

/// Distinguishes temp files of concurrent writers in one process (threads, autosave).
static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Marker that every temp file name carries (`.NAME.tmp-PID-N`).
const TMP_MARK: &str = ".tmp-";

/// A short, human explanation of a file-system error, for messages.
pub fn explain_io(e: &std::io::Error) -> &'static str {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::StorageFull => "the disk is full",
        K::QuotaExceeded => "the disk quota is exceeded",
        K::FileTooLarge => "the file is too large for this file system or process limit",
        K::ReadOnlyFilesystem => "the file system is read-only",
        K::PermissionDenied => "permission denied",
        K::NotFound => "the folder does not exist",
        K::IsADirectory => "a folder of that name exists",
        K::NotADirectory => "a path component is not a folder",
        K::InvalidFilename => "the file name is invalid or too long",
        K::CrossesDevices => "the temp file and the target are on different file systems",
        _ => "I/O error",
    }
}

fn io_context(what: &str, path: &Path, e: std::io::Error) -> anyhow::Error {
    let why = explain_io(&e);
    anyhow::Error::new(e).context(format!("cannot {what} {} ({why})", path.display()))
}

/// The folder a path lives in (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// fsyncs a folder so a rename in it survives a power loss (best effort: not all file
/// systems allow opening a folder).
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Writes `bytes` to `path` atomically: readers see the old file or the new one, never a
/// partial one, even if the process dies or the disk fills mid-write.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    atomic_write_with(path, |f| f.write_all(bytes))
}

/// Like [`atomic_write`], with the content streamed by `write` into the temp file (for large
/// outputs that should not be built in memory first). An error returned by `write` aborts the
/// replacement and leaves the old file untouched.
pub fn atomic_write_with(
    path: &Path,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<()> {
    let dir = parent_dir(path);
    if !dir.is_dir() {
        anyhow::bail!(
            "cannot write {}: folder {} does not exist",
            path.display(),
            dir.display()
        );
    }
    if path.is_dir() {
        anyhow::bail!("cannot write {}: it is a folder", path.display());
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    if name.is_empty() || name == "." || name == ".." {
        anyhow::bail!("cannot write {}: no file name", path.display());
    }
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}{TMP_MARK}{}-{n}", std::process::id()));
    // Keep the permissions of the file being replaced (e.g. a project shared read-only).
    let old_perms = std::fs::metadata(path).ok().map(|m| m.permissions());
    let result = (|| -> Result<()> {
        let mut f = std::fs::File::create(&tmp).map_err(|e| io_context("write", path, e))?;
        write(&mut f).map_err(|e| io_context("write", path, e))?;
        f.flush().map_err(|e| io_context("write", path, e))?;
        f.sync_all()
            .map_err(|e| io_context("flush to disk", path, e))?;
        drop(f);
        if let Some(p) = old_perms {
            let _ = std::fs::set_permissions(&tmp, p);
        }
        std::fs::rename(&tmp, path).map_err(|e| io_context("replace", path, e))?;
        sync_dir(dir);
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// True for the temp files [`atomic_write`] creates (`.NAME.tmp-PID-N`).
pub fn is_temp_file(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    let Some(rest) = name.strip_prefix('.') else {
        return false;
    };
    let Some(pos) = rest.rfind(TMP_MARK) else {
        return false;
    };
    let tail = &rest[pos + TMP_MARK.len()..];
    pos > 0 && !tail.is_empty() && tail.chars().all(|c| c.is_ascii_digit() || c == '-')
}

/// Removes temp files left in `dir` by writers that were killed mid-save (not recursive).
/// Only files whose writer process is gone are removed; returns them.
pub fn remove_stale_temps(dir: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return removed;
    };
    for e in entries.flatten() {
        let p = e.path();
        if !p.is_file() || !is_temp_file(&p) {
            continue;
        }
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let pid: Option<u32> = name
            .rfind(TMP_MARK)
            .and_then(|i| name[i + TMP_MARK.len()..].split('-').next())
            .and_then(|s| s.parse().ok());
        let alive = match pid {
            Some(pid) if pid == std::process::id() => true,
            Some(pid) => Path::new(&format!("/proc/{pid}")).exists(),
            None => false,
        };
        // Without /proc (not Linux) a live writer cannot be told from a dead one: keep recent files.
        let recent = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age.as_secs() < 3600);
        let can_tell = Path::new("/proc/self").exists();
        if ((can_tell && !alive) || (!can_tell && !recent)) && std::fs::remove_file(&p).is_ok() {
            removed.push(p);
        }
    }
    removed
}

/// Checks that files can be created in `dir` (exists, is a folder, is writable), with a
/// clear message otherwise. Leaves nothing behind.
pub fn check_writable_dir(dir: &Path) -> Result<()> {
    if !dir.exists() {
        anyhow::bail!("folder {} does not exist", dir.display());
    }
    if !dir.is_dir() {
        anyhow::bail!("{} is not a folder", dir.display());
    }
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let probe = dir.join(format!(
        ".segadapt-write-probe{TMP_MARK}{}-{n}",
        std::process::id()
    ));
    match std::fs::File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(io_context("write into folder", dir, e)),
    }
}

/// Reads a whole file with a clear message (missing, unreadable, a folder).
pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    if path.is_dir() {
        anyhow::bail!("{} is a folder, not a file", path.display());
    }
    std::fs::read(path).map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::NotFound => "file not found",
            _ => explain_io(&e),
        };
        anyhow::Error::new(e).context(format!("cannot read {} ({why})", path.display()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names() {
        assert!(is_temp_file(Path::new("/x/.project.json.tmp-123-0")));
        assert!(!is_temp_file(Path::new("/x/project.json")));
        assert!(!is_temp_file(Path::new("/x/.tmp-1-2")));
        assert!(!is_temp_file(Path::new("/x/.a.tmp-")));
    }
}
