//! The per-image work of `segadapt predict`, as a plain function over a loaded
//! [`Predictor`] so the app can call it too: one image and its prompts (or "segment
//! everything") in, one mask per object out; and the label image the objects make.

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Result, bail};
use image::RgbImage;

use super::tiled_everything::generate_tiled;
use super::tiling::{Placement, Rect, TileConfig, TiledPredictor, tile_grid, tile_order};
use super::{Predictor, PromptInput};
use crate::sam::amg::Rle;
use crate::sam::automatic_mask_generator::{AmgParams, MaskRecord, SamAutomaticMaskGenerator};

/// What to segment in one image.
#[derive(Clone, Debug)]
pub enum ImagePrompts<'a> {
    /// One object per prompt (a box and/or points), in this order.
    Objects(&'a [PromptInput]),
    /// Every object, from the automatic mask generator's point grid.
    Everything(&'a AmgParams),
}

/// One object found in an image.
#[derive(Clone, Debug, PartialEq)]
pub struct PredictedObject {
    /// The mask in the image frame, run-length encoded so that many objects of a huge image
    /// fit in memory (may be empty: a prompt can give no pixel).
    pub rle: Rle,
    /// The model's predicted IoU of the mask.
    pub predicted_iou: f32,
    /// Stability score (segment-everything masks only).
    pub stability_score: Option<f32>,
    /// The prompt that produced the mask (for segment everything: its grid point).
    pub prompt: PromptInput,
    /// Where the mask was decoded.
    pub source: MaskSource,
}

/// The image region a mask was decoded in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaskSource {
    /// The image, not tiled.
    Image,
    /// One tile (core + halo) of a tiled image; the mask is 0 outside it.
    Tile(Rect),
    /// A tiled image squeezed whole, because the prompt is larger than a tile.
    SqueezedFallback,
    /// Segment everything's pass over a tiled image shrunk to a tile's size: an object larger
    /// than a tile can be sure to hold.
    WholePass,
}

impl PredictedObject {
    pub fn area(&self) -> u64 {
        self.rle.area()
    }

    /// The mask as a row-major `h·w` image, true = object.
    pub fn mask(&self) -> Vec<bool> {
        self.rle.to_mask()
    }
}

/// Refuses prompts outside the image (the rule of `segadapt segment`).
pub fn check_prompt_inside(p: &PromptInput, w: usize, h: usize) -> Result<()> {
    let inside =
        |x: f64, y: f64| x >= 0.0 && y >= 0.0 && x <= (w as f64 - 1.0) && y <= (h as f64 - 1.0);
    for q in &p.points {
        if !inside(q.x, q.y) {
            bail!("point ({}, {}) lies outside the {w}×{h} image", q.x, q.y);
        }
    }
    if let Some(b) = p.bbox
        && (!inside(b[0], b[1]) || !inside(b[2], b[3]))
    {
        bail!("box {b:?} lies outside the {w}×{h} image");
    }
    Ok(())
}

