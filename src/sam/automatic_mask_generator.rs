//! Mirrors `segment_anything/automatic_mask_generator.py`: "segment everything". A grid of
//! single positive points is run through the decoder in batches; masks are kept by predicted
//! IoU and stability score, deduplicated by box NMS (per crop, then across crops), and
//! optionally cleaned of small holes and islands. Works with any [`Predictor`], so with the
//! base model or an adapted one.
//!
//! One deviation from the official order, with the same result: masks are filtered by
//! predicted IoU *before* their logits are upscaled to the image size (the official code
//! upscales all three masks of every point first). The IoU head does not depend on the
//! upscaling, so the same masks survive, and most of the upscaling work is skipped.

use std::sync::atomic::{AtomicBool, Ordering};

use burn::prelude::*;
use image::RgbImage;

use super::amg::{
    RegionMode, Rle, box_nms, box_xyxy_to_xywh, build_all_layer_point_grids,
    calculate_stability_score, generate_crop_boxes, is_box_near_crop_edge, mask_to_box,
    remove_small_regions,
};
use super::prompt_encoder::Prompts;
use crate::predict::transforms::coords_for;
use crate::predict::{ImageEmbedding, Predictor};

/// Parameters of [`SamAutomaticMaskGenerator`]; the defaults are the official ones.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct AmgParams {
    /// Points per side of the grid (n² prompts in the full image).
    pub points_per_side: usize,
    /// Points run through the decoder at once (memory vs. speed).
    pub points_per_batch: usize,
    /// Keep masks whose predicted IoU is above this.
    pub pred_iou_thresh: f32,
    /// Keep masks whose stability score is at least this.
    pub stability_score_thresh: f32,
    /// The logit shift (±) of the stability score's two cuts.
    pub stability_score_offset: f32,
    /// Box IoU above which NMS drops the lower-scoring of two masks (within a crop).
    pub box_nms_thresh: f64,
    /// Crop layers: layer i runs the grid again on (2^i)² overlapping crops.
    pub crop_n_layers: usize,
    /// Box IoU for NMS between masks of different crops.
    pub crop_nms_thresh: f64,
    /// Overlap of neighbouring crops in the first layer, as a fraction of the short side.
    pub crop_overlap_ratio: f64,
    /// Points per side in layer i are `points_per_side / factor^i`.
    pub crop_n_points_downscale_factor: usize,
    /// If > 0, fill holes and remove islands smaller than this many pixels.
    pub min_mask_region_area: usize,
}

impl Default for AmgParams {
    fn default() -> Self {
        Self {
            points_per_side: 32,
            points_per_batch: 64,
            pred_iou_thresh: 0.88,
            stability_score_thresh: 0.95,
            stability_score_offset: 1.0,
            box_nms_thresh: 0.7,
            crop_n_layers: 0,
            crop_nms_thresh: 0.7,
            crop_overlap_ratio: 512.0 / 1500.0,
            crop_n_points_downscale_factor: 1,
            min_mask_region_area: 0,
        }
    }
}

impl AmgParams {
    /// Refuses values the official code would fail on or that make no sense.
    pub fn validate(&self) -> Result<(), String> {
        if self.points_per_side == 0 || self.points_per_side > 256 {
            return Err(format!(
                "points per side must be 1..=256, got {}",
                self.points_per_side
            ));
        }
        if self.points_per_batch == 0 {
            return Err("points per batch must be at least 1".into());
        }
        for (name, v) in [
            ("predicted-IoU threshold", self.pred_iou_thresh as f64),
            (
                "stability-score threshold",
                self.stability_score_thresh as f64,
            ),
            ("box NMS threshold", self.box_nms_thresh),
            ("crop NMS threshold", self.crop_nms_thresh),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("{name} must be in [0, 1], got {v}"));
            }
        }
        if !self.stability_score_offset.is_finite() || self.stability_score_offset < 0.0 {
            return Err(format!(
                "stability-score offset must be ≥ 0, got {}",
                self.stability_score_offset
            ));
        }
        if self.crop_n_layers > 4 {
            return Err(format!(
                "crop layers must be 0..=4 (layer 4 is already 256 crops), got {}",
                self.crop_n_layers
            ));
        }
        if !(0.0..1.0).contains(&self.crop_overlap_ratio) {
            return Err(format!(
                "crop overlap ratio must be in [0, 1), got {}",
                self.crop_overlap_ratio
            ));
        }
        if self.crop_n_points_downscale_factor == 0 {
            return Err("crop points downscale factor must be at least 1".into());
        }
        let last = build_all_layer_point_grids(
            self.points_per_side,
            self.crop_n_layers,
            self.crop_n_points_downscale_factor,
        );
        if last.iter().any(|g| g.is_empty()) {
            return Err(format!(
                "{} points per side downscaled by {} over {} crop layers leaves a layer without points",
                self.points_per_side, self.crop_n_points_downscale_factor, self.crop_n_layers
            ));
        }
        Ok(())
    }
}

