//! OpenCV's `cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)` on 8-bit RGB, which
//! LiteMedSAM's official preprocessing (`resize_longest_side` in `CVPR24_LiteMedSAM_infer.py`)
//! calls. Ported from `imgproc/src/resize.cpp` so the model sees the pixels it was trained on:
//!
//! * shrinking by an integer factor: `resizeAreaFast` (2×2 blocks: `(sum + 2) >> 2`, as its
//!   SIMD and scalar paths both do; other factors: `sum * (1/area)` rounded half to even);
//! * other shrinking: `resizeArea_` with `computeResizeAreaTab`'s fractional cell weights,
//!   accumulated in `f32`;
//! * enlarging: the bilinear path with INTER_AREA's own coefficients, in 11-bit fixed point
//!   (`HResizeLinear` + `VResizeLinearVec_32s8u`).

use image::RgbImage;

const CN: usize = 3;

/// `cvRound` on a float result that `saturate_cast<uchar>` then clamps.
fn sat_u8(v: f32) -> u8 {
    v.round_ties_even().clamp(0.0, 255.0) as u8
}

/// `cv2.resize(..., interpolation=cv2.INTER_AREA)` to `out_w × out_h`.
pub fn resize_area(img: &RgbImage, out_w: usize, out_h: usize) -> RgbImage {
    let (in_w, in_h) = (img.width() as usize, img.height() as usize);
    let out = if in_w == out_w && in_h == out_h {
        img.as_raw().clone()
    } else {
        let scale_x = in_w as f64 / out_w as f64;
        let scale_y = in_h as f64 / out_h as f64;
        if scale_x >= 1.0 && scale_y >= 1.0 {
            let (ix, iy) = (scale_x.round() as usize, scale_y.round() as usize);
            let fast = (scale_x - ix as f64).abs() < f64::EPSILON
                && (scale_y - iy as f64).abs() < f64::EPSILON;
            if fast {
                area_fast(img.as_raw(), in_w, out_w, out_h, ix, iy)
            } else {
                area(img.as_raw(), in_w, in_h, out_w, out_h, scale_x, scale_y)
            }
        } else {
            linear_area_mode(img.as_raw(), in_w, in_h, out_w, out_h)
        }
    };
    RgbImage::from_raw(out_w as u32, out_h as u32, out).expect("buffer size")
}

fn area_fast(src: &[u8], in_w: usize, out_w: usize, out_h: usize, sx: usize, sy: usize) -> Vec<u8> {
    let mut out = vec![0u8; out_w * out_h * CN];
    let area = sx * sy;
    let inv = 1.0f32 / area as f32;
    for dy in 0..out_h {
        for dx in 0..out_w {
            for c in 0..CN {
                let mut sum = 0u32;
                for y in 0..sy {
                    for x in 0..sx {
                        sum += src[((dy * sy + y) * in_w + dx * sx + x) * CN + c] as u32;
                    }
                }
                out[(dy * out_w + dx) * CN + c] = if sx == 2 && sy == 2 {
                    ((sum + 2) >> 2) as u8
                } else {
                    sat_u8(sum as f32 * inv)
                };
            }
        }
    }
    out
}

/// `computeResizeAreaTab`: (destination index, source index, weight) triples.
fn area_tab(ssize: usize, dsize: usize, scale: f64) -> Vec<(usize, usize, f32)> {
    let mut tab = Vec::with_capacity(ssize * 2);
    for dx in 0..dsize {
        let fsx1 = dx as f64 * scale;
        let fsx2 = fsx1 + scale;
        let cell = scale.min(ssize as f64 - fsx1);
        let mut sx1 = fsx1.ceil() as i64;
        let mut sx2 = fsx2.floor() as i64;
        sx2 = sx2.min(ssize as i64 - 1);
        sx1 = sx1.min(sx2);
        if sx1 as f64 - fsx1 > 1e-3 {
            tab.push((dx, (sx1 - 1) as usize, ((sx1 as f64 - fsx1) / cell) as f32));
        }
        for sx in sx1..sx2 {
            tab.push((dx, sx as usize, (1.0 / cell) as f32));
        }
        if fsx2 - sx2 as f64 > 1e-3 {
            let a = (fsx2 - sx2 as f64).min(1.0).min(cell) / cell;
            tab.push((dx, sx2 as usize, a as f32));
        }
    }
    tab
}

