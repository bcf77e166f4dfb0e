//! Segment everything on a tiled image, as micro-sam segments large images automatically: the
//! official generator runs on every tile (core + halo) as on an image of its own, and each
//! tile answers for the objects of its core. A tile keeps a mask when the centre of its box
//! lies in the tile's core and the box keeps clear of the tile's inner edges (edges that are
//! not image edges): an object smaller than the halo is then seen whole by the tile that
//! keeps it, and cut copies in the neighbours are dropped. Masks of neighbouring tiles that
//! still overlap go through one more box NMS on their predicted IoU. Masks stay run-length
//! encoded throughout, so memory grows with the objects' outlines, not with the image area.

use std::sync::atomic::AtomicBool;

use image::RgbImage;

use super::tiling::{Rect, Tile};
use crate::sam::amg::{box_nms, is_box_near_crop_edge};
use crate::sam::automatic_mask_generator::{MaskRecord, SamAutomaticMaskGenerator};

/// Distance (px) from a tile's inner edge within which a mask counts as cut by it: the
/// official generator's rule for crops.
pub const EDGE_TOLERANCE: f32 = 20.0;

/// A mask of the whole image, with the tile it was decoded in.
pub struct TiledMask {
    pub record: MaskRecord,
    pub tile: Rect,
}

/// Steps [`generate_tiled`] reports over `grid` (one per tile embedding and point batch).
pub fn total_steps(generator: &SamAutomaticMaskGenerator, grid: &[Tile]) -> usize {
    grid.iter()
        .map(|t| generator.total_steps([t.outer.height(), t.outer.width()]))
        .sum()
}

/// Every mask of `image` tile by tile (see the module). `progress(done, total)` counts the
/// generator's steps over all tiles; `None` once `cancel` is set.
pub fn generate_tiled(
    generator: &SamAutomaticMaskGenerator,
    image: &RgbImage,
    grid: &[Tile],
    progress: &mut dyn FnMut(usize, usize),
    cancel: &AtomicBool,
) -> Option<Vec<TiledMask>> {
    let (w, h) = (image.width() as usize, image.height() as usize);
    let total = total_steps(generator, grid);
    let mut done_before = 0;
    let mut kept: Vec<TiledMask> = Vec::new();
    for t in grid {
        let r = t.outer;
        let records = generator.generate_cancellable(
            &r.crop(image),
            &mut |done, _| progress(done_before + done, total),
            cancel,
        )?;
        done_before += generator.total_steps([r.height(), r.width()]);
        for rec in records {
            if keeps(t, &rec, [w, h]) {
                kept.push(TiledMask {
                    record: in_image_frame(rec, r, [w, h]),
                    tile: r,
                });
            }
        }
    }
    let boxes: Vec<[f32; 4]> = kept
        .iter()
        .map(|m| {
            let [x, y, bw, bh] = m.record.bbox;
            [x, y, x + bw, y + bh]
        })
        .collect();
    let scores: Vec<f32> = kept.iter().map(|m| m.record.predicted_iou).collect();
    let nms_thresh = generator.params.box_nms_thresh;
    let mut keep = box_nms(&boxes, &scores, nms_thresh);
    keep.sort_unstable();
    let mut slots: Vec<Option<TiledMask>> = kept.into_iter().map(Some).collect();
    Some(keep.into_iter().filter_map(|i| slots[i].take()).collect())
}

/// Whether tile `t` answers for `rec` (a mask in the tile's frame): its box centre lies in
/// the core and no side of the box lies near an inner edge of the tile.
fn keeps(t: &Tile, rec: &MaskRecord, [w, h]: [usize; 2]) -> bool {
    let r = t.outer;
    let [x, y, bw, bh] = rec.bbox;
    let (cx, cy) = (r.x0 as f32 + x + bw / 2.0, r.y0 as f32 + y + bh / 2.0);
    let core = t.core;
    let in_core =
        cx >= core.x0 as f32 && cx < core.x1 as f32 && cy >= core.y0 as f32 && cy < core.y1 as f32;
    in_core
        && !is_box_near_crop_edge(
            [x, y, x + bw, y + bh],
            r.to_array(),
            [0, 0, w, h],
            EDGE_TOLERANCE,
        )
}

