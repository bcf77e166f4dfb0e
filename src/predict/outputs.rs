//! The files `segadapt predict` writes per image, and how a later run tells a finished image
//! from an unfinished one.
//!
//! Per image `<stem>` in the output folder: `<stem>_labels.png` and/or `<stem>_labels.tif`
//! (16-bit labels), optionally `<stem>_objects/<stem>_NNNN.png` (0/255 per object), and last
//! `<stem>_masks.json`: a COCO file for that image that also records the settings that made
//! it. Every file is written atomically and the record goes last, after any old record was
//! removed, so an image counts as done only when all its files are complete and were made
//! with the same settings.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::PromptInput;
use super::batch::{MaskSource, PredictedObject, coco_bbox, label_image};
use crate::fsutil::atomic_write;
use crate::project::coco::{CocoSegmentation, segmentation};
use crate::project::export::{write_label_png, write_label_tiff, write_mask_png};
use crate::sam::amg::Rle;

/// Which files to write, and where.
#[derive(Clone, Debug)]
pub struct OutputSpec {
    pub dir: PathBuf,
    pub labels_png: bool,
    pub labels_tiff: bool,
    pub objects: bool,
    /// How the COCO files carry masks.
    pub coco_segmentation: CocoSegmentation,
}

/// What a run finds for one image.
#[derive(Debug)]
pub enum ImageState {
    /// Complete, made with the same settings: its record (the per-image COCO file).
    Done(Value),
    /// Not (completely) written: redo it, for this reason.
    Redo(String),
    /// Complete outputs made with other settings (prompts, model, parameters).
    Conflict,
}

/// A prompt as the record stores it.
pub fn prompt_json(p: &PromptInput) -> Value {
    json!({
        "box": p.bbox,
        "points": p.points.iter().map(|q| json!([q.x, q.y, q.positive as u8])).collect::<Vec<_>>(),
    })
}

impl OutputSpec {
    pub fn record(&self, stem: &str) -> PathBuf {
        self.dir.join(format!("{stem}_masks.json"))
    }
    pub fn labels_png_path(&self, stem: &str) -> PathBuf {
        self.dir.join(format!("{stem}_labels.png"))
    }
    pub fn labels_tiff_path(&self, stem: &str) -> PathBuf {
        self.dir.join(format!("{stem}_labels.tif"))
    }
    pub fn objects_dir(&self, stem: &str) -> PathBuf {
        self.dir.join(format!("{stem}_objects"))
    }
    pub fn object_path(&self, stem: &str, k: usize) -> PathBuf {
        self.objects_dir(stem).join(format!("{stem}_{k:04}.png"))
    }

    /// Whether the image `stem` is finished with `settings`; reads only the record and
    /// checks that the other files exist.
    pub fn state(&self, stem: &str, settings: &Value) -> ImageState {
        let path = self.record(stem);
        let Ok(bytes) = std::fs::read(&path) else {
            return ImageState::Redo("not done yet".into());
        };
        let Ok(record) = serde_json::from_slice::<Value>(&bytes) else {
            return ImageState::Redo(format!("{} is not a record", path.display()));
        };
        if record["segadapt"]["settings"] != through_text(settings) {
            return ImageState::Conflict;
        }
        let n = record["annotations"].as_array().map_or(0, Vec::len);
        let mut needed = Vec::new();
        if self.labels_png {
            needed.push(self.labels_png_path(stem));
        }
        if self.labels_tiff {
            needed.push(self.labels_tiff_path(stem));
        }
        if self.objects {
            needed.extend((1..=n).map(|k| self.object_path(stem, k)));
        }
        match needed.into_iter().find(|p| !p.is_file()) {
            Some(p) => ImageState::Redo(format!("{} is missing", p.display())),
            None => ImageState::Done(record),
        }
    }