/// One mask of the result: the official generator's record.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MaskRecord {
    /// The mask in the image frame (uncompressed, column-major).
    pub rle: Rle,
    /// Set pixels.
    pub area: u64,
    /// x, y, w, h of the mask's box (w = last column − first column, as the official code).
    pub bbox: [f32; 4],
    pub predicted_iou: f32,
    pub stability_score: f32,
    /// The point prompt that produced the mask, in image pixels.
    pub point_coords: [f64; 2],
    /// x, y, w, h of the crop the mask came from.
    pub crop_box: [f32; 4],
}

impl MaskRecord {
    /// The mask as a row-major `h·w` boolean image (the official `binary_mask` output).
    pub fn mask(&self) -> Vec<bool> {
        self.rle.to_mask()
    }

    /// The official `coco_rle` output: `{"size": [h, w], "counts": <compressed string>}`,
    /// as pycocotools reads it.
    pub fn coco_rle(&self) -> serde_json::Value {
        serde_json::json!({ "size": self.rle.size, "counts": self.rle.to_coco_string() })
    }
}

/// Progress: `done` of `total` steps (one per crop embedding and one per point batch).
pub type ProgressFn<'a> = dyn FnMut(usize, usize) + 'a;

/// Progress reporting and the cancel flag, passed down to the crops.
struct Steps<'a, 'b> {
    done: &'a mut usize,
    total: usize,
    progress: &'a mut ProgressFn<'b>,
    cancel: &'a AtomicBool,
}

impl Steps<'_, '_> {
    /// One step done; `None` once cancelled.
    fn advance(&mut self) -> Option<()> {
        *self.done += 1;
        (self.progress)(*self.done, self.total);
        (!self.cancel.load(Ordering::Relaxed)).then_some(())
    }
}

/// A mask being built (the official `MaskData` row).
#[derive(Clone, Debug)]
struct Candidate {
    rle: Rle,
    /// x0, y0, x1, y1 (inclusive) in the image frame.
    bbox: [f32; 4],
    iou: f32,
    stability: f32,
    point: [f64; 2],
    crop_box: [usize; 4],
}

/// Memory for the logits of the masks upscaled at once (each is an `img_size²` f32 plane on
/// the way to the image size, then an image-size plane), so huge images go a mask at a time.
const UPSCALE_BUDGET_BYTES: usize = 256 << 20;
/// At most this many masks per upscale, however small the image.
const UPSCALE_CHUNK_MAX: usize = 16;

pub struct SamAutomaticMaskGenerator<'a> {
    pub predictor: &'a Predictor,
    pub params: AmgParams,
    point_grids: Vec<Vec<[f64; 2]>>,
}

impl<'a> SamAutomaticMaskGenerator<'a> {
    pub fn new(predictor: &'a Predictor, params: AmgParams) -> Result<Self, String> {
        params.validate()?;
        let point_grids = build_all_layer_point_grids(
            params.points_per_side,
            params.crop_n_layers,
            params.crop_n_points_downscale_factor,
        );
        Ok(Self {
            predictor,
            params,
            point_grids,
        })
    }

    /// The crop boxes and their layers for an image of `size` (h, w). Crops without pixels
    /// (only possible for images of a few pixels with several layers) are left out: the
    /// official code would fail on them.
    fn crops(&self, size: [usize; 2]) -> Vec<([usize; 4], usize)> {
        let (boxes, layers) = generate_crop_boxes(
            size,
            self.params.crop_n_layers,
            self.params.crop_overlap_ratio,
        );
        boxes
            .into_iter()
            .zip(layers)
            .filter(|(b, _)| b[2] > b[0] && b[3] > b[1])
            .collect()
    }

