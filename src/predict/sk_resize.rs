//! scikit-image's `transform.resize(img, (h, w), order=3, preserve_range=True,
//! anti_aliasing=True).astype(np.uint8)` on 8-bit RGB, which MedSAM's official inference
//! (`MedSAM_Inference.py`) uses to stretch an image to 1024². Ported from scikit-image 0.26 and
//! scipy.ndimage: a Gaussian pre-blur with σ = (in/out − 1)/2 on shrunk axes
//! (`gaussian_filter`, mode `mirror`, truncate 4), cubic B-spline prefiltering and
//! interpolation on every axis (`zoom`, `grid_mode=True`, mode `mirror`), clipping to the
//! input's range, then truncation to `u8`. Computed in `f64` like scipy; the summation order
//! differs, so a value within ~1e-12 of an integer may truncate one level apart.

use image::RgbImage;

const CN: usize = 3;

/// scipy's `mirror` boundary: reflect about the edge samples (d c b | a b c d | c b a).
fn mirror(i: i64, len: usize) -> usize {
    if len == 1 {
        return 0;
    }
    let period = 2 * (len as i64 - 1);
    let m = i.rem_euclid(period);
    (if m >= len as i64 { period - m } else { m }) as usize
}

/// A strided view of one line of `data`: `len` values, `stride` apart, from `start`.
fn line(data: &[f64], start: usize, stride: usize, len: usize) -> Vec<f64> {
    (0..len).map(|i| data[start + i * stride]).collect()
}

/// Runs `f` on every line of a (H, W, C) array along `axis`, writing what it returns.
fn along_axis(
    data: &[f64],
    shape: [usize; 3],
    axis: usize,
    out_len: usize,
    f: impl Fn(&[f64]) -> Vec<f64>,
) -> (Vec<f64>, [usize; 3]) {
    let mut out_shape = shape;
    out_shape[axis] = out_len;
    let strides = |s: [usize; 3]| [s[1] * s[2], s[2], 1];
    let (si, so) = (strides(shape), strides(out_shape));
    let mut out = vec![0f64; out_shape.iter().product()];
    let others: Vec<usize> = (0..3).filter(|&a| a != axis).collect();
    for i in 0..shape[others[0]] {
        for j in 0..shape[others[1]] {
            let base_in = i * si[others[0]] + j * si[others[1]];
            let base_out = i * so[others[0]] + j * so[others[1]];
            let r = f(&line(data, base_in, si[axis], shape[axis]));
            for (k, v) in r.into_iter().enumerate() {
                out[base_out + k * so[axis]] = v;
            }
        }
    }
    (out, out_shape)
}

/// `scipy.ndimage.gaussian_filter1d(mode='mirror', truncate=4.0)`.
fn gaussian_line(x: &[f64], sigma: f64) -> Vec<f64> {
    let radius = (4.0 * sigma + 0.5) as i64;
    let s2 = sigma * sigma;
    let mut w: Vec<f64> = (-radius..=radius)
        .map(|t| (-0.5 / s2 * (t * t) as f64).exp())
        .collect();
    let sum: f64 = w.iter().sum();
    w.iter_mut().for_each(|v| *v /= sum);
    (0..x.len() as i64)
        .map(|i| {
            (-radius..=radius)
                .map(|t| w[(t + radius) as usize] * x[mirror(i + t, x.len())])
                .sum()
        })
        .collect()
}

/// `scipy.ndimage.spline_filter1d(order=3, mode='mirror')`: cubic B-spline coefficients.
fn spline_coeffs(x: &[f64]) -> Vec<f64> {
    let n = x.len();
    let mut c: Vec<f64> = x.to_vec();
    if n < 2 {
        return c;
    }
    let z = 3f64.sqrt() - 2.0;
    let lambda = (1.0 - z) * (1.0 - 1.0 / z);
    c.iter_mut().for_each(|v| *v *= lambda);
    // `_init_causal_mirror`
    let z_n_1 = z.powi(n as i32 - 1);
    let mut z_i = z;
    c[0] += z_n_1 * c[n - 1];
    for i in 1..n - 1 {
        c[0] += z_i * (c[i] + z_n_1 * c[n - 1 - i]);
        z_i *= z;
    }
    c[0] /= 1.0 - z_n_1 * z_n_1;
    for j in 1..n {
        c[j] += z * c[j - 1];
    }
    // `_init_anticausal_mirror`
    c[n - 1] = (z * c[n - 2] + c[n - 1]) * z / (z * z - 1.0);
    for j in (0..n - 1).rev() {
        c[j] = z * (c[j + 1] - c[j]);
    }
    c
}

