//! "Propose all objects" on the worker: the official automatic mask generator
//! ([`SamAutomaticMaskGenerator`]) on the open image's cached embedding, with progress per
//! point batch and cancellation between batches; its masks become [`Proposal`]s with their
//! outlines traced here, off the UI thread. Large images go tile by tile
//! ([`crate::predict::tiled_everything`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use image::RgbImage;

use crate::predict::tiled_everything::generate_tiled;
use crate::predict::tiling::{TileConfig, tile_grid};
use crate::sam::automatic_mask_generator::{AmgParams, MaskRecord, SamAutomaticMaskGenerator};
use crate::service::thread::guarded;

use super::BoxMask;
use super::Worker;
use super::messages::{Event, ImageKey, Job, Proposal, Slot};

/// A queued [`Job::Propose`].
pub(super) struct PendingPropose {
    pub slot: Slot,
    pub key: ImageKey,
    pub image: Arc<RgbImage>,
    pub params: AmgParams,
    pub tiles: TileConfig,
    pub run: u64,
    pub cancel: Arc<AtomicBool>,
}

impl Worker {
    /// Takes a [`Job::Propose`] in; a newer one replaces one still queued.
    pub(super) fn queue_propose(&mut self, job: Job) {
        let Job::Propose {
            slot,
            key,
            image,
            cache_dir,
            params,
            tiles,
            run,
            cancel,
        } = job
        else {
            return;
        };
        self.remember_image(&key, image.clone(), cache_dir);
        let newer = PendingPropose {
            slot,
            key,
            image,
            params,
            tiles,
            run,
            cancel,
        };
        if let Some(old) = self.propose.replace(newer) {
            self.emit(Event::ProposeCancelled { run: old.run });
        }
    }

    pub(super) fn propose(&mut self, p: PendingPropose) {
        let PendingPropose {
            slot,
            key,
            image,
            params,
            tiles,
            run,
            cancel,
        } = p;
        if cancel.load(Ordering::Relaxed) {
            self.emit(Event::ProposeCancelled { run });
            return;
        }
        if self.slot(slot).is_none() {
            self.emit(Event::ProposeError {
                run,
                error: "no model loaded".into(),
            });
            return;
        }
        let (w, h) = (image.width() as usize, image.height() as usize);
        let grid = (tiles.validate().is_ok() && tiles.applies(w, h))
            .then(|| tile_grid(w, h, tiles.tile, tiles.halo));
        // The embedding the clicks use (memory, disk, else the encoder with its own events);
        // a tiled image embeds its tiles inside the generator instead.
        let emb = match grid {
            Some(_) => None,
            None => match self.embedding(slot, &key, true) {
                Ok(e) => Some(e),
                Err(error) => {
                    self.emit(Event::ProposeError { run, error });
                    return;
                }
            },
        };
        let t = Instant::now();
        let (tx, waker) = (self.tx.clone(), self.waker.clone());
        let ls = self.slot(slot).expect("checked");
        let res = guarded(|| {
            let generator = SamAutomaticMaskGenerator::new(&ls.predictor, params)
                .map_err(anyhow::Error::msg)?;
            let mut progress = |done, total| {
                let _ = tx.send(Event::ProposeProgress { run, done, total });
                waker.wake();
            };
            Ok(match &grid {
                Some(g) => generate_tiled(&generator, &image, g, &mut progress, &cancel)
                    .map(|masks| masks.into_iter().map(|m| m.record).collect()),
                None => {
                    generator.generate_with_embedding(&image, emb.as_ref(), &mut progress, &cancel)
                }
            })
        });
        match res {
            Ok(Some(records)) => {
                let proposals = to_proposals(records, h);
                self.emit(Event::Proposed {
                    run,
                    key,
                    proposals,
                    ms: t.elapsed().as_secs_f64() * 1e3,
                });
            }
            Ok(None) => self.emit(Event::ProposeCancelled { run }),
            Err(error) => self.emit(Event::ProposeError { run, error }),
        }
    }
}

