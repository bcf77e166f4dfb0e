//! The small jobs: the demo project, an image import and the default model's download. Each
//! function returns the job for [`super::tasks::Tasks::spawn`], with its own result type.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::project::project::{ImageEntry, OpenProject};

use super::context::{JobContext, JobEvent};

/// Opens the bundled demo project in `dir`, creating it first (the images and 36 mask files).
pub fn open_demo(dir: PathBuf) -> impl FnOnce(&JobContext) -> anyhow::Result<OpenProject> + Send {
    move |_| {
        let p = crate::project::project::open_or_create_demo(&dir)
            .with_context(|| format!("Cannot create the demo project in {}", dir.display()))?;
        Ok(p)
    }
}

/// Validates, hashes and (with `copy`) copies images into the project at `root`.
pub fn import_images(
    root: PathBuf,
    files: Vec<PathBuf>,
    copy: bool,
) -> impl FnOnce(&JobContext) -> anyhow::Result<Vec<Result<ImageEntry, String>>> + Send {
    move |ctx| {
        let n = files.len().max(1);
        let list = files
            .iter()
            .enumerate()
            .map(|(i, f)| {
                ctx.progress(i as f32 / n as f32);
                crate::project::project::prepare_image(&root, f, copy)
                    .map_err(|e| format!("{}: {e:#}", f.display()))
            })
            .collect();
        Ok(list)
    }
}

/// The checkpoint a download wrote (verified).
pub struct Downloaded(pub PathBuf);

/// Downloads the default checkpoint (MobileSAM, hash-checked, resumable) into `dir`.
pub fn download_default_model(
    dir: PathBuf,
) -> impl FnOnce(&JobContext) -> anyhow::Result<Downloaded> + Send {
    move |ctx| {
        let spec = crate::models::default_model();
        let opts = crate::models::DownloadOptions::default();
        let mut last: Option<Instant> = None;
        // At most ten progress events a second: each one wakes the UI.
        let mut progress = |p: crate::models::Progress| {
            if last.is_none_or(|t| t.elapsed() >= Duration::from_millis(100))
                || p.phase == crate::models::Phase::Done
            {
                last = Some(Instant::now());
                ctx.emit(JobEvent::Download(p));
            }
        };
        let path = crate::models::download(spec, &dir, &opts, &mut progress, ctx.cancel_flag())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Downloaded(path))
    }
}
