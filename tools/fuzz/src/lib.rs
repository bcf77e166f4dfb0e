//! The reader modules of segadapt, compiled from the main crate's sources (no GPU/GUI
//! dependencies), for the fuzz targets. The module tree mirrors `segadapt`'s so the
//! `crate::...` paths inside those files resolve.
#![allow(dead_code, unused_imports, clippy::all)]

#[path = "../../../src/fsutil.rs"]
pub mod fsutil;

#[path = "../../../src/sam/mod.rs"]
pub mod sam;

#[path = "../../../src/adapt/mod.rs"]
pub mod adapt;

#[path = "../../../src/project/export.rs"]
pub mod export;
#[path = "../../../src/project/import.rs"]
pub mod import;
#[path = "../../../src/project/project.rs"]
pub mod project_file;

/// `crate::project::...` as in the main crate.
pub mod project {
    pub use crate::export;
    pub use crate::import;
    pub use crate::project_file as project;
}

use std::sync::Once;

/// libFuzzer's panic hook aborts on every panic, even one the code under test catches with
/// `catch_unwind` on purpose (the readers do, to turn decoder panics into errors). Restore
/// the default hook so only panics that escape count as crashes; with
/// `SEGADAPT_FUZZ_SHOW_CAUGHT=1` caught panics are printed (findings to report upstream).
pub fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let show = std::env::var_os("SEGADAPT_FUZZ_SHOW_CAUGHT").is_some();
        std::panic::set_hook(Box::new(move |info| {
            if show {
                eprintln!("caught panic: {info}");
            }
        }));
    });
}

/// Writes `data` to a fresh temp file named `name` and returns its path (kept alive by the dir).
pub fn temp_file(name: &str, data: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let p = dir.path().join(name);
    std::fs::write(&p, data).expect("write temp");
    (dir, p)
}
