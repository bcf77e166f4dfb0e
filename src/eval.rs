//! The evaluation protocol of `segadapt eval`: every ground-truth object is prompted with its
//! tight box, or one positive point at its most interior pixel (best-scoring of 3 masks);
//! masks are logits > 0 at the original size. Images above the tile threshold are decoded in
//! tiles as `segadapt segment` decodes them ([`crate::predict::tiling`]).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::metrics::{bbox, dice, interior_point, iou};
use crate::predict::tiling::{TileConfig, TiledPredictor, tile_order};
use crate::predict::{Point, Predictor, PromptInput};
use crate::project::import::{is_dicom_file, load_labels, load_rgb};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum EvalPrompt {
    Box,
    Point,
}

pub const IMAGE_EXTS: [&str; 7] = ["png", "jpg", "jpeg", "tif", "tiff", "bmp", "dcm"];

/// (image path, mask path) pairs of a data dir with `images/` and `masks/`.
pub fn list_pairs(dir: &Path) -> Result<Vec<(PathBuf, PathBuf)>> {
    let images = dir.join("images");
    let masks = dir.join("masks");
    if !images.is_dir() {
        bail!(
            "data dir {}: missing folder images/ (expected images/<stem>.<png|jpg|tif|dcm> and masks/<stem>.png)",
            dir.display()
        );
    }
    if !masks.is_dir() {
        bail!(
            "data dir {}: missing folder masks/ (expected masks/<stem>.png label images)",
            dir.display()
        );
    }
    let mut pairs = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&images)
        .with_context(|| format!("cannot list {}", images.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        let ext = p
            .extension()
            .map(|e| e.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        // Extensionless files are taken when they are DICOM (as scanners write them).
        let dicom_no_ext = p.extension().is_none() && p.is_file() && is_dicom_file(&p);
        if !IMAGE_EXTS.contains(&ext.as_str()) && !dicom_no_ext {
            continue;
        }
        let stem = p
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let m = masks.join(format!("{stem}.png"));
        if !m.exists() {
            bail!("image {} has no mask {}", p.display(), m.display());
        }
        pairs.push((p, m));
    }
    if pairs.is_empty() {
        bail!("data dir {}: no images found in images/", dir.display());
    }
    Ok(pairs)
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImageRow {
    pub image: String,
    pub n_objects: usize,
    pub mean_iou: f64,
    pub mean_dice: f64,
    /// Per object, in label-id order (the same order for every model: pairs for comparisons).
    #[serde(default)]
    pub object_iou: Vec<f64>,
    #[serde(default)]
    pub object_dice: Vec<f64>,
    /// Tiles the image was cut into (1: decoded whole, and then not written).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub tiles: usize,
}

fn one() -> usize {
    1
}

fn is_one(n: &usize) -> bool {
    *n == 1
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EvalReport {
    pub mean_iou: f64,
    pub mean_dice: f64,
    pub n_objects: usize,
    pub prompt: EvalPrompt,
    pub per_image: Vec<ImageRow>,
}

/// The prompt the protocol uses for one object.
pub fn protocol_prompt(
    gt: &[bool],
    w: usize,
    h: usize,
    prompt: EvalPrompt,
) -> Option<(PromptInput, bool)> {
    match prompt {
        EvalPrompt::Box => {
            let [x0, y0, x1, y1] = bbox(gt, w)?;
            Some((
                PromptInput {
                    bbox: Some([x0 as f64, y0 as f64, x1 as f64, y1 as f64]),
                    ..Default::default()
                },
                false,
            ))
        }
        EvalPrompt::Point => {
            let (x, y) = interior_point(gt, w, h)?;
            Some((
                PromptInput {
                    points: vec![Point {
                        x: x as f64,
                        y: y as f64,
                        positive: true,
                    }],
                    ..Default::default()
                },
                true,
            ))
        }
    }
}

/// Runs the protocol; `progress(done, total)` is called after each object.
pub fn evaluate(
    predictor: &Predictor,
    pairs: &[(PathBuf, PathBuf)],
    prompt: EvalPrompt,
    min_area: usize,
    tiles: &TileConfig,
    mut progress: impl FnMut(usize, usize),
) -> Result<EvalReport> {
    tiles.validate()?;
    let mut loaded = Vec::new();
    let mut total = 0;
    for (img_p, mask_p) in pairs {
        let img = load_rgb(img_p)?;
        let labels = load_labels(mask_p)?;
        if (labels.width, labels.height) != (img.width() as usize, img.height() as usize) {
            bail!(
                "mask {} is {}×{} but image {} is {}×{}",
                mask_p.display(),
                labels.width,
                labels.height,
                img_p.display(),
                img.width(),
                img.height()
            );
        }
        let objects: Vec<Vec<bool>> = labels
            .ids()
            .into_iter()
            .map(|id| labels.mask_of(id))
            .filter(|m| m.iter().filter(|&&v| v).count() >= min_area.max(1))
            .collect();
        total += objects.len();
        loaded.push((img_p, img, objects));
    }
    let mut done = 0;
    let mut rows = Vec::new();
    let (mut sum_iou, mut sum_dice) = (0.0, 0.0);
    for (img_p, img, objects) in loaded {
        let (w, h) = (img.width() as usize, img.height() as usize);
        let mut tiled = TiledPredictor::new(predictor, &img, tiles)?;
        // Prompts decoded tile by tile (each tile embedded once); scores kept in label order.
        let (index, prompts): (Vec<(usize, bool)>, Vec<PromptInput>) = objects
            .iter()
            .enumerate()
            .filter_map(|(k, gt)| protocol_prompt(gt, w, h, prompt).map(|(p, mm)| ((k, mm), p)))
            .unzip();
        let mut scores: Vec<(usize, f64, f64)> = Vec::with_capacity(prompts.len());
        for i in tile_order(tiled.grid(), &prompts) {
            let (k, multimask) = index[i];
            let pred = tiled.predict(&prompts[i], multimask);
            let m = &pred.masks[pred.best()];
            scores.push((k, iou(m, &objects[k]), dice(m, &objects[k])));
            done += 1;
            progress(done, total);
        }
        scores.sort_by_key(|&(k, _, _)| k);
        let object_iou: Vec<f64> = scores.iter().map(|s| s.1).collect();
        let object_dice: Vec<f64> = scores.iter().map(|s| s.2).collect();
        let (si, sd): (f64, f64) = (object_iou.iter().sum(), object_dice.iter().sum());
        let n = objects.len();
        sum_iou += si;
        sum_dice += sd;
        rows.push(ImageRow {
            image: img_p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string(),
            n_objects: n,
            mean_iou: if n > 0 { si / n as f64 } else { 0.0 },
            mean_dice: if n > 0 { sd / n as f64 } else { 0.0 },
            object_iou,
            object_dice,
            tiles: tiled.grid().len(),
        });
    }
    let n = done.max(1) as f64;
    Ok(EvalReport {
        mean_iou: sum_iou / n,
        mean_dice: sum_dice / n,
        n_objects: done,
        prompt,
        per_image: rows,
    })
}
