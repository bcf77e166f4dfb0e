//! The training job: reads the project's accepted objects, loads the base model through the
//! engine and runs the trainer, passing its events on.

use std::path::PathBuf;
use std::sync::mpsc::Receiver;

use anyhow::bail;

use crate::device::ComputeDevice;
use crate::project::project::read_mask_file;
use crate::train::dataset::Object;
use crate::train::{TrainConfig, TrainData, TrainEvent, TrainOutcome};

use super::context::{JobContext, JobEvent};
use super::worker::ModelSpec;

/// One image and its accepted objects' mask files.
#[derive(Clone, Debug)]
pub struct TrainImage {
    pub name: String,
    pub path: PathBuf,
    pub masks: Vec<PathBuf>,
}

pub struct TrainRequest {
    pub model: ModelSpec,
    pub images: Vec<TrainImage>,
    pub config: TrainConfig,
    pub out: PathBuf,
    pub resume: bool,
    pub device: ComputeDevice,
    /// Fires when the masks queued for writing are on disk.
    pub flushed: Option<Receiver<()>>,
    /// Images above `tiles.tile_above` are trained on by tiles (see `train::tiles`).
    pub tiles: crate::predict::tiling::TileConfig,
}

/// The job for [`super::tasks::Tasks::spawn`]; None when cancelled (a resumable state is on
/// disk).
pub fn job(
    req: TrainRequest,
) -> impl FnOnce(&JobContext) -> anyhow::Result<Option<TrainOutcome>> + Send {
    move |ctx| run(req, ctx)
}

fn run(req: TrainRequest, ctx: &JobContext) -> anyhow::Result<Option<TrainOutcome>> {
    if let Some(f) = &req.flushed {
        let _ = f.recv_timeout(std::time::Duration::from_secs(30));
    }
    ctx.status("loading the annotated images…");
    let mut images = Vec::new();
    let mut names = Vec::new();
    let mut objects = Vec::new();
    for ti in &req.images {
        if ti.masks.is_empty() {
            continue;
        }
        let img = crate::project::import::load_rgb(&ti.path)?;
        let (w, h) = (img.width() as usize, img.height() as usize);
        let idx = images.len();
        for m in &ti.masks {
            let mask = read_mask_file(m, w, h)?;
            let area = mask.iter().filter(|&&v| v).count();
            if area >= req.config.min_area.max(1) {
                objects.push(Object {
                    image: idx,
                    mask,
                    area,
                });
            }
        }
        images.push(img);
        names.push(ti.name.clone());
    }
    if objects.len() < 2 {
        bail!(
            "Adapt needs at least 2 accepted objects (one to train on, one to validate); the project has {}",
            objects.len()
        );
    }
    let mut data = TrainData::new(images, names, objects);
    let how = data.split(req.config.val_split, req.config.seed);
    // After the split, so that tiles of a validation image are never trained on.
    let (data, _) = crate::train::tiles::into_tiles(data, &req.tiles);
    ctx.status(format!(
        "{} objects: {} train, {} validation (split {how}); loading the base model…",
        data.objects.len(),
        data.train.len(),
        data.val.len()
    ));
    let (sam, info) =
        crate::engine::load_base(&req.model.path, req.model.config.clone(), &req.device)?;
    ctx.status("training…");
    let mut emit = |e: TrainEvent| ctx.emit(JobEvent::Train(e));
    crate::train::train(
        &sam,
        &info,
        &data,
        &req.config,
        &req.device.device,
        &req.out,
        req.resume,
        &mut emit,
        ctx.cancel_flag(),
    )
}
