//! A mask kept over its bounding box only, so what the app holds per proposal grows with the
//! object, not with the image (a large tiled image may carry hundreds of proposals).

use crate::metrics;
use crate::sam::amg::Rle;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoxMask {
    /// x0, y0, x1, y1 (inclusive pixel bounds in the image).
    pub bbox: [u32; 4],
    /// Row-major over the box.
    pub bits: Vec<bool>,
}

impl BoxMask {
    /// Decodes the part of `rle` inside `bbox` (clamped to the mask), visiting only set runs.
    pub fn from_rle(rle: &Rle, bbox: [u32; 4]) -> BoxMask {
        let [h, w] = rle.size;
        let x1 = (bbox[2] as usize).min(w.saturating_sub(1));
        let y1 = (bbox[3] as usize).min(h.saturating_sub(1));
        let (x0, y0) = ((bbox[0] as usize).min(x1), (bbox[1] as usize).min(y1));
        let bw = x1 - x0 + 1;
        let mut bits = vec![false; bw * (y1 - y0 + 1)];
        for (start, len) in rle.set_runs() {
            // Column-major: index i is pixel (x = i / h, y = i % h).
            for i in start..(start + len).min(h * w) {
                let (x, y) = (i / h, i % h);
                if (x0..=x1).contains(&x) && (y0..=y1).contains(&y) {
                    bits[(y - y0) * bw + (x - x0)] = true;
                }
            }
        }
        BoxMask {
            bbox: [x0 as u32, y0 as u32, x1 as u32, y1 as u32],
            bits,
        }
    }

    pub fn width(&self) -> usize {
        (self.bbox[2] - self.bbox[0]) as usize + 1
    }

    pub fn height(&self) -> usize {
        (self.bbox[3] - self.bbox[1]) as usize + 1
    }

    /// Whether image pixel (x, y) is set (false outside the box).
    pub fn get(&self, x: usize, y: usize) -> bool {
        let [x0, y0, x1, y1] = self.bbox.map(|v| v as usize);
        (x0..=x1).contains(&x)
            && (y0..=y1).contains(&y)
            && self.bits[(y - y0) * self.width() + (x - x0)]
    }

    /// The row-major `w·h` image mask (for an accepted proposal, which becomes an object).
    pub fn to_full(&self, w: usize, h: usize) -> Vec<bool> {
        let mut full = vec![false; w * h];
        let bw = self.width();
        for (r, row) in self.bits.chunks(bw).enumerate() {
            let y = self.bbox[1] as usize + r;
            if y >= h {
                break;
            }
            for (c, &v) in row.iter().enumerate() {
                let x = self.bbox[0] as usize + c;
                if v && x < w {
                    full[y * w + x] = true;
                }
            }
        }
        full
    }

    /// IoU with a row-major image mask of width `w` that is empty outside `obox`: both read
    /// over the union of the two boxes only, then [`metrics::iou`]. 0 for disjoint boxes.
    pub fn iou_with(&self, other: &[bool], obox: [u32; 4], w: usize) -> f32 {
        let a = self.bbox;
        if a[2] < obox[0] || obox[2] < a[0] || a[3] < obox[1] || obox[3] < a[1] {
            return 0.0;
        }
        let (x0, y0) = (a[0].min(obox[0]) as usize, a[1].min(obox[1]) as usize);
        let (x1, y1) = (a[2].max(obox[2]) as usize, a[3].max(obox[3]) as usize);
        let pixels =
            (y0..=y1).flat_map(|y| (x0..=x1.min(w.saturating_sub(1))).map(move |x| (x, y)));
        let (mine, theirs): (Vec<bool>, Vec<bool>) = pixels
            .map(|(x, y)| (self.get(x, y), other.get(y * w + x) == Some(&true)))
            .unzip();
        metrics::iou(&mine, &theirs) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Against the full decode: every pixel of random masks, boxes that cut through objects.
    #[test]
    fn box_decode_matches_the_full_mask_inside_the_box_and_round_trips() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..200 {
            let (h, w) = (rng.random_range(1..9), rng.random_range(1..9));
            let full: Vec<bool> = (0..h * w).map(|_| rng.random_bool(0.4)).collect();
            let rle = Rle::from_mask(&full, h, w);
            let x0 = rng.random_range(0..w) as u32;
            let y0 = rng.random_range(0..h) as u32;
            let bbox = [x0, y0, rng.random_range(x0..w as u32 + 3), y0 + 2];
            let b = BoxMask::from_rle(&rle, bbox);
            for y in 0..h {
                for x in 0..w {
                    let inside = x as u32 >= b.bbox[0]
                        && x as u32 <= b.bbox[2]
                        && y as u32 >= b.bbox[1]
                        && y as u32 <= b.bbox[3];
                    assert_eq!(b.get(x, y), inside && full[y * w + x], "({x},{y})");
                }
            }
            let whole = BoxMask::from_rle(&rle, [0, 0, w as u32 - 1, h as u32 - 1]);
            assert_eq!(whole.to_full(w, h), full);
        }
    }

    #[test]
    fn iou_counts_the_union_of_the_boxes() {
        // 4×3 image; a = columns 0-1 of row 1, b = columns 1-2 of row 1: IoU 1/3.
        let w = 4;
        let mut a = vec![false; 12];
        let mut b = vec![false; 12];
        (a[4], a[5]) = (true, true);
        (b[5], b[6]) = (true, true);
        let boxed = BoxMask::from_rle(&Rle::from_mask(&a, 3, w), [0, 1, 1, 1]);
        assert!((boxed.iou_with(&b, [1, 1, 2, 1], w) - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(boxed.iou_with(&a, [0, 1, 1, 1], w), 1.0);
        let mut c = vec![false; 12];
        c[11] = true;
        assert_eq!(boxed.iou_with(&c, [3, 2, 3, 2], w), 0.0);
    }
}
