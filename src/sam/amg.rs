//! Mirrors `segment_anything/utils/amg.py`: the helpers of the automatic mask generator
//! (point grids, crop boxes, stability score, boxes of masks, box NMS, run-length encoding and
//! small-region removal). Masks are row-major `h·w` booleans; RLEs are column-major (COCO).
//!
//! Arithmetic follows the official code's dtypes where a threshold compares against it (f32
//! scores and IoUs, f64 grids and crop sizes), so borderline masks fall on the same side.

use std::collections::VecDeque;

/// `build_point_grid`: `n × n` points evenly spaced in [0, 1]², x varying fastest, each at
/// the centre of its cell. Same values as `np.linspace(1/2n, 1 - 1/2n, n)`.
pub fn build_point_grid(n_per_side: usize) -> Vec<[f64; 2]> {
    let offset = 1.0 / (2 * n_per_side) as f64;
    let one_side = linspace(offset, 1.0 - offset, n_per_side);
    one_side
        .iter()
        .flat_map(|&y| one_side.iter().map(move |&x| [x, y]))
        .collect()
}

/// `np.linspace(start, stop, num)` (endpoint included): `start + i·step`, the last exactly `stop`.
fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    if num == 1 {
        return vec![start];
    }
    let step = (stop - start) / (num - 1) as f64;
    let mut v: Vec<f64> = (0..num).map(|i| i as f64 * step + start).collect();
    v[num - 1] = stop;
    v
}

/// `build_all_layer_point_grids`: layer `i` has `n_per_side / scale_per_layer^i` points per
/// side (rounded down, as `int()` does).
pub fn build_all_layer_point_grids(
    n_per_side: usize,
    n_layers: usize,
    scale_per_layer: usize,
) -> Vec<Vec<[f64; 2]>> {
    (0..=n_layers)
        .map(|i| {
            let n = (n_per_side as f64 / (scale_per_layer as f64).powi(i as i32)) as usize;
            build_point_grid(n)
        })
        .collect()
}

/// `generate_crop_boxes`: the whole image (layer 0), then `(2^i)²` overlapping crops for each
/// layer `i ≥ 1`. Boxes are `[x0, y0, x1, y1]` (x1, y1 exclusive); `im_size` is (h, w).
pub fn generate_crop_boxes(
    im_size: [usize; 2],
    n_layers: usize,
    overlap_ratio: f64,
) -> (Vec<[usize; 4]>, Vec<usize>) {
    let [im_h, im_w] = im_size;
    let short_side = im_h.min(im_w) as f64;
    let mut boxes = vec![[0, 0, im_w, im_h]];
    let mut layers = vec![0];
    let crop_len = |orig_len: usize, n_crops: usize, overlap: usize| -> usize {
        ((overlap as f64 * (n_crops - 1) as f64 + orig_len as f64) / n_crops as f64).ceil() as usize
    };
    for i_layer in 0..n_layers {
        let n_crops_per_side = 1usize << (i_layer + 1);
        let overlap = (overlap_ratio * short_side * (2.0 / n_crops_per_side as f64)) as usize;
        let crop_w = crop_len(im_w, n_crops_per_side, overlap);
        let crop_h = crop_len(im_h, n_crops_per_side, overlap);
        // `crop - overlap` can't go negative: crop_len ≥ overlap whenever overlap_ratio < 1.
        let x0s: Vec<usize> = (0..n_crops_per_side)
            .map(|i| crop_w.saturating_sub(overlap) * i)
            .collect();
        let y0s: Vec<usize> = (0..n_crops_per_side)
            .map(|i| crop_h.saturating_sub(overlap) * i)
            .collect();
        // itertools.product(x0s, y0s): x outer, y inner.
        for &x0 in &x0s {
            for &y0 in &y0s {
                boxes.push([x0, y0, (x0 + crop_w).min(im_w), (y0 + crop_h).min(im_h)]);
                layers.push(i_layer + 1);
            }
        }
    }
    (boxes, layers)
}

