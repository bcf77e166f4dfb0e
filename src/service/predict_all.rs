//! The app's "Predict all images": the `segadapt predict` engine ([`crate::predict::run`]) on
//! the project's images, as a job with progress, status lines and cancel.

use anyhow::Result;

use crate::predict::run::{RunEvent, RunRequest, RunSummary, run_folder};

use super::context::JobContext;

pub fn job(req: RunRequest) -> impl FnOnce(&JobContext) -> Result<RunSummary> + Send {
    move |ctx| {
        let (mut total, mut finished) = (1usize, 0usize);
        ctx.progress(0.0);
        run_folder(&req, ctx.cancel_flag(), &mut |e| match e {
            RunEvent::Started { images } => total = images.max(1),
            RunEvent::Message(m) => ctx.status(m),
            RunEvent::Working(w) => ctx.status(format!("segmenting {w}")),
            RunEvent::ImageFinished => {
                finished += 1;
                ctx.progress(finished as f32 / total as f32);
            }
        })
    }
}
