//! The service floor between the app and the engine.
//!
//! Data flows one way: the app (`crate::app`) sends requests down, the service runs them on
//! background threads against the engine (`crate::engine`, `crate::train`, `crate::models`,
//! `crate::project`), and typed events come back up; the UI thread never waits and never
//! touches a tensor.
//!
//! - [`worker`]: the SAM worker, one long-lived thread that owns the models and embeddings
//!   (model and adapter loads, embeddings, prompt → mask, the training planner, warm-up);
//! - [`tasks`]: the registry of finite jobs, each with an id, progress, cancel and a result:
//!   [`train`], [`export`], the download, the demo project and imports ([`jobs`]) and file
//!   dialogs ([`dialogs`]); a job that panics ends with an error;
//! - [`io`]: the ordered project writer and the image loader;
//! - [`device`]: the compute device the window starts with.

pub mod context;
pub mod device;
pub mod dialogs;
pub mod export;
pub mod io;
pub mod jobs;
pub mod predict_all;
pub mod tasks;
pub mod thread;
pub mod train;
pub mod worker;

use std::path::{Path, PathBuf};

pub use context::{JobContext, JobEvent};
pub use tasks::{JobKind, JobOutput, TaskId, TaskReport, Tasks};
pub use thread::Waker;

/// The segadapt cache folder: the one that holds `models/` ([`crate::models::models_dir`]:
/// `$SEGADAPT_CACHE`, else the platform's cache folder, `$XDG_CACHE_HOME` honoured).
pub fn cache_dir() -> PathBuf {
    crate::models::cache_root()
}

/// SAM checkpoints in a folder (`.pt`, `.pth`), default MobileSAM first.
pub fn find_checkpoints(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.is_file()
                        && matches!(p.extension().and_then(|e| e.to_str()), Some("pt" | "pth"))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort_by_key(|p| {
        (
            p.file_name().map(|n| n != "mobile_sam.pt").unwrap_or(true),
            p.clone(),
        )
    });
    v
}
