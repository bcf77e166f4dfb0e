//! Segment everything on a tiled image, as micro-sam segments large images automatically: the
//! official generator runs on every tile (core + halo) as on an image of its own, and each
//! tile answers for the objects of its core. A tile keeps a mask when the centre of its box
//! lies in the tile's core and the box keeps clear of the tile's inner edges (edges that are
//! not image edges): an object smaller than the halo is then seen whole by the tile that
//! keeps it, and cut copies in the neighbours are dropped. Masks of neighbouring tiles that
//! still overlap go through one more box NMS on their predicted IoU. An object too large for
//! any tile to see whole is cut in every tile; one more pass over the whole image, shrunk to a
//! tile's size, finds those (coarsely, as the official generator's first crop layer) and
//! keeps only masks larger than a tile can guarantee. Masks stay run-length encoded
//! throughout, so memory grows with the objects' outlines, not with the image area.

use std::sync::atomic::AtomicBool;

use image::RgbImage;

use super::tiling::{Rect, Tile};
use crate::sam::amg::{Rle, box_nms, is_box_near_crop_edge};
use crate::sam::automatic_mask_generator::{MaskRecord, SamAutomaticMaskGenerator};

/// Distance (px) from a tile's inner edge within which a mask counts as cut by it: the
/// official generator's rule for crops.
pub const EDGE_TOLERANCE: f32 = 20.0;

/// A mask of the whole image, with the tile it was decoded in (`None`: the whole-image
/// pass).
pub struct TiledMask {
    pub record: MaskRecord,
    pub tile: Option<Rect>,
}

/// Steps [`generate_tiled`] reports over `grid` (one per tile embedding and point batch,
/// the whole-image pass included).
pub fn total_steps(generator: &SamAutomaticMaskGenerator, grid: &[Tile]) -> usize {
    let tiles: usize = grid
        .iter()
        .map(|t| generator.total_steps([t.outer.height(), t.outer.width()]))
        .sum();
    tiles + whole_pass_size(grid).map_or(0, |s| generator.total_steps(s))
}

/// Generator runs [`generate_tiled`] makes over `grid`: one per tile, and the whole pass.
pub fn passes(grid: &[Tile]) -> usize {
    grid.len() + whole_pass_size(grid).is_some() as usize
}

/// The whole image's [h, w] shrunk so that its longest side is the largest tile's; `None`
/// when there is no pass to make (one tile, or no tile smaller than the image).
fn whole_pass_size(grid: &[Tile]) -> Option<[usize; 2]> {
    let (w, h) = grid
        .iter()
        .fold((0, 0), |(w, h), t| (w.max(t.outer.x1), h.max(t.outer.y1)));
    let side = grid
        .iter()
        .map(|t| t.outer.width().max(t.outer.height()))
        .max()?;
    if grid.len() < 2 || w.max(h) <= side {
        return None;
    }
    let scale = side as f64 / w.max(h) as f64;
    let shrunk = [
        ((h as f64 * scale).round() as usize).max(1),
        ((w as f64 * scale).round() as usize).max(1),
    ];
    Some(shrunk)
}

