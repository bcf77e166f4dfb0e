//! Mirrors `segment_anything/utils/transforms.py` (`ResizeLongestSide`) and the input
//! normalisation/padding of `Sam.preprocess`. The resize reproduces PIL's bilinear resampling
//! (what the official `apply_image` calls through torchvision) bit for bit, fixed-point
//! arithmetic included, so our model sees exactly the pixels the official predictor does.

use image::RgbImage;

use super::cv_resize::resize_area;
use super::sk_resize::resize_skimage_cubic;
use crate::sam::{ModelFamily, SamConfig};

/// `ResizeLongestSide.get_preprocess_shape`: (h, w) -> (new_h, new_w).
pub fn get_preprocess_shape(h: usize, w: usize, long_side: usize) -> (usize, usize) {
    let scale = long_side as f64 / h.max(w) as f64;
    let (nh, nw) = (h as f64 * scale, w as f64 * scale);
    ((nh + 0.5) as usize, (nw + 0.5) as usize)
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// PIL `precompute_coeffs` for the bilinear (triangle) filter, in 8-bit fixed point.
fn coeffs(in_size: usize, out_size: usize) -> (usize, Vec<(usize, usize)>, Vec<i32>) {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = 1.0 * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut kk = vec![0i32; out_size * ksize];
    let mut k = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = (((center + support + 0.5) as i64).min(in_size as i64) as usize) - xmin;
        let mut ww = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(xmax) {
            let t = ((x + xmin) as f64 - center + 0.5) * ss;
            let t = t.abs();
            let w = if t < 1.0 { 1.0 - t } else { 0.0 };
            *kx = w;
            ww += w;
        }
        for x in 0..ksize {
            let v = if x < xmax && ww != 0.0 {
                k[x] / ww
            } else {
                0.0
            };
            let f = v * (1u32 << PRECISION_BITS) as f64;
            kk[xx * ksize + x] = if v < 0.0 {
                (-0.5 + f) as i32
            } else {
                (0.5 + f) as i32
            };
        }
        bounds.push((xmin, xmax));
    }
    (ksize, bounds, kk)
}

#[inline]
fn clip8(v: i32) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// PIL `Image.resize((w, h), Image.BILINEAR)` on an RGB image.
pub fn resize_bilinear_pil(img: &RgbImage, out_w: usize, out_h: usize) -> RgbImage {
    let (in_w, in_h) = (img.width() as usize, img.height() as usize);
    if in_w == out_w && in_h == out_h {
        return img.clone();
    }
    let src = img.as_raw();
    // Horizontal pass first (into only the rows the vertical pass uses), then vertical.
    let (kh, bh, kkh) = coeffs(in_w, out_w);
    let (kv, bv, kkv) = coeffs(in_h, out_h);
    let need_h = in_w != out_w;
    let need_v = in_h != out_h;
    let (tmp, tmp_w, row0, tmp_rows) = if need_h {
        let first = bv[0].0;
        let last = bv[out_h - 1].0 + bv[out_h - 1].1;
        let (first, last) = if need_v { (first, last) } else { (0, in_h) };
        let rows = last - first;
        let mut t = vec![0u8; rows * out_w * 3];
        for y in 0..rows {
            let srow = &src[(y + first) * in_w * 3..(y + first + 1) * in_w * 3];
            for xx in 0..out_w {
                let (xmin, xmax) = bh[xx];
                let k = &kkh[xx * kh..xx * kh + kh];
                for c in 0..3 {
                    let mut ss = 1i32 << (PRECISION_BITS - 1);
                    for x in 0..xmax {
                        ss += srow[(x + xmin) * 3 + c] as i32 * k[x];
                    }
                    t[(y * out_w + xx) * 3 + c] = clip8(ss);
                }
            }
        }
        (t, out_w, first, rows)
    } else {
        (src.to_vec(), in_w, 0, in_h)
    };
    let _ = tmp_rows;
    if !need_v {
        return RgbImage::from_raw(out_w as u32, out_h as u32, tmp).expect("buffer size");
    }
    let mut out = vec![0u8; out_h * out_w * 3];
    for yy in 0..out_h {
        let (ymin, ymax) = bv[yy];
        let ymin = ymin - row0;
        let k = &kkv[yy * kv..yy * kv + kv];
        for xx in 0..tmp_w {
            for c in 0..3 {
                let mut ss = 1i32 << (PRECISION_BITS - 1);
                for y in 0..ymax {
                    ss += tmp[((y + ymin) * tmp_w + xx) * 3 + c] as i32 * k[y];
                }
                out[(yy * out_w + xx) * 3 + c] = clip8(ss);
            }
        }
    }
    RgbImage::from_raw(out_w as u32, out_h as u32, out).expect("buffer size")
}

/// The model input for one image.
#[derive(Clone, Debug)]
pub struct Preprocessed {
    /// (3, img, img) normalised and zero-padded bottom/right, row-major.
    pub data: Vec<f32>,
    /// Size after resizing, before padding: (h, w).
    pub input_size: [usize; 2],
    /// Original image size: (h, w).
    pub original_size: [usize; 2],
}