/// `rec` moved from the frame of region `r` to the image's.
fn in_image_frame(rec: MaskRecord, r: Rect, [w, h]: [usize; 2]) -> MaskRecord {
    let (dx, dy) = (r.x0 as f32, r.y0 as f32);
    MaskRecord {
        rle: rec.rle.placed(r.x0, r.y0, h, w),
        bbox: [rec.bbox[0] + dx, rec.bbox[1] + dy, rec.bbox[2], rec.bbox[3]],
        point_coords: [
            rec.point_coords[0] + r.x0 as f64,
            rec.point_coords[1] + r.y0 as f64,
        ],
        crop_box: [
            rec.crop_box[0] + dx,
            rec.crop_box[1] + dy,
            rec.crop_box[2],
            rec.crop_box[3],
        ],
        ..rec
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sam::amg::Rle;

    fn record(bbox: [f32; 4]) -> MaskRecord {
        MaskRecord {
            rle: Rle {
                size: [1, 1],
                counts: vec![1],
            },
            area: 0,
            bbox,
            predicted_iou: 0.9,
            stability_score: 0.95,
            point_coords: [0.0, 0.0],
            crop_box: [0.0, 0.0, 1.0, 1.0],
        }
    }

    /// The middle tile of a 3×3 grid of 100 px cores with a 40 px halo on a 300² image:
    /// outer region 60..240 on both axes. Values worked out by hand.
    #[test]
    fn a_tile_keeps_whole_masks_centred_in_its_core() {
        let t = Tile {
            core: Rect {
                x0: 100,
                y0: 100,
                x1: 200,
                y1: 200,
            },
            outer: Rect {
                x0: 60,
                y0: 60,
                x1: 240,
                y1: 240,
            },
        };
        let size = [300, 300];
        // Centre (150, 150), box 120..180 in the image: well inside.
        assert!(keeps(&t, &record([60.0, 60.0, 60.0, 60.0]), size));
        // Centre at image x 95 (core starts at 100): the left tile answers for it.
        assert!(!keeps(&t, &record([25.0, 60.0, 20.0, 20.0]), size));
        // Centre inside, but the box starts at tile x 10 (< 20 px from the inner edge).
        assert!(!keeps(&t, &record([10.0, 60.0, 150.0, 20.0]), size));
        // Same box 21 px from the edge: kept.
        assert!(keeps(&t, &record([21.0, 60.0, 100.0, 20.0]), size));
        // A corner tile's outer edges at the image border do not count as cuts.
        let corner = Tile {
            core: Rect {
                x0: 0,
                y0: 0,
                x1: 100,
                y1: 100,
            },
            outer: Rect {
                x0: 0,
                y0: 0,
                x1: 140,
                y1: 140,
            },
        };
        assert!(keeps(&corner, &record([0.0, 0.0, 30.0, 30.0]), size));
    }

    #[test]
    fn records_move_to_the_image_frame() {
        let mut rec = record([2.0, 3.0, 4.0, 5.0]);
        rec.rle = Rle::from_mask(&[false, true, true, false], 2, 2);
        rec.point_coords = [1.5, 0.5];
        let r = Rect {
            x0: 10,
            y0: 20,
            x1: 12,
            y1: 22,
        };
        let moved = in_image_frame(rec, r, [30, 40]);
        assert_eq!(moved.bbox, [12.0, 23.0, 4.0, 5.0]);
        assert_eq!(moved.point_coords, [11.5, 20.5]);
        assert_eq!(moved.crop_box, [10.0, 20.0, 1.0, 1.0]);
        let m = moved.rle.to_mask();
        assert!(m[20 * 30 + 11] && m[21 * 30 + 10]);
        assert_eq!(m.iter().filter(|&&v| v).count(), 2);
    }
}