/// The side above which a tile may not see an object whole: an object centred on its core's
/// edge reaches `halo` past it, less the edge tolerance, on either side.
fn tile_safe_side(grid: &[Tile]) -> f32 {
    let halo = grid
        .iter()
        .map(|t| {
            (t.core.x0 - t.outer.x0)
                .max(t.outer.x1 - t.core.x1)
                .max(t.core.y0 - t.outer.y0)
                .max(t.outer.y1 - t.core.y1)
        })
        .max()
        .unwrap_or(0);
    2.0 * (halo as f32 - EDGE_TOLERANCE)
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
    if let Some([sh, sw]) = whole_pass_size(grid) {
        let small = image::imageops::resize(
            image,
            sw as u32,
            sh as u32,
            image::imageops::FilterType::Triangle,
        );
        let records =
            generator.generate_cancellable(&small, &mut |done, _| progress(done, total), cancel)?;
        done_before += generator.total_steps([sh, sw]);
        let safe = tile_safe_side(grid);
        let scale = (w as f32 / sw as f32, h as f32 / sh as f32);
        for rec in records {
            // Judged by the box before the mask is scaled: most masks of the pass are not kept.
            let b = scaled_box(rec.bbox, scale);
            if b[2].max(b[3]) > safe {
                kept.push(TiledMask {
                    record: upscaled(rec, [h, w]),
                    tile: None,
                });
            }
        }
    }
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
                    tile: Some(r),
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

/// `rec` of a shrunk image brought to the image's `[h, w]`: mask by nearest neighbour, box,
/// point and crop scaled.
fn upscaled(rec: MaskRecord, [h, w]: [usize; 2]) -> MaskRecord {
    let [sh, sw] = rec.rle.size;
    let (fx, fy) = (w as f32 / sw as f32, h as f32 / sh as f32);
    let rle = upscale_nearest(&rec.rle, h, w);
    MaskRecord {
        area: rle.area(),
        rle,
        bbox: scaled_box(rec.bbox, (fx, fy)),
        point_coords: [
            rec.point_coords[0] * fx as f64,
            rec.point_coords[1] * fy as f64,
        ],
        crop_box: [0.0, 0.0, w as f32, h as f32],
        ..rec
    }
}

/// A record's box (x, y, w, h; w = last − first column) scaled by (`fx`, `fy`): the last
/// pixel (x + w) ends at (x + w + 1)·f.
fn scaled_box([x, y, bw, bh]: [f32; 4], (fx, fy): (f32, f32)) -> [f32; 4] {
    [x * fx, y * fy, (bw + 1.0) * fx - 1.0, (bh + 1.0) * fy - 1.0]
}

/// Nearest-neighbour resize of a mask to `h`×`w` (target pixel centres sampled), run by run:
/// the full-size mask is never materialised.
pub fn upscale_nearest(rle: &Rle, h: usize, w: usize) -> Rle {
    let [sh, sw] = rle.size;
    // Source runs per column (column-major runs split at column ends).
    let mut cols: Vec<Vec<(usize, usize)>> = vec![Vec::new(); sw];
    for (start, len) in rle.set_runs() {
        let (mut i, end) = (start, (start + len).min(sh * sw));
        while i < end {
            let (c, r) = (i / sh, i % sh);
            let stop = end.min((c + 1) * sh);
            cols[c].push((r, r + stop - i));
            i = stop;
        }
    }
    // first[r]: the first target row sampling source row ≥ r (first[sh] = h).
    let src_of = |t: usize, n: usize, sn: usize| ((2 * t + 1) * sn) / (2 * n);
    let mut first = vec![h; sh + 1];
    for t in (0..h).rev() {
        first[src_of(t, h, sh)] = t;
    }
    for r in (0..sh).rev() {
        first[r] = first[r].min(first[r + 1]);
    }
    let mut counts: Vec<u32> = Vec::new();
    let mut last_end = 0usize;
    for x in 0..w {
        for &(a, b) in &cols[src_of(x, w, sw)] {
            let (ya, yb) = (first[a], first[b]);
            if ya >= yb {
                continue;
            }
            let (s, e) = (x * h + ya, x * h + yb);
            if s == last_end && !counts.is_empty() {
                *counts.last_mut().expect("a run") += (e - s) as u32;
            } else {
                counts.push((s - last_end) as u32);
                counts.push((e - s) as u32);
            }
            last_end = e;
        }
    }
    // As `mask_to_rle_pytorch`: a trailing background run only when there is one (an empty
    // mask is one background run).
    if last_end < h * w || counts.is_empty() {
        counts.push((h * w - last_end) as u32);
    }
    Rle {
        size: [h, w],
        counts,
    }
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

    /// Against upscaling the decoded mask pixel by pixel (the same centre sampling).
    #[test]
    fn nearest_upscale_of_runs_matches_pixels() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for _ in 0..300 {
            let (sh, sw) = (rng.random_range(1..7), rng.random_range(1..7));
            let (h, w) = (
                rng.random_range(sh..4 * sh + 2),
                rng.random_range(sw..4 * sw + 2),
            );
            let m: Vec<bool> = (0..sh * sw).map(|_| rng.random_bool(0.5)).collect();
            let got = upscale_nearest(&Rle::from_mask(&m, sh, sw), h, w);
            let mut want = vec![false; h * w];
            for y in 0..h {
                for x in 0..w {
                    // Pixel centre (x + ½)·sw/w in source pixels.
                    let (sx, sy) = ((2 * x + 1) * sw / (2 * w), (2 * y + 1) * sh / (2 * h));
                    want[y * w + x] = m[sy * sw + sx];
                }
            }
            assert_eq!(got, Rle::from_mask(&want, h, w), "{sh}×{sw} → {h}×{w}");
        }
    }

    /// Four 100 px cores with a 40 px halo on a 200² image: a tile is sure to see whole only
    /// objects up to 2·(40 − 20) = 40 px; the whole pass runs on the image shrunk to 140 px.
    #[test]
    fn the_whole_pass_is_sized_by_the_grid() {
        let grid = crate::predict::tiling::tile_grid(200, 200, 100, 40);
        assert_eq!(grid.len(), 4);
        assert_eq!(tile_safe_side(&grid), 40.0);
        assert_eq!(whole_pass_size(&grid), Some([140, 140]));
        assert_eq!(
            whole_pass_size(&grid[..1]),
            None,
            "one tile: nothing to add"
        );
        assert_eq!((passes(&grid), passes(&grid[..1])), (5, 1));
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