fn area(
    src: &[u8],
    in_w: usize,
    in_h: usize,
    out_w: usize,
    out_h: usize,
    scale_x: f64,
    scale_y: f64,
) -> Vec<u8> {
    let xtab = area_tab(in_w, out_w, scale_x);
    let ytab = area_tab(in_h, out_h, scale_y);
    let width = out_w * CN;
    let mut out = vec![0u8; out_h * width];
    let mut buf = vec![0f32; width];
    let mut sum = vec![0f32; width];
    let mut prev_dy = ytab.first().map(|t| t.0).unwrap_or(0);
    for &(dy, sy, beta) in &ytab {
        buf.fill(0.0);
        let row = &src[sy * in_w * CN..(sy + 1) * in_w * CN];
        for &(dx, sx, alpha) in &xtab {
            for c in 0..CN {
                buf[dx * CN + c] += row[sx * CN + c] as f32 * alpha;
            }
        }
        if dy != prev_dy {
            let d = &mut out[prev_dy * width..(prev_dy + 1) * width];
            for x in 0..width {
                d[x] = sat_u8(sum[x]);
                sum[x] = beta * buf[x];
            }
            prev_dy = dy;
        } else {
            for x in 0..width {
                sum[x] += beta * buf[x];
            }
        }
    }
    let d = &mut out[prev_dy * width..(prev_dy + 1) * width];
    for x in 0..width {
        d[x] = sat_u8(sum[x]);
    }
    out
}

/// Source index and 11-bit weights of INTER_AREA's enlarging coefficients along one axis.
fn linear_tab(ssize: usize, dsize: usize) -> Vec<(usize, [i32; 2])> {
    let scale = ssize as f64 / dsize as f64;
    let inv_scale = dsize as f64 / ssize as f64;
    (0..dsize)
        .map(|d| {
            let mut sx = (d as f64 * scale).floor() as i64;
            let mut fx = ((d + 1) as f64 - (sx + 1) as f64 * inv_scale) as f32;
            fx = if fx <= 0.0 { 0.0 } else { fx - fx.floor() };
            if sx < 0 {
                (fx, sx) = (0.0, 0);
            }
            if sx + 1 >= ssize as i64 && sx >= ssize as i64 - 1 {
                (fx, sx) = (0.0, ssize as i64 - 1);
            }
            let w = |v: f32| (v * 2048.0).round_ties_even() as i32;
            (sx as usize, [w(1.0 - fx), w(fx)])
        })
        .collect()
}

fn linear_area_mode(src: &[u8], in_w: usize, in_h: usize, out_w: usize, out_h: usize) -> Vec<u8> {
    let xt = linear_tab(in_w, out_w);
    let yt = linear_tab(in_h, out_h);
    let width = out_w * CN;
    // Horizontal pass of one source row (values × 2048).
    let hrow = |sy: usize| -> Vec<i32> {
        let row = &src[sy * in_w * CN..(sy + 1) * in_w * CN];
        let mut d = vec![0i32; width];
        for (dx, &(sx, a)) in xt.iter().enumerate() {
            let sx1 = (sx + 1).min(in_w - 1);
            for c in 0..CN {
                d[dx * CN + c] = row[sx * CN + c] as i32 * a[0] + row[sx1 * CN + c] as i32 * a[1];
            }
        }
        d
    };
    let mut out = vec![0u8; out_h * width];
    for (dy, &(sy, b)) in yt.iter().enumerate() {
        let (r0, r1) = (hrow(sy), hrow((sy + 1).min(in_h - 1)));
        let d = &mut out[dy * width..(dy + 1) * width];
        // `VResizeLinearVec_32s8u`: each row keeps 12 bits before a high-half multiply, then
        // (sum + 2) >> 2. cv2 5.1 gives this on every column (its scalar formula, which rounds
        // the exact sum, differed on 970 of 23028 values of the enlarging test case).
        for (k, v) in d.iter_mut().enumerate() {
            let m = |s: i32, w: i32| ((s >> 4) * w) >> 16;
            *v = ((m(r0[k], b[0]) + m(r1[k], b[1]) + 2) >> 2).clamp(0, 255) as u8;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(w: u32, h: u32, f: impl Fn(u32, u32, u32) -> u8) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| image::Rgb([0, 1, 2].map(|c| f(x, y, c))))
    }

    #[test]
    fn halving_rounds_half_up_like_resize_area_fast() {
        // 2×2 blocks {1, 2, 3, 4} → (10 + 2) >> 2 = 3 (2.5 rounds up); {0, 0, 0, 1} → 0.
        let a = img(4, 2, |x, y, _| {
            if x < 2 {
                (1 + x + 2 * y) as u8
            } else {
                (x == 3 && y == 1) as u8
            }
        });
        let r = resize_area(&a, 2, 1);
        assert_eq!(r.get_pixel(0, 0).0, [3, 3, 3]);
        assert_eq!(r.get_pixel(1, 0).0, [0, 0, 0]);
    }

    #[test]
    fn fractional_cells_weight_by_overlap() {
        // 3 → 2 columns: cell 1.5 px; dst 0 = (a + 0.5 b) / 1.5, dst 1 = (0.5 b + c) / 1.5.
        let a = img(3, 1, |x, _, _| [30u8, 60, 90][x as usize]);
        let r = resize_area(&a, 2, 1);
        assert_eq!(r.get_pixel(0, 0).0[0], 40);
        assert_eq!(r.get_pixel(1, 0).0[0], 80);
    }
}