    /// Steps [`Self::generate`] reports for an image of `size` (h, w).
    pub fn total_steps(&self, size: [usize; 2]) -> usize {
        self.crops(size)
            .iter()
            .map(|&(_, l)| {
                1 + self.point_grids[l]
                    .len()
                    .div_ceil(self.params.points_per_batch)
            })
            .sum()
    }

    /// `SamAutomaticMaskGenerator.generate`: every mask found in `image`, in the official order.
    pub fn generate(&self, image: &RgbImage, progress: &mut ProgressFn) -> Vec<MaskRecord> {
        self.generate_cancellable(image, progress, &AtomicBool::new(false))
            .unwrap_or_default()
    }

    /// [`Self::generate`] that stops between point batches once `cancel` is set (`None`).
    pub fn generate_cancellable(
        &self,
        image: &RgbImage,
        progress: &mut ProgressFn,
        cancel: &AtomicBool,
    ) -> Option<Vec<MaskRecord>> {
        self.generate_with_embedding(image, None, progress, cancel)
    }

    /// [`Self::generate_cancellable`] reusing `embedding` (of the whole `image`, by this
    /// predictor) for the full-image crop instead of running the encoder again: the app
    /// already has it. Crop layers still embed their crops.
    pub fn generate_with_embedding(
        &self,
        image: &RgbImage,
        embedding: Option<&ImageEmbedding>,
        progress: &mut ProgressFn,
        cancel: &AtomicBool,
    ) -> Option<Vec<MaskRecord>> {
        let orig_size = [image.height() as usize, image.width() as usize];
        let p = &self.params;
        let crops = self.crops(orig_size);
        let total = self.total_steps(orig_size);
        let mut done = 0;
        progress(done, total);

        let mut data = Vec::new();
        for &(crop_box, layer) in &crops {
            data.extend(self.process_crop(
                image,
                embedding,
                crop_box,
                layer,
                orig_size,
                &mut Steps {
                    done: &mut done,
                    total,
                    progress: &mut *progress,
                    cancel,
                },
            )?);
        }
        // Remove duplicates between crops, preferring masks from smaller crops.
        if crops.len() > 1 {
            let boxes: Vec<[f32; 4]> = data.iter().map(|c| c.bbox).collect();
            let scores: Vec<f32> = data
                .iter()
                .map(|c| {
                    let b = c.crop_box;
                    1.0 / ((b[2] - b[0]) * (b[3] - b[1])) as f32
                })
                .collect();
            data = select(data, &box_nms(&boxes, &scores, p.crop_nms_thresh));
        }
        let records = data
            .into_iter()
            .map(|c| {
                let xywh = |b: [usize; 4]| {
                    box_xyxy_to_xywh([b[0] as f32, b[1] as f32, b[2] as f32, b[3] as f32])
                };
                MaskRecord {
                    area: c.rle.area(),
                    bbox: box_xyxy_to_xywh(c.bbox),
                    predicted_iou: c.iou,
                    stability_score: c.stability,
                    point_coords: c.point,
                    crop_box: xywh(c.crop_box),
                    rle: c.rle,
                }
            })
            .collect();
        // Small holes and islands (the official `generate` does this after `_generate_masks`).
        Some(if p.min_mask_region_area > 0 {
            postprocess_small_regions(
                records,
                p.min_mask_region_area as f64,
                p.box_nms_thresh.max(p.crop_nms_thresh),
            )
        } else {
            records
        })
    }