/// The generator's masks as proposals, in reading order (bands of an eighth of the image
/// height, left to right) so that stepping through them sweeps the image.
pub(super) fn to_proposals(records: Vec<MaskRecord>, h: usize) -> Vec<Proposal> {
    let mut out: Vec<Proposal> = records
        .into_iter()
        .filter(|r| r.area > 0)
        .map(|r| {
            // The record's box is x, y, w, h with w = last column − first column.
            let [x, y, bw, bh] = r.bbox;
            let bbox = [x as u32, y as u32, (x + bw) as u32, (y + bh) as u32];
            let mask = BoxMask::from_rle(&r.rle, bbox);
            // Traced in the box's frame, then moved to the image's.
            let (mw, mh) = (mask.width(), mask.height());
            let local = [0, 0, mw as u32 - 1, mh as u32 - 1];
            let (dx, dy) = (mask.bbox[0] as f32, mask.bbox[1] as f32);
            let outline = outline(&mask.bits, mw, mh, local)
                .into_iter()
                .map(|l| l.into_iter().map(|[px, py]| [px + dx, py + dy]).collect())
                .collect();
            Proposal {
                mask: Arc::new(mask),
                area: r.area,
                predicted_iou: r.predicted_iou,
                stability_score: r.stability_score,
                point: r.point_coords,
                outline,
            }
        })
        .collect();
    let band = (h / 8).max(1) as u32;
    out.sort_by_key(|p| {
        let b = p.mask.bbox;
        let (cx, cy) = ((b[0] + b[2]) / 2, (b[1] + b[3]) / 2);
        (cy / band, cx)
    });
    out
}

/// The boundary of `mask` (row-major `w·h`) inside `bbox` (x0, y0, x1, y1 inclusive) as
/// closed loops of pixel corners, straight runs merged into one segment. Every boundary edge
/// between a set and an unset pixel (or the image border) is on exactly one loop.
pub fn outline(mask: &[bool], w: usize, h: usize, bbox: [u32; 4]) -> Vec<Vec<[f32; 2]>> {
    let at = |x: i64, y: i64| {
        x >= 0
            && y >= 0
            && (x as usize) < w
            && (y as usize) < h
            && mask[y as usize * w + x as usize]
    };
    // Directed edges, the mask on the same side of each, so loops chain end to start.
    let mut edges: Vec<([i64; 2], [i64; 2])> = Vec::new();
    let x1 = (bbox[2] as usize).min(w.saturating_sub(1)) as i64;
    let y1 = (bbox[3] as usize).min(h.saturating_sub(1)) as i64;
    for y in bbox[1] as i64..=y1 {
        for x in bbox[0] as i64..=x1 {
            if !at(x, y) {
                continue;
            }
            if !at(x, y - 1) {
                edges.push(([x, y], [x + 1, y]));
            }
            if !at(x + 1, y) {
                edges.push(([x + 1, y], [x + 1, y + 1]));
            }
            if !at(x, y + 1) {
                edges.push(([x + 1, y + 1], [x, y + 1]));
            }
            if !at(x - 1, y) {
                edges.push(([x, y + 1], [x, y]));
            }
        }
    }
    let mut from: HashMap<[i64; 2], Vec<usize>> = HashMap::new();
    for (i, (a, _)) in edges.iter().enumerate() {
        from.entry(*a).or_default().push(i);
    }
    let mut used = vec![false; edges.len()];
    let mut loops = Vec::new();
    for first in 0..edges.len() {
        if used[first] {
            continue;
        }
        used[first] = true;
        let start = edges[first].0;
        let mut corners = vec![start];
        let mut at_v = edges[first].1;
        // In = out at every corner, so the walk can only end where it began.
        while at_v != start {
            let Some(&j) = from.get(&at_v).and_then(|l| l.iter().find(|&&j| !used[j])) else {
                break;
            };
            used[j] = true;
            corners.push(at_v);
            at_v = edges[j].1;
        }
        loops.push(simplify(&corners));
    }
    loops
}

