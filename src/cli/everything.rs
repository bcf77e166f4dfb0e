//! `segadapt everything`: the automatic mask generator ("segment everything") on one image,
//! written as a 16-bit label PNG, one PNG per object and/or COCO JSON with RLE masks. Images
//! above `--tile-above` are segmented tile by tile (`predict::tiled_everything`).

use std::path::PathBuf;

use crate::device::ComputeDevice;
use crate::fsutil::{atomic_write, check_writable_dir};
use crate::predict::batch::label_image;
use crate::predict::tiled_everything::{generate_tiled, passes, total_steps};
use crate::predict::tiling::tile_grid;
use crate::project::export::{write_label_png, write_mask_png};
use crate::project::import::load_rgb;
use crate::sam::amg::Rle;
use crate::sam::automatic_mask_generator::{AmgParams, MaskRecord, SamAutomaticMaskGenerator};
use anyhow::{Context, Result, bail};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum EverythingOutput {
    /// <stem>_labels.png: 16-bit labels, 0 background, k = mask k (smaller masks on top).
    Labels,
    /// <stem>_objects/<stem>_NNNN.png: one 0/255 PNG per mask.
    Objects,
    /// <stem>_masks.json: COCO annotations with compressed RLE masks and the scores.
    Coco,
}

#[derive(clap::Args, Debug)]
pub struct EverythingArgs {
    /// Base checkpoint (official SAM or MobileSAM file).
    #[arg(long)]
    pub model: PathBuf,
    /// Adapter file trained on that base (the masks then come from the adapted model).
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// The image to segment.
    #[arg(long)]
    pub image: PathBuf,
    /// Output folder (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// What to write; several may be given, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "labels,coco")]
    pub output: Vec<EverythingOutput>,
    #[command(flatten)]
    pub amg: AmgArgs,
    #[command(flatten)]
    pub tiles: super::TileArgs,
}

/// The automatic mask generator's parameters as flags (shared with `segadapt predict`).
#[derive(clap::Args, Debug, Clone)]
pub struct AmgArgs {
    /// Points per side of the prompt grid (n² points).
    #[arg(long, default_value_t = AmgParams::default().points_per_side)]
    pub points_per_side: usize,
    /// Points decoded at once.
    #[arg(long, default_value_t = AmgParams::default().points_per_batch)]
    pub points_per_batch: usize,
    /// Keep masks with a predicted IoU above this.
    #[arg(long, default_value_t = AmgParams::default().pred_iou_thresh)]
    pub pred_iou_thresh: f32,
    /// Keep masks with a stability score of at least this.
    #[arg(long, default_value_t = AmgParams::default().stability_score_thresh)]
    pub stability_score_thresh: f32,
    /// Logit shift of the stability score's two cuts.
    #[arg(long, default_value_t = AmgParams::default().stability_score_offset)]
    pub stability_score_offset: f32,
    /// Box IoU above which NMS drops duplicate masks.
    #[arg(long, default_value_t = AmgParams::default().box_nms_thresh)]
    pub box_nms_thresh: f64,
    /// Fill holes and remove islands smaller than this many pixels (0 = off).
    #[arg(long, default_value_t = AmgParams::default().min_mask_region_area)]
    pub min_mask_region_area: usize,
    /// Run the grid again on (2^i)² overlapping crops for each layer i = 1..=N.
    #[arg(long, default_value_t = AmgParams::default().crop_n_layers)]
    pub crop_n_layers: usize,
    /// Box IoU for NMS between masks of different crops.
    #[arg(long, default_value_t = AmgParams::default().crop_nms_thresh)]
    pub crop_nms_thresh: f64,
    /// Overlap of first-layer crops, as a fraction of the short side.
    #[arg(long, default_value_t = AmgParams::default().crop_overlap_ratio)]
    pub crop_overlap_ratio: f64,
    /// Points per side in crop layer i are points-per-side / factor^i.
    #[arg(long, default_value_t = AmgParams::default().crop_n_points_downscale_factor)]
    pub crop_n_points_downscale_factor: usize,
}

impl AmgArgs {
    pub fn params(&self) -> AmgParams {
        AmgParams {
            points_per_side: self.points_per_side,
            points_per_batch: self.points_per_batch,
            pred_iou_thresh: self.pred_iou_thresh,
            stability_score_thresh: self.stability_score_thresh,
            stability_score_offset: self.stability_score_offset,
            box_nms_thresh: self.box_nms_thresh,
            crop_n_layers: self.crop_n_layers,
            crop_nms_thresh: self.crop_nms_thresh,
            crop_overlap_ratio: self.crop_overlap_ratio,
            crop_n_points_downscale_factor: self.crop_n_points_downscale_factor,
            min_mask_region_area: self.min_mask_region_area,
        }
    }
}