/// `ResizeLongestSide.apply_image` + `Sam.preprocess`.
pub fn preprocess(img: &RgbImage, img_size: usize, mean: [f32; 3], std: [f32; 3]) -> Preprocessed {
    let (h, w) = (img.height() as usize, img.width() as usize);
    let (nh, nw) = get_preprocess_shape(h, w, img_size);
    let resized = resize_bilinear_pil(img, nw, nh);
    let mut data = vec![0f32; 3 * img_size * img_size];
    let raw = resized.as_raw();
    for y in 0..nh {
        for x in 0..nw {
            for c in 0..3 {
                let v = raw[(y * nw + x) * 3 + c] as f32;
                data[(c * img_size + y) * img_size + x] = (v - mean[c]) / std[c];
            }
        }
    }
    Preprocessed {
        data,
        input_size: [nh, nw],
        original_size: [h, w],
    }
}

/// `apply_coords`: original pixel (x, y) -> model input frame.
pub fn apply_coords(xy: [f64; 2], original_size: [usize; 2], img_size: usize) -> [f32; 2] {
    let [oh, ow] = original_size;
    let (nh, nw) = get_preprocess_shape(oh, ow, img_size);
    [
        (xy[0] * (nw as f64 / ow as f64)) as f32,
        (xy[1] * (nh as f64 / oh as f64)) as f32,
    ]
}

/// `apply_boxes`: x0, y0, x1, y1 in original pixels -> model input frame.
pub fn apply_box(b: [f64; 4], original_size: [usize; 2], img_size: usize) -> [f32; 4] {
    let p = apply_coords([b[0], b[1]], original_size, img_size);
    let q = apply_coords([b[2], b[3]], original_size, img_size);
    [p[0], p[1], q[0], q[1]]
}

// ---------------------------------------------------------------------------------------------
// Per-family processing: the loaded model's family picks it, so no caller chooses.

/// Size of the image inside the model input frame, (h, w): SAM's families and LiteMedSAM
/// resize the longest side (then pad), MedSAM stretches to the full square.
pub fn input_frame(original_size: [usize; 2], config: &SamConfig) -> (usize, usize) {
    let s = config.img_size();
    match config.family {
        ModelFamily::MedSam => (s, s),
        _ => get_preprocess_shape(original_size[0], original_size[1], s),
    }
}

/// Min-max normalisation to [0, 1] over all pixels and channels (`(x − min) / max(max − min,
/// 1e-8)` in float64 as numpy computes it), written into a zero `img_size`² frame.
fn min_max_padded(resized: &RgbImage, img_size: usize) -> Vec<f32> {
    let (nw, nh) = (resized.width() as usize, resized.height() as usize);
    let raw = resized.as_raw();
    let lo = raw.iter().copied().min().unwrap_or(0);
    let hi = raw.iter().copied().max().unwrap_or(0);
    let range = ((hi - lo) as f64).max(1e-8);
    let mut data = vec![0f32; 3 * img_size * img_size];
    for y in 0..nh {
        for x in 0..nw {
            for c in 0..3 {
                let v = (raw[(y * nw + x) * 3 + c] - lo) as f64 / range;
                data[(c * img_size + y) * img_size + x] = v as f32;
            }
        }
    }
    data
}

/// The model input for `img` as the model's family expects it.
pub fn preprocess_for(img: &RgbImage, config: &SamConfig) -> Preprocessed {
    let s = config.img_size();
    let (h, w) = (img.height() as usize, img.width() as usize);
    let (nh, nw) = input_frame([h, w], config);
    let data = match config.family {
        ModelFamily::Sam | ModelFamily::MobileSam => {
            return preprocess(img, s, config.pixel_mean, config.pixel_std);
        }
        // `resize_longest_side` (cv2.INTER_AREA), min-max, `pad_image`.
        ModelFamily::LiteMedSam => min_max_padded(&resize_area(img, nw, nh), s),
        // `transform.resize(..., order=3, anti_aliasing=True).astype(np.uint8)`, min-max.
        ModelFamily::MedSam => min_max_padded(&resize_skimage_cubic(img, nw, nh), s),
    };
    Preprocessed {
        data,
        input_size: [nh, nw],
        original_size: [h, w],
    }
}

/// A point in original pixels → the model input frame of `config`'s family.
pub fn coords_for(xy: [f64; 2], original_size: [usize; 2], config: &SamConfig) -> [f32; 2] {
    let s = config.img_size();
    let [oh, ow] = original_size;
    match config.family {
        ModelFamily::Sam | ModelFamily::MobileSam => apply_coords(xy, original_size, s),
        // `resize_box_to_256`'s ratio (points are not in the official LiteMedSAM pipeline;
        // they get the same scale, untruncated).
        ModelFamily::LiteMedSam => {
            let r = s as f64 / oh.max(ow) as f64;
            [(xy[0] * r) as f32, (xy[1] * r) as f32]
        }
        // `box_np / np.array([W, H, W, H]) * 1024`
        ModelFamily::MedSam => [
            (xy[0] / ow as f64 * s as f64) as f32,
            (xy[1] / oh as f64 * s as f64) as f32,
        ],
    }
}

/// A box (x0, y0, x1, y1) in original pixels → the model input frame of `config`'s family.
pub fn box_for(b: [f64; 4], original_size: [usize; 2], config: &SamConfig) -> [f32; 4] {
    if config.family == ModelFamily::LiteMedSam {
        // `resize_box_to_256`: `int(box[i] * ratio)`, truncated toward zero.
        let r = config.img_size() as f64 / original_size[0].max(original_size[1]) as f64;
        return b.map(|x| (x * r).trunc() as f32);
    }
    let p = coords_for([b[0], b[1]], original_size, config);
    let q = coords_for([b[2], b[3]], original_size, config);
    [p[0], p[1], q[0], q[1]]
}