/// Cubic B-spline evaluation of coefficients `c` at `out_len` points of `zoom`'s grid mode:
/// output i samples input coordinate (i + 0.5) · len / out_len − 0.5.
fn spline_zoom_line(c: &[f64], out_len: usize) -> Vec<f64> {
    let len = c.len();
    let zoom = len as f64 / out_len as f64;
    (0..out_len)
        .map(|i| {
            let mut cc = (i as f64 + 0.5) * zoom - 0.5;
            // `map_coordinate` for mirror: fold coordinates outside [0, len − 1] back in.
            if len > 1 && (cc < 0.0 || cc > (len - 1) as f64) {
                let sz2 = 2.0 * (len - 1) as f64;
                cc = cc.rem_euclid(sz2);
                if cc > (len - 1) as f64 {
                    cc = sz2 - cc;
                }
            } else if len == 1 {
                cc = 0.0;
            }
            let f = cc.floor();
            let t = cc - f;
            let s = 1.0 - t;
            let w = [
                s * s * s / 6.0,
                (3.0 * t * t * t - 6.0 * t * t + 4.0) / 6.0,
                (3.0 * s * s * s - 6.0 * s * s + 4.0) / 6.0,
                t * t * t / 6.0,
            ];
            let start = f as i64 - 1;
            (0..4)
                .map(|k| w[k] * c[mirror(start + k as i64, len)])
                .sum()
        })
        .collect()
}

/// `skimage.transform.resize(img, (out_h, out_w), order=3, preserve_range=True,
/// anti_aliasing=True).astype(np.uint8)`.
pub fn resize_skimage_cubic(img: &RgbImage, out_w: usize, out_h: usize) -> RgbImage {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let src: Vec<f64> = img.as_raw().iter().map(|&v| v as f64).collect();
    let (lo, hi) = src
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    let mut data = src;
    let mut shape = [h, w, CN];
    // Anti-aliasing blur on shrunk axes (σ = 0 axes are skipped, as scipy does).
    for (axis, out) in [(0, out_h), (1, out_w)] {
        let sigma = ((shape[axis] as f64 / out as f64) - 1.0) / 2.0;
        if sigma > 1e-15 {
            (data, shape) =
                along_axis(&data, shape, axis, shape[axis], |l| gaussian_line(l, sigma));
        }
    }
    // B-spline prefilter on every axis (channels included), then interpolate per axis.
    for axis in 0..3 {
        (data, shape) = along_axis(&data, shape, axis, shape[axis], spline_coeffs);
    }
    for (axis, out) in [(0, out_h), (1, out_w), (2, CN)] {
        (data, shape) = along_axis(&data, shape, axis, out, |l| spline_zoom_line(l, out));
    }
    let raw: Vec<u8> = data.iter().map(|&v| v.clamp(lo, hi) as u8).collect();
    RgbImage::from_raw(out_w as u32, out_h as u32, raw).expect("buffer size")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_reflects_about_edge_samples() {
        let m: Vec<usize> = (-3..7).map(|i| mirror(i, 4)).collect();
        assert_eq!(m, [3, 2, 1, 0, 1, 2, 3, 2, 1, 0]);
    }

    #[test]
    fn spline_round_trip_reproduces_samples() {
        // Prefilter then evaluate at the samples themselves (zoom 1): the identity.
        let x = [3.0, 7.0, 1.0, 250.0, 0.0, 42.0];
        let y = spline_zoom_line(&spline_coeffs(&x), x.len());
        for (a, b) in x.iter().zip(&y) {
            assert!((a - b).abs() < 1e-9, "{a} vs {b}");
        }
    }

    #[test]
    fn gaussian_weights_sum_to_one_and_keep_constants() {
        let y = gaussian_line(&[5.0; 9], 1.3);
        assert!(y.iter().all(|v| (v - 5.0).abs() < 1e-12));
    }
}