/// Drops corners where a loop goes straight on.
fn simplify(c: &[[i64; 2]]) -> Vec<[f32; 2]> {
    let n = c.len();
    (0..n)
        .filter(|&i| {
            let (p, q, r) = (c[(i + n - 1) % n], c[i], c[(i + 1) % n]);
            let (d1, d2) = ([q[0] - p[0], q[1] - p[1]], [r[0] - q[0], r[1] - q[1]]);
            d1[0] * d2[1] - d1[1] * d2[0] != 0
        })
        .map(|i| [c[i][0] as f32, c[i][1] as f32])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask_of(rows: &[&str]) -> (Vec<bool>, usize, usize) {
        let (w, h) = (rows[0].len(), rows.len());
        let m = rows
            .iter()
            .flat_map(|r| r.chars().map(|c| c == '#'))
            .collect();
        (m, w, h)
    }

    #[test]
    fn a_rectangle_is_one_loop_of_four_corners() {
        let (m, w, h) = mask_of(&["....", ".##.", ".##.", "...."]);
        let l = outline(&m, w, h, [1, 1, 2, 2]);
        assert_eq!(l.len(), 1);
        let mut c = l[0].clone();
        c.sort_by(|a, b| a.partial_cmp(b).unwrap());
        assert_eq!(c, vec![[1.0, 1.0], [1.0, 3.0], [3.0, 1.0], [3.0, 3.0]]);
    }

    #[test]
    fn a_ring_has_an_outer_and_an_inner_loop_and_the_border_counts() {
        // Touches the image border on the left; the hole is one pixel.
        let (m, w, h) = mask_of(&["###.", "#.#.", "###."]);
        let l = outline(&m, w, h, [0, 0, 2, 2]);
        assert_eq!(l.len(), 2);
        let mut sizes: Vec<usize> = l.iter().map(|l| l.len()).collect();
        sizes.sort();
        assert_eq!(sizes, vec![4, 4]);
        assert!(l.iter().flatten().any(|p| *p == [0.0, 0.0]));
        assert!(l.iter().flatten().any(|p| *p == [2.0, 2.0]));
    }

    #[test]
    fn diagonal_touching_pixels_give_closed_loops_covering_every_edge() {
        let (m, w, h) = mask_of(&["#.", ".#"]);
        let l = outline(&m, w, h, [0, 0, 1, 1]);
        // 8 unit edges in all; each loop is closed (≥ 4 corners).
        assert!(l.iter().all(|l| l.len() >= 4));
        let perimeter: f32 = l
            .iter()
            .map(|l| {
                (0..l.len())
                    .map(|i| {
                        let (a, b) = (l[i], l[(i + 1) % l.len()]);
                        (a[0] - b[0]).abs() + (a[1] - b[1]).abs()
                    })
                    .sum::<f32>()
            })
            .sum();
        assert_eq!(perimeter, 8.0);
    }

    #[test]
    fn proposals_keep_the_mask_and_its_inclusive_box() {
        use crate::sam::amg::Rle;
        let (m, w, h) = mask_of(&["......", "..###.", "..###.", "......"]);
        let rec = MaskRecord {
            rle: Rle::from_mask(&m, h, w),
            area: 6,
            bbox: [2.0, 1.0, 2.0, 1.0],
            predicted_iou: 0.9,
            stability_score: 0.96,
            point_coords: [3.0, 1.5],
            crop_box: [0.0, 0.0, w as f32, h as f32],
        };
        let p = to_proposals(vec![rec], h);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].mask.bbox, [2, 1, 4, 2]);
        assert_eq!(p[0].mask.to_full(w, h), m);
        assert_eq!(p[0].mask.bits.len(), 6, "kept over its box only");
        // The outline, traced in the box, is in image pixel corners: the rectangle
        // (2, 1)–(5, 3).
        assert_eq!(p[0].outline.len(), 1);
        let l = &p[0].outline[0];
        assert!(l.contains(&[2.0, 1.0]) && l.contains(&[5.0, 3.0]), "{l:?}");
        assert!(
            l.iter()
                .all(|q| (2.0..=5.0).contains(&q[0]) && (1.0..=3.0).contains(&q[1]))
        );
    }
}