pub fn run(a: EverythingArgs, dev: ComputeDevice) -> Result<()> {
    // Everything that can be refused is checked before the model loads.
    let params = a.amg.params();
    params
        .validate()
        .map_err(|e| anyhow::anyhow!("segment everything: {e}"))?;
    let tiles = a.tiles.config();
    tiles.validate()?;
    let img = load_rgb(&a.image)?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    if a.out.exists() && !a.out.is_dir() {
        bail!("--out {} exists and is not a folder", a.out.display());
    }
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create output folder {}", a.out.display()))?;
    check_writable_dir(&a.out)?;
    let stem = a
        .image
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "image".into());

    eprintln!("device: {}", dev.description);
    let m = crate::engine::load(&a.model, a.adapter.as_deref(), None, dev)?;
    let generator =
        SamAutomaticMaskGenerator::new(&m.predictor, params).map_err(anyhow::Error::msg)?;
    let grid = tiles
        .applies(w, h)
        .then(|| tile_grid(w, h, tiles.tile, tiles.halo));
    let steps = match &grid {
        Some(g) => total_steps(&generator, g),
        None => generator.total_steps([h, w]),
    };
    if let Some(g) = &grid {
        println!(
            "tiled: {} tiles of {} px (halo {}), each segmented on its own",
            g.len(),
            tiles.tile,
            tiles.halo
        );
    }
    let pb = super::bar(steps as u64, "segment everything");
    let t = std::time::Instant::now();
    let mut progress = |done: usize, total: usize| {
        pb.set_length(total as u64);
        pb.set_position(done as u64);
    };
    let never = std::sync::atomic::AtomicBool::new(false);
    let records: Vec<MaskRecord> = match &grid {
        Some(g) => generate_tiled(&generator, &img, g, &mut progress, &never)
            .unwrap_or_default()
            .into_iter()
            .map(|m| m.record)
            .collect(),
        None => generator.generate(&img, &mut progress),
    };
    pb.finish_and_clear();
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{} masks from {} points in {secs:.1} s",
        records.len(),
        a.amg.points_per_side * a.amg.points_per_side * grid.as_ref().map_or(1, |g| passes(g))
    );

    let mut written = Vec::new();
    for output in dedup(&a.output) {
        match output {
            EverythingOutput::Labels => {
                let path = a.out.join(format!("{stem}_labels.png"));
                let masks: Vec<&Rle> = records.iter().map(|r| &r.rle).collect();
                write_label_png(&path, &label_image(&masks, h, w)?, w, h)?;
                written.push(path);
            }
            EverythingOutput::Objects => {
                let dir = a.out.join(format!("{stem}_objects"));
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("cannot create folder {}", dir.display()))?;
                for (i, r) in records.iter().enumerate() {
                    write_mask_png(
                        &dir.join(format!("{stem}_{:04}.png", i + 1)),
                        &r.mask(),
                        w,
                        h,
                    )?;
                }
                written.push(dir);
            }
            EverythingOutput::Coco => {
                let path = a.out.join(format!("{stem}_masks.json"));
                let file_name = a
                    .image
                    .file_name()
                    .map(|s| s.to_string_lossy().to_string())
                    .unwrap_or_default();
                let json = coco_json(&records, &file_name, w, h, &generator.params);
                atomic_write(&path, serde_json::to_string(&json)?.as_bytes())
                    .with_context(|| format!("cannot write {}", path.display()))?;
                written.push(path);
            }
        }
    }
    for p in &written {
        println!("wrote {}", p.display());
    }
    Ok(())
}

fn dedup(outputs: &[EverythingOutput]) -> Vec<EverythingOutput> {
    let mut v = Vec::new();
    for o in outputs {
        if !v.contains(o) {
            v.push(*o);
        }
    }
    v
}

/// A COCO file for one image; each annotation also carries the official record's fields.
fn coco_json(
    records: &[MaskRecord],
    file_name: &str,
    w: usize,
    h: usize,
    params: &AmgParams,
) -> serde_json::Value {
    let annotations: Vec<serde_json::Value> = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            serde_json::json!({
                "id": i + 1,
                "image_id": 1,
                "category_id": 1,
                "iscrowd": 0,
                "segmentation": r.coco_rle(),
                "area": r.area,
                "bbox": r.bbox,
                "predicted_iou": r.predicted_iou,
                "stability_score": r.stability_score,
                "point_coords": [r.point_coords],
                "crop_box": r.crop_box,
            })
        })
        .collect();
    serde_json::json!({
        "info": {
            "description": "segadapt everything (SamAutomaticMaskGenerator)",
            "parameters": params,
        },
        "images": [{ "id": 1, "file_name": file_name, "width": w, "height": h }],
        "categories": [{ "id": 1, "name": "object" }],
        "annotations": annotations,
    })
}