    fn process_crop(
        &self,
        image: &RgbImage,
        full_embedding: Option<&ImageEmbedding>,
        crop_box: [usize; 4],
        layer: usize,
        orig_size: [usize; 2],
        steps: &mut Steps,
    ) -> Option<Vec<Candidate>> {
        let [x0, y0, x1, y1] = crop_box;
        let full = crop_box == [0, 0, orig_size[1], orig_size[0]];
        let cropped = if full {
            None
        } else {
            Some(
                image::imageops::crop_imm(
                    image,
                    x0 as u32,
                    y0 as u32,
                    (x1 - x0) as u32,
                    (y1 - y0) as u32,
                )
                .to_image(),
            )
        };
        let emb = match full_embedding.filter(|e| full && e.original_size == orig_size) {
            Some(e) => e.clone(),
            None => self.predictor.set_image(cropped.as_ref().unwrap_or(image)),
        };
        steps.advance()?;

        let (crop_w, crop_h) = ((x1 - x0) as f64, (y1 - y0) as f64);
        let points: Vec<[f64; 2]> = self.point_grids[layer]
            .iter()
            .map(|&[x, y]| [x * crop_w, y * crop_h])
            .collect();
        let pe = self.predictor.model.prompt_encoder.get_dense_pe();
        let mut data = Vec::new();
        for batch in points.chunks(self.params.points_per_batch) {
            data.extend(self.process_batch(&emb, &pe, batch, crop_box, orig_size));
            steps.advance()?;
        }
        // Remove duplicates within this crop (boxes still in the crop frame, as official).
        let boxes: Vec<[f32; 4]> = data.iter().map(|c| c.bbox).collect();
        let scores: Vec<f32> = data.iter().map(|c| c.iou).collect();
        let mut data = select(data, &box_nms(&boxes, &scores, self.params.box_nms_thresh));
        let (dx, dy) = (x0 as f32, y0 as f32);
        for c in &mut data {
            c.bbox = [
                c.bbox[0] + dx,
                c.bbox[1] + dy,
                c.bbox[2] + dx,
                c.bbox[3] + dy,
            ];
            c.point = [c.point[0] + x0 as f64, c.point[1] + y0 as f64];
        }
        Some(data)
    }

    /// One batch of single-point prompts (points in the crop frame): masks that pass the
    /// filters, with boxes in the crop frame and RLEs in the image frame.
    fn process_batch(
        &self,
        emb: &ImageEmbedding,
        pe: &Tensor<4>,
        points: &[[f64; 2]],
        crop_box: [usize; 4],
        orig_size: [usize; 2],
    ) -> Vec<Candidate> {
        let p = &self.params;
        let pred = self.predictor;
        let device = &pred.device;
        let b = points.len();
        let coords: Vec<f32> = points
            .iter()
            .flat_map(|&xy| coords_for(xy, emb.original_size, &pred.model.config))
            .collect();
        let prompts = Prompts {
            points: Some((
                Tensor::<3>::from_data(TensorData::new(coords, [b, 1, 2]), device),
                Tensor::<2>::ones([b, 1], device),
            )),
            boxes: None,
            masks: None,
        };
        let out = pred
            .model
            .decode_with_pe(emb.embedding.clone(), pe.clone(), &prompts, true);
        let [_, m, lh, lw] = out.low_res_masks.dims();
        let ious: Vec<f32> = out
            .iou_predictions
            .into_data()
            .convert::<f32>()
            .try_to_vec()
            .unwrap_or_default();
        // Flattened (point, mask) order as `masks.flatten(0, 1)`; IoU filter first (see the
        // module doc).
        let kept: Vec<usize> = (0..b * m)
            .filter(|&i| p.pred_iou_thresh <= 0.0 || ious[i] > p.pred_iou_thresh)
            .collect();
        if kept.is_empty() {
            return Vec::new();
        }
        let low_res = out.low_res_masks.reshape([b * m, 1, lh, lw]);
        let [orig_h, orig_w] = orig_size;
        let [ch, cw] = emb.original_size;
        let mask_threshold = 0.0f32;
        let mut result = Vec::new();
        let img_size = pred.img_size();
        let plane_bytes = 4 * (img_size * img_size + ch * cw);
        let chunk_len = (UPSCALE_BUDGET_BYTES / plane_bytes).clamp(1, UPSCALE_CHUNK_MAX);
        for chunk in kept.chunks(chunk_len) {
            let idx = Tensor::<1, Int>::from_data(
                TensorData::new(
                    chunk.iter().map(|&i| i as i64).collect::<Vec<_>>(),
                    [chunk.len()],
                ),
                device,
            );
            let sel = low_res.clone().select(0, idx);
            let up = pred
                .model
                .postprocess_masks(sel, emb.input_size, emb.original_size);
            let logits: Vec<f32> = up
                .into_data()
                .convert::<f32>()
                .try_to_vec()
                .unwrap_or_default();
            for (k, &i) in chunk.iter().enumerate() {
                let plane = &logits[k * ch * cw..(k + 1) * ch * cw];
                let stability =
                    calculate_stability_score(plane, mask_threshold, p.stability_score_offset);
                // NaN (no pixel above the lower cut) fails the test, as in the official code.
                let stable = stability >= p.stability_score_thresh;
                if p.stability_score_thresh > 0.0 && !stable {
                    continue;
                }
                let mask: Vec<bool> = plane.iter().map(|&v| v > mask_threshold).collect();
                let bx = mask_to_box(&mask, ch, cw);
                let bbox = bx.map(|v| v as f32);
                if is_box_near_crop_edge(bbox, crop_box, [0, 0, orig_w, orig_h], 20.0) {
                    continue;
                }
                let rle = if crop_box == [0, 0, orig_w, orig_h] {
                    Rle::from_mask(&mask, ch, cw)
                } else {
                    Rle::from_mask(
                        &uncrop_mask(&mask, crop_box, orig_h, orig_w),
                        orig_h,
                        orig_w,
                    )
                };
                result.push(Candidate {
                    rle,
                    bbox,
                    iou: ious[i],
                    stability,
                    point: points[i / m],
                    crop_box,
                });
            }
        }
        result
    }
}

