//! `segadapt models`: the official checkpoints in the per-user model folder.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Result;
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};

use super::ctrlc_hook;

#[derive(Subcommand)]
pub enum ModelsAction {
    /// Show official models (verified, partial, corrupt, missing) and other checkpoints.
    List {
        #[arg(long)]
        verify: bool,
    },
    /// Download mobile_sam | vit_b | vit_l | vit_h (resumable, sha256-checked).
    Download { name: String },
    /// Print the model folder.
    Dir,
}

pub fn run(a: &ModelsAction) -> Result<()> {
    use crate::models::{self, ModelState, Phase};
    let dir = models::models_dir();
    match a {
        ModelsAction::Dir => println!("{}", dir.display()),
        ModelsAction::List { verify } => {
            println!("model folder: {}", dir.display());
            for e in models::list_models(&dir, *verify) {
                let st = match &e.state {
                    ModelState::Verified => "ok (sha256 verified)".into(),
                    ModelState::NotVerified => "present, not verified yet (--verify)".into(),
                    ModelState::Partial { bytes } => {
                        format!("partial download, {bytes} bytes (download resumes)")
                    }
                    ModelState::Corrupt { reason } => format!("CORRUPT, not used: {reason}"),
                    ModelState::Custom { model_type } => {
                        format!("other checkpoint ({})", model_type.name())
                    }
                    ModelState::Missing => "not downloaded".to_string(),
                };
                println!(
                    "{:<12} {:<44} {st}",
                    e.name(),
                    e.spec.map(|s| s.title).unwrap_or("")
                );
            }
        }
        ModelsAction::Download { name } => {
            let spec = models::lookup(name).ok_or_else(|| {
                anyhow::anyhow!("unknown model '{name}' (mobile_sam, vit_b, vit_l, vit_h)")
            })?;
            let cancel = Arc::new(AtomicBool::new(false));
            {
                let c = cancel.clone();
                let _ = ctrlc_hook(move || c.store(true, Ordering::Relaxed));
            }
            let pb = ProgressBar::new(spec.size);
            pb.set_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            let path = models::download(
                spec,
                &dir,
                &models::DownloadOptions::default(),
                &mut |p| {
                    if let Some(t) = p.total {
                        pb.set_length(t);
                    }
                    pb.set_position(p.done);
                    pb.set_message(
                        match p.phase {
                            Phase::Rehashing => "checking partial",
                            Phase::Downloading => spec.name,
                            Phase::Verifying => "verifying",
                            Phase::Done => "done",
                        }
                        .to_string(),
                    );
                },
                &cancel,
            )?;
            pb.finish_and_clear();
            println!("{}: {} (sha256 verified)", spec.name, path.display());
        }
    }
    Ok(())
}