/// Segments one image. Prompted objects are decoded as `segadapt segment` does (one
/// embedding, then each prompt; with `multimask` the best of SAM's three candidates); an
/// image whose longer side exceeds `tiles.tile_above` is tiled (see [`super::tiling`]) and
/// only the tiles the prompts need are embedded; segment everything then runs tile by tile
/// (see [`super::tiled_everything`]).
/// `progress(done, total)` counts decoded prompts (segment everything: its steps). Returns
/// `None` once `cancel` is set (checked between prompts / point batches).
pub fn predict_image(
    predictor: &Predictor,
    image: &RgbImage,
    prompts: &ImagePrompts,
    multimask: bool,
    tiles: &TileConfig,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Option<Vec<PredictedObject>>> {
    tiles.validate()?;
    let (w, h) = (image.width() as usize, image.height() as usize);
    match prompts {
        ImagePrompts::Objects(list) => {
            // Checked before the embedding: a bad prompt costs no model time.
            for (i, p) in list.iter().enumerate() {
                if p.points.is_empty() && p.bbox.is_none() {
                    bail!("object {}: no box and no point", i + 1);
                }
                check_prompt_inside(p, w, h)
                    .map_err(|e| anyhow::anyhow!("object {}: {e}", i + 1))?;
            }
            let mut tiled = TiledPredictor::new(predictor, image, tiles)?;
            // Decoded tile by tile, so that each tile is embedded once however many tiles
            // the image has (the predictor keeps only a few); results keep the list's order.
            let order = tile_order(tiled.grid(), list);
            let mut out: Vec<Option<PredictedObject>> = vec![None; list.len()];
            for (done, &i) in order.iter().enumerate() {
                let p = &list[i];
                if cancel.load(Ordering::Relaxed) {
                    return Ok(None);
                }
                let pred = tiled.predict(p, multimask);
                let best = pred.best();
                let source = match (tiled.is_tiled(), pred.placement) {
                    (false, _) => MaskSource::Image,
                    (true, Placement::Tile(_)) => MaskSource::Tile(pred.region),
                    (true, Placement::Whole) => MaskSource::SqueezedFallback,
                };
                let [rw, rh] = [image.width() as usize, image.height() as usize];
                out[i] = Some(PredictedObject {
                    rle: Rle::from_mask(&pred.masks[best], rh, rw),
                    predicted_iou: pred.iou[best],
                    stability_score: None,
                    prompt: p.clone(),
                    source,
                });
                progress(done + 1, list.len());
            }
            Ok(Some(out.into_iter().flatten().collect()))
        }
        ImagePrompts::Everything(params) => {
            let generator = SamAutomaticMaskGenerator::new(predictor, (*params).clone())
                .map_err(|e| anyhow::anyhow!("segment everything: {e}"))?;
            let found: Vec<(MaskRecord, MaskSource)> = if tiles.applies(w, h) {
                let grid = tile_grid(w, h, tiles.tile, tiles.halo);
                let Some(masks) = generate_tiled(&generator, image, &grid, progress, cancel) else {
                    return Ok(None);
                };
                masks
                    .into_iter()
                    .map(|m| {
                        let source = m.tile.map_or(MaskSource::WholePass, MaskSource::Tile);
                        (m.record, source)
                    })
                    .collect()
            } else {
                let Some(records) = generator.generate_cancellable(image, progress, cancel) else {
                    return Ok(None);
                };
                records
                    .into_iter()
                    .map(|r| (r, MaskSource::Image))
                    .collect()
            };
            Ok(Some(
                found
                    .into_iter()
                    .map(|(r, source)| PredictedObject {
                        predicted_iou: r.predicted_iou,
                        stability_score: Some(r.stability_score),
                        prompt: PromptInput {
                            points: vec![super::Point {
                                x: r.point_coords[0],
                                y: r.point_coords[1],
                                positive: true,
                            }],
                            ..Default::default()
                        },
                        rle: r.rle,
                        source,
                    })
                    .collect(),
            ))
        }
    }
}

/// The 16-bit label image of overlapping masks (`h`×`w`, row-major): 0 background, k where
/// mask k (1-based) is. Masks are painted largest first (equal areas in order), so every
/// smaller mask stays visible on top of the larger ones it overlaps. Painted from the runs,
/// so no mask is decoded.
pub fn label_image<R: std::borrow::Borrow<Rle>>(
    masks: &[R],
    h: usize,
    w: usize,
) -> Result<Vec<u16>> {
    if masks.len() > u16::MAX as usize {
        bail!(
            "{} objects do not fit a 16-bit label image (at most {})",
            masks.len(),
            u16::MAX
        );
    }
    let mut order: Vec<usize> = (0..masks.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(masks[i].borrow().area()));
    let mut labels = vec![0u16; h * w];
    for i in order {
        let m = masks[i].borrow();
        if m.size != [h, w] {
            bail!(
                "mask {} is {:?} (h, w), the image [{h}, {w}]",
                i + 1,
                m.size
            );
        }
        for (start, len) in m.set_runs() {
            for p in start..start + len {
                labels[(p % h) * w + p / h] = i as u16 + 1;
            }
        }
    }
    Ok(labels)
}

/// pycocotools' `toBbox` of a row-major mask: `[x, y, w, h]` of the set pixels' extent
/// (`w = last column + 1 − first column`), `[0, 0, 0, 0]` when empty.
pub fn coco_bbox(mask: &[bool], w: usize) -> [u32; 4] {
    match crate::project::objects::mask_stats(mask, w) {
        Some((_, [x0, y0, x1, y1])) => [x0, y0, x1 - x0 + 1, y1 - y0 + 1],
        None => [0; 4],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_paint_smaller_on_top() {
        // 1×5 strip: mask 1 covers 0..4, mask 2 covers 1..2, mask 3 (same area as 2) 2..3.
        let m = |r: std::ops::Range<usize>| {
            Rle::from_mask(&(0..5).map(|i| r.contains(&i)).collect::<Vec<_>>(), 1, 5)
        };
        let labels = label_image(&[m(0..4), m(1..3), m(2..4)], 1, 5).unwrap();
        assert_eq!(labels, vec![1, 2, 3, 3, 0]);
        assert!(label_image(&[m(0..4)], 2, 5).is_err());
        // Column-major runs land row-major: a 2×3 mask set at (x=1, y=0) and (x=2, y=1).
        let mut two = vec![false; 6];
        two[1] = true;
        two[3 + 2] = true;
        let labels = label_image(&[Rle::from_mask(&two, 2, 3)], 2, 3).unwrap();
        assert_eq!(labels, vec![0, 1, 0, 0, 0, 1]);
    }

    #[test]
    fn bbox_like_pycocotools() {
        // pycocotools.mask.toBbox(encode(m)) of a 3×4 mask set at (x=1,y=0) and (x=2,y=2).
        let mut m = vec![false; 12];
        m[1] = true;
        m[2 * 4 + 2] = true;
        assert_eq!(coco_bbox(&m, 4), [1, 0, 2, 3]);
        assert_eq!(coco_bbox(&[false; 6], 3), [0; 4]);
    }

    #[test]
    fn prompts_outside_are_refused() {
        let p = PromptInput {
            bbox: Some([0.0, 0.0, 10.0, 4.0]),
            ..Default::default()
        };
        assert!(check_prompt_inside(&p, 11, 5).is_ok());
        assert!(check_prompt_inside(&p, 10, 5).is_err());
    }
}