/// `uncrop_masks`: a crop-frame mask placed in an all-background image.
fn uncrop_mask(mask: &[bool], crop_box: [usize; 4], orig_h: usize, orig_w: usize) -> Vec<bool> {
    let [x0, y0, x1, y1] = crop_box;
    let cw = x1 - x0;
    let mut out = vec![false; orig_h * orig_w];
    for y in 0..(y1 - y0) {
        out[(y0 + y) * orig_w + x0..(y0 + y) * orig_w + x1]
            .copy_from_slice(&mask[y * cw..(y + 1) * cw]);
    }
    out
}

/// The rows at `keep`, in that order (`MaskData.filter` with an index list).
fn select<T>(data: Vec<T>, keep: &[usize]) -> Vec<T> {
    let mut slots: Vec<Option<T>> = data.into_iter().map(Some).collect();
    keep.iter().filter_map(|&i| slots[i].take()).collect()
}

/// `SamAutomaticMaskGenerator.postprocess_small_regions`: fill small holes, then drop small
/// islands, of every mask; NMS again with unchanged masks preferred, so a cleaned mask that
/// now duplicates another goes. [`SamAutomaticMaskGenerator::generate`] calls it when
/// `min_mask_region_area > 0`, with the larger of the two NMS thresholds.
pub fn postprocess_small_regions(
    records: Vec<MaskRecord>,
    min_area: f64,
    nms_thresh: f64,
) -> Vec<MaskRecord> {
    if records.is_empty() {
        return records;
    }
    let mut new_masks = Vec::with_capacity(records.len());
    let mut scores = Vec::with_capacity(records.len());
    let mut boxes = Vec::with_capacity(records.len());
    for r in &records {
        let [h, w] = r.rle.size;
        let mask = r.rle.to_mask();
        let (mask, changed_holes) = remove_small_regions(&mask, h, w, min_area, RegionMode::Holes);
        let (mask, changed_islands) =
            remove_small_regions(&mask, h, w, min_area, RegionMode::Islands);
        let unchanged = !changed_holes && !changed_islands;
        boxes.push(mask_to_box(&mask, h, w).map(|v| v as f32));
        scores.push(if unchanged { 1.0f32 } else { 0.0 });
        new_masks.push(mask);
    }
    let keep = box_nms(&boxes, &scores, nms_thresh);
    let mut records = records;
    // Only changed masks get a new RLE, box and area (the official code leaves `area` to be
    // computed from the RLE at the end, so it follows too).
    for &i in &keep {
        if scores[i] == 0.0 {
            let [h, w] = records[i].rle.size;
            let r = &mut records[i];
            r.rle = Rle::from_mask(&new_masks[i], h, w);
            r.area = r.rle.area();
            r.bbox = box_xyxy_to_xywh(boxes[i]);
        }
    }
    select(records, &keep)
}