/// `calculate_stability_score`: IoU of the masks thresholded at `mask_threshold ± offset`
/// (the higher one is inside the lower one, so it is a ratio of counts). 0/0 gives NaN, as in
/// the official code, which every threshold then rejects.
pub fn calculate_stability_score(logits: &[f32], mask_threshold: f32, offset: f32) -> f32 {
    let (hi, lo) = (mask_threshold + offset, mask_threshold - offset);
    let mut inter = 0u32;
    let mut union = 0u32;
    for &v in logits {
        inter += (v > hi) as u32;
        union += (v > lo) as u32;
    }
    inter as f32 / union as f32
}

/// `batched_mask_to_box` for one mask: `[x0, y0, x1, y1]` of the set pixels with x1, y1
/// *inclusive* (the official convention: a one-pixel mask has a zero-size box), `[0; 4]` for
/// an empty mask.
pub fn mask_to_box(mask: &[bool], h: usize, w: usize) -> [u32; 4] {
    let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
    for y in 0..h {
        let row = &mask[y * w..(y + 1) * w];
        if let Some(first) = row.iter().position(|&m| m) {
            let last = row.iter().rposition(|&m| m).unwrap_or(first);
            x0 = x0.min(first);
            x1 = x1.max(last);
            y0 = y0.min(y);
            y1 = y;
        }
    }
    if x0 == usize::MAX {
        return [0; 4];
    }
    [x0 as u32, y0 as u32, x1 as u32, y1 as u32]
}

/// `box_xyxy_to_xywh` (with the inclusive x1, y1 of [`mask_to_box`], w = x1 − x0).
pub fn box_xyxy_to_xywh(b: [f32; 4]) -> [f32; 4] {
    [b[0], b[1], b[2] - b[0], b[3] - b[1]]
}

