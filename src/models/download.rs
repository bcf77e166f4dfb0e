//! The resumable, hash-checked download of a model file (`NAME.part`, HTTP `Range` resumes,
//! size and sha256 check, then the rename).

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::store::{Expected, part_path, verified_record_path, verify_file, write_record};
use crate::fsutil::{explain_io, sync_dir};

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
