//! Segmentation metrics and the geometry the evaluation protocol needs.

/// Intersection over union of two binary masks (1.0 when both are empty).
pub fn iou(a: &[bool], b: &[bool]) -> f64 {
    let (mut inter, mut uni) = (0usize, 0usize);
    for (&x, &y) in a.iter().zip(b) {
        inter += (x && y) as usize;
        uni += (x || y) as usize;
    }
    if uni == 0 {
        1.0
    } else {
        inter as f64 / uni as f64
    }
}

/// Dice coefficient 2|A∩B| / (|A|+|B|) (1.0 when both are empty).
pub fn dice(a: &[bool], b: &[bool]) -> f64 {
    let (mut inter, mut sa, mut sb) = (0usize, 0usize, 0usize);
    for (&x, &y) in a.iter().zip(b) {
        inter += (x && y) as usize;
        sa += x as usize;
        sb += y as usize;
    }
    if sa + sb == 0 {
        1.0
    } else {
        2.0 * inter as f64 / (sa + sb) as f64
    }
}

/// Tight box (x0, y0, x1, y1), inclusive min/max pixel coordinates; None for an empty mask.
pub fn bbox(mask: &[bool], width: usize) -> Option<[usize; 4]> {
    let mut b: Option<[usize; 4]> = None;
    for (i, _) in mask.iter().enumerate().filter(|(_, m)| **m) {
        let (x, y) = (i % width, i / width);
        b = Some(match b {
            None => [x, y, x, y],
            Some([x0, y0, x1, y1]) => [x0.min(x), y0.min(y), x1.max(x), y1.max(y)],
        });
    }
    b
}

/// 1-D squared distance transform (Felzenszwalb & Huttenlocher).
fn edt_1d(f: &[f64], out: &mut [f64]) {
    let n = f.len();
    let mut v = vec![0usize; n];
    let mut z = vec![0f64; n + 1];
    let mut k = 0;
    z[0] = f64::NEG_INFINITY;
    z[1] = f64::INFINITY;
    for q in 1..n {
        loop {
            let p = v[k];
            let s = ((f[q] + (q * q) as f64) - (f[p] + (p * p) as f64))
                / (2.0 * q as f64 - 2.0 * p as f64);
            if s <= z[k] && k > 0 {
                k -= 1;
                continue;
            }
            if s <= z[k] {
                // k == 0 and s <= -inf cannot happen; fall through to insert.
            }
            k += 1;
            v[k] = q;
            z[k] = s;
            z[k + 1] = f64::INFINITY;
            break;
        }
    }
    let mut k = 0;
    for (q, o) in out.iter_mut().enumerate() {
        while z[k + 1] < q as f64 {
            k += 1;
        }
        let p = v[k];
        *o = (q as f64 - p as f64).powi(2) + f[p];
    }
}

/// Exact Euclidean distance from each object pixel to the nearest background pixel
/// (`scipy.ndimage.distance_transform_edt`); pixels outside the image count as background
/// only when the mask touches no background at all.
pub fn distance_transform(mask: &[bool], width: usize, height: usize) -> Vec<f64> {
    let inf = 1e20;
    let mut g = vec![0f64; width * height];
    let mut col = vec![0f64; height];
    let mut out_col = vec![0f64; height];
    for x in 0..width {
        for y in 0..height {
            col[y] = if mask[y * width + x] { inf } else { 0.0 };
        }
        edt_1d(&col, &mut out_col);
        for y in 0..height {
            g[y * width + x] = out_col[y];
        }
    }
    let mut d = vec![0f64; width * height];
    let mut out_row = vec![0f64; width];
    for y in 0..height {
        edt_1d(&g[y * width..(y + 1) * width], &mut out_row);
        for x in 0..width {
            d[y * width + x] = out_row[x].sqrt();
        }
    }
    d
}

/// The object's most interior pixel (first maximum of the distance transform in row-major
/// order), as (x, y).
pub fn interior_point(mask: &[bool], width: usize, height: usize) -> Option<(usize, usize)> {
    let d = distance_transform(mask, width, height);
    let mut best: Option<(usize, f64)> = None;
    for (i, &v) in d.iter().enumerate() {
        if mask[i] && best.is_none_or(|(_, b)| v > b) {
            best = Some((i, v));
        }
    }
    best.map(|(i, _)| (i % width, i / width))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iou_and_dice_by_hand() {
        let a = [true, true, false, false];
        let b = [true, false, true, false];
        assert!((iou(&a, &b) - 1.0 / 3.0).abs() < 1e-12);
        assert!((dice(&a, &b) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn edt_matches_brute_force() {
        let (w, h) = (13, 9);
        let mask: Vec<bool> = (0..w * h)
            .map(|i| {
                let (x, y) = ((i % w) as i64, (i / w) as i64);
                (x - 6).pow(2) + (y - 4).pow(2) < 14 || (x == 11 && y > 1)
            })
            .collect();
        let d = distance_transform(&mask, w, h);
        for i in 0..w * h {
            let (x, y) = ((i % w) as f64, (i / w) as f64);
            let brute = if !mask[i] {
                0.0
            } else {
                (0..w * h)
                    .filter(|&j| !mask[j])
                    .map(|j| (((j % w) as f64 - x).powi(2) + ((j / w) as f64 - y).powi(2)).sqrt())
                    .fold(f64::INFINITY, f64::min)
            };
            assert!(
                (d[i] - brute).abs() < 1e-9,
                "pixel {i}: {} vs {brute}",
                d[i]
            );
        }
    }

    #[test]
    fn bbox_is_inclusive() {
        let w = 5;
        let mut m = vec![false; 25];
        m[7] = true; // (2, 1)
        m[18] = true; // (3, 3)
        assert_eq!(bbox(&m, w), Some([2, 1, 3, 3]));
    }
}