    /// Writes the image's files (record last) and returns the record.
    pub fn write(
        &self,
        stem: &str,
        file_name: &str,
        [h, w]: [usize; 2],
        objects: &[PredictedObject],
        settings: &Value,
    ) -> Result<Value> {
        // Without its record the image counts as not done while the others are replaced.
        let record_path = self.record(stem);
        if record_path.exists() {
            std::fs::remove_file(&record_path)
                .with_context(|| format!("cannot remove {}", record_path.display()))?;
        }
        if self.labels_png || self.labels_tiff {
            let masks: Vec<&Rle> = objects.iter().map(|o| &o.rle).collect();
            let labels = label_image(&masks, h, w)?;
            if self.labels_png {
                write_label_png(&self.labels_png_path(stem), &labels, w, h)?;
            }
            if self.labels_tiff {
                write_label_tiff(&self.labels_tiff_path(stem), &labels, w, h)?;
            }
        }
        if self.objects {
            let dir = self.objects_dir(stem);
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create folder {}", dir.display()))?;
            for (k, o) in objects.iter().enumerate() {
                write_mask_png(&self.object_path(stem, k + 1), &o.mask(), w, h)?;
            }
            remove_extra_objects(&dir, stem, objects.len());
            // Temp files of a run killed while writing this folder.
            crate::fsutil::remove_stale_temps(&dir);
        }
        let text = serde_json::to_string(&image_record(
            file_name,
            [h, w],
            objects,
            settings,
            self.coco_segmentation,
        ))?;
        atomic_write(&record_path, text.as_bytes())
            .with_context(|| format!("cannot write {}", record_path.display()))?;
        Ok(serde_json::from_str(&text)?)
    }
}

/// `v` as a later run reads it back. serde_json's default float parser may land one ulp off
/// the written value, so values are compared (and the run's COCO built) only after the same
/// text → value step, which makes a resumed run see exactly what a fresh one saw.
fn through_text(v: &Value) -> Value {
    serde_json::to_string(v)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null)
}

/// Object PNGs numbered past `n`, left by an earlier run that found more objects.
fn remove_extra_objects(dir: &Path, stem: &str, n: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let k = name
            .strip_prefix(&format!("{stem}_"))
            .and_then(|r| r.strip_suffix(".png"))
            .filter(|d| d.len() >= 4 && d.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|d| d.parse::<usize>().ok());
        if k.is_some_and(|k| k > n) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// The COCO file of one image: annotation k is object k (label k of the label image).
pub fn image_record(
    file_name: &str,
    [h, w]: [usize; 2],
    objects: &[PredictedObject],
    settings: &Value,
    kind: CocoSegmentation,
) -> Value {
    let annotations: Vec<Value> = objects
        .iter()
        .enumerate()
        .map(|(i, o)| {
            // One object decoded at a time: a huge image's masks stay run-length encoded.
            let mask = o.mask();
            let mut a = json!({
                "id": i + 1,
                "image_id": 1,
                "category_id": 1,
                "iscrowd": 0,
                "segmentation": segmentation(&mask, w, h, kind),
                "area": o.area(),
                "bbox": coco_bbox(&mask, w),
                "label": i + 1,
                "predicted_iou": o.predicted_iou,
                "prompt": prompt_json(&o.prompt),
            });
            if let Some(s) = o.stability_score {
                a["stability_score"] = json!(s);
            }
            // Only on tiled images: the region [x0, y0, x1) × [y0, y1) the mask comes from.
            match o.source {
                MaskSource::Image => {}
                MaskSource::Tile(r) => a["tile"] = json!(r.to_array()),
                MaskSource::SqueezedFallback => {
                    a["tile"] = json!("whole image (prompt larger than a tile)")
                }
                MaskSource::WholePass => {
                    a["tile"] = json!("whole image shrunk (object larger than a tile)")
                }
            }
            a
        })
        .collect();
    json!({
        "info": { "description": "segadapt predict" },
        "images": [{ "id": 1, "file_name": file_name, "width": w, "height": h }],
        "categories": [{ "id": 1, "name": "object", "supercategory": "" }],
        "annotations": annotations,
        "segadapt": { "settings": settings },
    })
}

/// One COCO file for the run from the images' records, in order: image ids 1.., annotation
/// ids 1.. across the run; each annotation keeps its `label` in its image's label image.
pub fn run_coco(records: &[Value], info: Value) -> Result<Value> {
    let mut images = Vec::new();
    let mut annotations = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let id = i + 1;
        let Some(mut image) = r["images"].get(0).cloned() else {
            bail!("record {id} has no image");
        };
        image["id"] = json!(id);
        images.push(image);
        for a in r["annotations"].as_array().into_iter().flatten() {
            let mut a = a.clone();
            a["image_id"] = json!(id);
            a["id"] = json!(annotations.len() + 1);
            annotations.push(a);
        }
    }
    Ok(json!({
        "info": info,
        "images": images,
        "categories": [{ "id": 1, "name": "object", "supercategory": "" }],
        "annotations": annotations,
    }))
}