/// torchvision `nms` / `batched_nms` with one category: indices kept, by decreasing score
/// (ties in input order, torchvision's stable sort). Areas are `(x1 − x0)·(y1 − y0)` in f32,
/// and a box is dropped when its IoU with a kept one is `> iou_threshold`.
pub fn box_nms(boxes: &[[f32; 4]], scores: &[f32], iou_threshold: f64) -> Vec<usize> {
    assert_eq!(boxes.len(), scores.len(), "one score per box");
    let mut order: Vec<usize> = (0..boxes.len()).collect();
    // Descending and stable; NaN scores last (torch sorts NaN as largest, but none occur here:
    // scores are predicted IoUs, 1/area or 0/1).
    order.sort_by(|&a, &b| {
        scores[b]
            .partial_cmp(&scores[a])
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let area = |b: &[f32; 4]| (b[2] - b[0]) * (b[3] - b[1]);
    let mut suppressed = vec![false; boxes.len()];
    let mut keep = Vec::new();
    for (pos, &i) in order.iter().enumerate() {
        if suppressed[i] {
            continue;
        }
        keep.push(i);
        let bi = &boxes[i];
        let area_i = area(bi);
        for &j in &order[pos + 1..] {
            if suppressed[j] {
                continue;
            }
            let bj = &boxes[j];
            let w = (bi[2].min(bj[2]) - bi[0].max(bj[0])).max(0.0);
            let h = (bi[3].min(bj[3]) - bi[1].max(bj[1])).max(0.0);
            let inter = w * h;
            let iou = inter / (area_i + area(bj) - inter);
            if iou as f64 > iou_threshold {
                suppressed[j] = true;
            }
        }
    }
    keep
}

/// `is_box_near_crop_edge` (atol 20 px in the official call): the box, moved back to the
/// image frame, has a side within `atol` of a crop edge that is not also an image edge.
pub fn is_box_near_crop_edge(
    b: [f32; 4],
    crop_box: [usize; 4],
    orig_box: [usize; 4],
    atol: f32,
) -> bool {
    let (dx, dy) = (crop_box[0] as f32, crop_box[1] as f32);
    let b = [b[0] + dx, b[1] + dy, b[2] + dx, b[3] + dy];
    (0..4).any(|k| {
        let near_crop = (b[k] - crop_box[k] as f32).abs() <= atol;
        let near_image = (b[k] - orig_box[k] as f32).abs() <= atol;
        near_crop && !near_image
    })
}

/// An uncompressed run-length encoding as `mask_to_rle_pytorch` writes it: pixels in column-major
/// (Fortran) order, alternating runs starting with a background run (0 when the first pixel is
/// set).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rle {
    /// (h, w)
    pub size: [usize; 2],
    pub counts: Vec<u32>,
}

impl Rle {
    /// `mask_to_rle_pytorch` for one row-major `h·w` mask.
    pub fn from_mask(mask: &[bool], h: usize, w: usize) -> Rle {
        assert_eq!(mask.len(), h * w, "mask is not h·w");
        let mut counts = Vec::new();
        let mut current = false;
        let mut run = 0u32;
        for x in 0..w {
            for y in 0..h {
                let v = mask[y * w + x];
                if v != current {
                    counts.push(run);
                    run = 0;
                    current = v;
                }
                run += 1;
            }
        }
        counts.push(run);
        Rle {
            size: [h, w],
            counts,
        }
    }

    /// `rle_to_mask`: back to a row-major `h·w` mask.
    pub fn to_mask(&self) -> Vec<bool> {
        let [h, w] = self.size;
        let mut mask = vec![false; h * w];
        let mut idx = 0usize;
        let mut value = false;
        for &c in &self.counts {
            if value {
                for i in idx..(idx + c as usize).min(h * w) {
                    mask[(i % h) * w + i / h] = true;
                }
            }
            idx += c as usize;
            value = !value;
        }
        mask
    }

    /// `(start, length)` of every run of set pixels, as column-major pixel indices.
    pub fn set_runs(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        let mut idx = 0usize;
        self.counts.iter().enumerate().filter_map(move |(k, &c)| {
            let start = idx;
            idx += c as usize;
            (k % 2 == 1 && c > 0).then_some((start, c as usize))
        })
    }

    /// This mask, of a region whose top-left pixel is (`x0`, `y0`), placed in an `h`×`w`
    /// frame (0 outside the region), without decoding either: memory stays in the runs.
    pub fn placed(&self, x0: usize, y0: usize, h: usize, w: usize) -> Rle {
        let [rh, rw] = self.size;
        assert!(x0 + rw <= w && y0 + rh <= h, "region outside the frame");
        let mut counts: Vec<u32> = Vec::new();
        // End (exclusive) of the last set run written, in the frame's index.
        let mut end = 0usize;
        for (start, len) in self.set_runs() {
            let mut i = start;
            while i < start + len {
                // A run may span several region columns; each column piece is one frame run.
                let (col, row) = (i / rh, i % rh);
                let n = (rh - row).min(start + len - i);
                let at = (x0 + col) * h + y0 + row;
                match counts.last_mut() {
                    Some(last) if at == end => *last += n as u32,
                    _ => {
                        counts.push((at - end) as u32);
                        counts.push(n as u32);
                    }
                }
                end = at + n;
                i += n;
            }
        }
        if counts.is_empty() || end < h * w {
            counts.push((h * w - end) as u32);
        }
        Rle {
            size: [h, w],
            counts,
        }
    }

    /// `area_from_rle`: the number of set pixels.
    pub fn area(&self) -> u64 {
        self.counts
            .iter()
            .skip(1)
            .step_by(2)
            .map(|&c| c as u64)
            .sum()
    }

    /// The compressed COCO string of this RLE (pycocotools `rleToString`, what
    /// `coco_encode_rle` stores in `counts`): each count, minus the count two before it from
    /// the fourth on, as little-endian 5-bit groups with a continuation bit, offset by '0'.
    pub fn to_coco_string(&self) -> String {
        let mut s = String::new();
        for (i, &c) in self.counts.iter().enumerate() {
            let mut x = c as i64;
            if i > 2 {
                x -= self.counts[i - 2] as i64;
            }
            loop {
                let mut ch = (x & 0x1f) as u8;
                x >>= 5;
                let more = if ch & 0x10 != 0 { x != -1 } else { x != 0 };
                if more {
                    ch |= 0x20;
                }
                s.push((ch + 48) as char);
                if !more {
                    break;
                }
            }
        }
        s
    }

    /// pycocotools `rleFrString`: the inverse of [`Rle::to_coco_string`], checked against the
    /// mask size.
    pub fn from_coco_string(s: &str, h: usize, w: usize) -> Result<Rle, String> {
        let counts = coco_string_counts(s)?;
        let total: u64 = counts.iter().map(|&c| c as u64).sum();
        if total != (h * w) as u64 {
            return Err(format!(
                "COCO RLE covers {total} pixels, the mask has {}",
                h * w
            ));
        }
        Ok(Rle {
            size: [h, w],
            counts,
        })
    }
}

/// The run lengths of a compressed COCO string (pycocotools `rleFrString`), any size.
pub fn coco_string_counts(s: &str) -> Result<Vec<u32>, String> {
    let bytes = s.as_bytes();
    let mut counts: Vec<u32> = Vec::new();
    let mut p = 0;
    while p < bytes.len() {
        let mut x: i64 = 0;
        let mut k = 0;
        loop {
            let Some(&b) = bytes.get(p) else {
                return Err("COCO RLE string ends inside a number".into());
            };
            if !(48..48 + 64).contains(&b) || k > 12 {
                return Err(format!("invalid COCO RLE string at byte {p}"));
            }
            let c = (b - 48) as i64;
            x |= (c & 0x1f) << (5 * k);
            p += 1;
            k += 1;
            if c & 0x20 == 0 {
                if c & 0x10 != 0 {
                    x |= -1i64 << (5 * k);
                }
                break;
            }
        }
        let m = counts.len();
        if m > 2 {
            x += counts[m - 2] as i64;
        }
        counts.push(u32::try_from(x).map_err(|_| "negative run in COCO RLE string")?);
    }
    Ok(counts)
}

/// Which regions [`remove_small_regions`] removes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionMode {
    /// Fill background components (8-connected) smaller than the area.
    Holes,
    /// Drop foreground components (8-connected) smaller than the area, keeping the largest
    /// when all are.
    Islands,
}

