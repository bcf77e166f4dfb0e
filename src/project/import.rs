//! Reading images and label masks, and the documented rule that turns any supported image
//! into the 8-bit RGB SAM expects:
//!
//! * 8-bit RGB is used as is; RGBA and gray+alpha drop alpha; 8-bit gray is copied to R, G, B.
//! * More than 8 bits (16-bit integer, 32-bit float): one window over all channels from the
//!   0.5th to the 99.5th percentile (numpy's linear interpolation) is stretched to 0..255,
//!   clipped and rounded half-to-even; gray is then copied to R, G, B.

use std::path::Path;

use anyhow::{Context, Result, bail};
use image::{DynamicImage, ImageReader, RgbImage};

/// Largest image accepted (pixels); bigger ones are refused with a message rather than
/// exhausting memory.
pub const MAX_PIXELS: u64 = 16384 * 16384;

fn open(path: &Path) -> Result<DynamicImage> {
    if !path.exists() {
        bail!("image {}: file not found", path.display());
    }
    let mut reader = ImageReader::open(path)
        .with_context(|| format!("image {}: cannot open", path.display()))?
        .with_guessed_format()
        .with_context(|| format!("image {}: cannot read", path.display()))?;
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(4 * MAX_PIXELS);
    reader.limits(limits);
    let (w, h) = reader
        .into_dimensions()
        .with_context(|| format!("image {}: unreadable or unsupported image", path.display()))?;
    if w == 0 || h == 0 {
        bail!("image {}: has zero size ({w}×{h})", path.display());
    }
    if w as u64 * h as u64 > MAX_PIXELS {
        bail!("image {}: {w}×{h} is larger than the {MAX_PIXELS}-pixel limit; downscale or tile it first", path.display());
    }
    let mut reader = ImageReader::open(path)?.with_guessed_format()?;
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(16 * MAX_PIXELS);
    reader.limits(limits);
    reader.decode().with_context(|| format!("image {}: corrupt, truncated or unsupported image data", path.display()))
}

/// numpy.percentile (linear) of sorted data.
fn percentile(sorted: &[f32], p: f64) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return 0.0;
    }
    let pos = p / 100.0 * (n - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(n - 1);
    let frac = pos - lo as f64;
    sorted[lo] as f64 + (sorted[hi] as f64 - sorted[lo] as f64) * frac
}

/// Percentile window 0.5..99.5 over all values, stretched to u8.
pub fn stretch_to_u8(values: &[f32], low_pct: f64, high_pct: f64) -> Vec<u8> {
    let mut sorted: Vec<f32> = values.iter().copied().filter(|v| v.is_finite()).collect();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let lo = percentile(&sorted, low_pct);
    let hi = percentile(&sorted, high_pct);
    let range = if hi > lo { hi - lo } else { 1.0 };
    values
        .iter()
        .map(|&v| {
            let v = if v.is_finite() { v as f64 } else { lo };
            let s = ((v - lo) / range * 255.0).clamp(0.0, 255.0);
            s.round_ties_even() as u8
        })
        .collect()
}

fn gray_to_rgb(g: &[u8], w: u32, h: u32) -> RgbImage {
    let mut out = Vec::with_capacity(g.len() * 3);
    for &v in g {
        out.extend_from_slice(&[v, v, v]);
    }
    RgbImage::from_raw(w, h, out).expect("size")
}

/// Converts any decoded image to 8-bit RGB by the rule in the module docs.
pub fn to_rgb8(img: DynamicImage) -> RgbImage {
    let (w, h) = (img.width(), img.height());
    match img {
        DynamicImage::ImageRgb8(i) => i,
        DynamicImage::ImageRgba8(_) | DynamicImage::ImageLumaA8(_) => img.to_rgb8(),
        DynamicImage::ImageLuma8(g) => gray_to_rgb(g.as_raw(), w, h),
        DynamicImage::ImageLuma16(g) => {
            let v: Vec<f32> = g.as_raw().iter().map(|&x| x as f32).collect();
            gray_to_rgb(&stretch_to_u8(&v, 0.5, 99.5), w, h)
        }
        DynamicImage::ImageLumaA16(g) => {
            let v: Vec<f32> = g.as_raw().chunks(2).map(|p| p[0] as f32).collect();
            gray_to_rgb(&stretch_to_u8(&v, 0.5, 99.5), w, h)
        }
        other => {
            // 16-bit and float colour images: one window over R, G and B.
            let rgb = other.to_rgb32f();
            let raw: Vec<f32> = match &other {
                DynamicImage::ImageRgb16(i) => i.as_raw().iter().map(|&x| x as f32).collect(),
                DynamicImage::ImageRgba16(i) => i.as_raw().chunks(4).flat_map(|p| [p[0], p[1], p[2]]).map(|x| x as f32).collect(),
                _ => rgb.as_raw().clone(),
            };
            RgbImage::from_raw(w, h, stretch_to_u8(&raw, 0.5, 99.5)).expect("size")
        }
    }
}

/// Loads an image file as 8-bit RGB.
pub fn load_rgb(path: &Path) -> Result<RgbImage> {
    Ok(to_rgb8(open(path)?))
}

/// A label image: 0 background, k > 0 object k.
#[derive(Clone, Debug)]
pub struct LabelImage {
    pub width: usize,
    pub height: usize,
    pub labels: Vec<u32>,
}

impl LabelImage {
    /// Sorted distinct object ids.
    pub fn ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.labels.iter().copied().filter(|&v| v > 0).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }
    pub fn mask_of(&self, id: u32) -> Vec<bool> {
        self.labels.iter().map(|&v| v == id).collect()
    }
}

/// Loads an 8- or 16-bit single-channel label image.
pub fn load_labels(path: &Path) -> Result<LabelImage> {
    let img = open(path)?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    let labels = match img {
        DynamicImage::ImageLuma8(i) => i.as_raw().iter().map(|&v| v as u32).collect(),
        DynamicImage::ImageLuma16(i) => i.as_raw().iter().map(|&v| v as u32).collect(),
        other => bail!(
            "mask {}: label images must be single-channel 8- or 16-bit (0 = background, k = object k); got {:?}",
            path.display(),
            other.color()
        ),
    };
    Ok(LabelImage { width: w, height: h, labels })
}
