//! `segadapt predict`: every image of a folder (or of a segadapt project) segmented from a
//! prompt file, or with segment everything when there is none. Per image a 16-bit label
//! image (PNG and/or TIFF), optionally one PNG per object, and a per-image COCO record;
//! one COCO file for the whole run. Resumable: an image whose files exist and were made with
//! the same settings is skipped. A failing image is reported and the run goes on.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Result, bail};

use super::everything::AmgArgs;
use super::{bar, say};
use crate::device::ComputeDevice;
use crate::predict::outputs::OutputSpec;
use crate::predict::prompt_file::PromptFile;
use crate::predict::run::{RunEvent, RunRequest, run_folder};
use crate::project::coco::CocoSegmentation;

/// Set by Ctrl-C: the run stops after the current prompt / point batch, keeping every
/// finished image.
static CANCEL: AtomicBool = AtomicBool::new(false);

pub use crate::predict::run::RUN_COCO;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LabelsFormat {
    /// <stem>_labels.png (16-bit gray PNG).
    Png,
    /// <stem>_labels.tif (16-bit gray TIFF, deflate).
    Tiff,
}

#[derive(clap::Args, Debug)]
pub struct PredictArgs {
    /// Base checkpoint (official SAM or MobileSAM file).
    #[arg(long)]
    pub model: PathBuf,
    /// Adapter file trained on that base (the masks then come from the adapted model).
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// A folder of images (not recursive), or a segadapt project folder (its images).
    #[arg(long)]
    pub input: PathBuf,
    /// Output folder (created if missing; not the input folder).
    #[arg(long)]
    pub out: PathBuf,
    /// Prompt file: CSV (image,x0,y0,x1,y1 or image,x,y,label) or COCO JSON with boxes /
    /// point_coords, matched to images by file name. Without it: segment everything.
    #[arg(long)]
    pub prompts: Option<PathBuf>,
    /// Decode each prompt into SAM's 3 candidates and keep the best-scoring one.
    #[arg(long)]
    pub multimask: bool,
    /// Label image format(s), comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "png")]
    pub labels_format: Vec<LabelsFormat>,
    /// Also write one 0/255 PNG per object (<stem>_objects/<stem>_NNNN.png).
    #[arg(long)]
    pub objects: bool,
    /// COCO masks as compressed RLE (exact) or pixel-edge polygons (exact without holes;
    /// holes come back filled).
    #[arg(long, value_enum, default_value = "rle")]
    pub coco_segmentation: CocoSegmentation,
    /// Redo images whose outputs exist (by default they are skipped).
    #[arg(long)]
    pub overwrite: bool,
    /// Segment-everything parameters (used only without --prompts).
    #[command(flatten)]
    pub amg: AmgArgs,
    #[command(flatten)]
    pub tiles: super::TileArgs,
}

pub fn run(a: PredictArgs, dev: ComputeDevice) -> Result<()> {
    let prompts = a.prompts.as_deref().map(PromptFile::load).transpose()?;
    let req = RunRequest {
        input: a.input.clone(),
        model: a.model.clone(),
        config: None,
        adapter: a.adapter.clone(),
        prompts,
        params: a.amg.params(),
        multimask: a.multimask,
        outputs: OutputSpec {
            dir: a.out.clone(),
            labels_png: a.labels_format.contains(&LabelsFormat::Png),
            labels_tiff: a.labels_format.contains(&LabelsFormat::Tiff),
            objects: a.objects,
            coco_segmentation: a.coco_segmentation,
        },
        overwrite: a.overwrite,
        tiles: a.tiles.config(),
        device: dev.clone(),
    };
    let _ = super::ctrlc_hook(|| CANCEL.store(true, Ordering::Relaxed));
    eprintln!("device: {}", dev.description);
    let pb = bar(0, "predict");
    let summary = run_folder(&req, &CANCEL, &mut |e| match e {
        RunEvent::Started { images } => pb.set_length(images as u64),
        RunEvent::Message(m) => say(&pb, m),
        RunEvent::Working(w) => pb.set_message(w),
        RunEvent::ImageFinished => pb.inc(1),
    });
    pb.finish_and_clear();
    let summary = summary?;
    println!("{}", summary.line());
    println!(
        "{} {} ({} image{})",
        if summary.coco_changed {
            "wrote"
        } else {
            "unchanged:"
        },
        summary.coco_path.display(),
        summary.coco_images,
        if summary.coco_images == 1 { "" } else { "s" }
    );
    for (name, why) in &summary.failed {
        eprintln!("failed: {name}: {why}");
    }
    if summary.cancelled {
        bail!("stopped by Ctrl-C; run the same command again to continue");
    }
    if !summary.failed.is_empty() {
        bail!(
            "{} of {} images failed",
            summary.failed.len(),
            summary.images
        );
    }
    Ok(())
}