/// 8-connected components of the pixels equal to `value`: labels (0 = not `value`, k = the
/// k-th component in raster order of its first pixel, as OpenCV numbers them) and sizes.
fn components_8(mask: &[bool], h: usize, w: usize, value: bool) -> (Vec<u32>, Vec<usize>) {
    let mut labels = vec![0u32; h * w];
    let mut sizes = Vec::new();
    let mut queue = VecDeque::new();
    for start in 0..h * w {
        if mask[start] != value || labels[start] != 0 {
            continue;
        }
        let label = sizes.len() as u32 + 1;
        labels[start] = label;
        queue.push_back(start);
        let mut size = 0;
        while let Some(p) = queue.pop_front() {
            size += 1;
            let (y, x) = ((p / w) as isize, (p % w) as isize);
            for dy in -1..=1isize {
                for dx in -1..=1isize {
                    let (ny, nx) = (y + dy, x + dx);
                    if ny < 0 || nx < 0 || ny >= h as isize || nx >= w as isize {
                        continue;
                    }
                    let q = ny as usize * w + nx as usize;
                    if mask[q] == value && labels[q] == 0 {
                        labels[q] = label;
                        queue.push_back(q);
                    }
                }
            }
        }
        sizes.push(size);
    }
    (labels, sizes)
}

/// `remove_small_regions`: the mask with small holes filled or small islands removed, and
/// whether anything was small (the official "changed" flag, true even when the kept
/// largest island leaves the mask as it was).
pub fn remove_small_regions(
    mask: &[bool],
    h: usize,
    w: usize,
    area_thresh: f64,
    mode: RegionMode,
) -> (Vec<bool>, bool) {
    let holes = mode == RegionMode::Holes;
    // Components of the background for holes, of the object for islands.
    let (labels, sizes) = components_8(mask, h, w, !holes);
    let small: Vec<bool> = sizes.iter().map(|&s| (s as f64) < area_thresh).collect();
    if !small.iter().any(|&s| s) {
        return (mask.to_vec(), false);
    }
    let out = if holes {
        // Keep label 0 (the object) and the small background components.
        labels
            .iter()
            .map(|&l| l == 0 || small[l as usize - 1])
            .collect()
    } else {
        let mut keep: Vec<bool> = small.iter().map(|&s| !s).collect();
        if !keep.iter().any(|&k| k) {
            // Every island is small: keep the largest (the first of equals, as np.argmax).
            let largest = (0..sizes.len()).fold(0, |b, i| if sizes[i] > sizes[b] { i } else { b });
            keep[largest] = true;
        }
        labels
            .iter()
            .map(|&l| l != 0 && keep[l as usize - 1])
            .collect()
    };
    (out, true)
}

#[cfg(test)]
#[path = "amg_tests.rs"]
mod tests;
