//! The import rule: decoded samples and planes, and how they map to the 8-bit RGB SAM
//! expects (see the module docs of `import`).

use anyhow::{Context, Result, bail};
use image::{DynamicImage, RgbImage};
use serde::{Deserialize, Serialize};

/// How >8-bit (or, when chosen, any) intensities map to 0..255.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "lowercase")]
pub enum Window {
    /// From the `low`-th to the `high`-th percentile of the finite values (all colour
    /// channels pooled). The default is 0.5 .. 99.5.
    Percentile { low: f64, high: f64 },
    /// A fixed range of raw (scaled) values.
    Range { min: f64, max: f64 },
}

impl Default for Window {
    fn default() -> Self {
        Window::Percentile {
            low: 0.5,
            high: 99.5,
        }
    }
}

impl Window {
    /// A CT-style window: `level ± width / 2`.
    pub fn level_width(level: f64, width: f64) -> Self {
        Window::Range {
            min: level - width / 2.0,
            max: level + width / 2.0,
        }
    }

    /// Parses `p0.5,99.5` (percentiles) or `-160,240` (range) or `level:40,width:400`.
    pub fn parse(s: &str) -> Result<Self> {
        let s = s.trim();
        let nums = |t: &str| -> Result<Vec<f64>> {
            t.split(',')
                .map(|x| {
                    let x = x.trim();
                    let x = x.split_once(':').map(|(_, v)| v).unwrap_or(x);
                    x.parse::<f64>()
                        .ok()
                        .filter(|v| v.is_finite())
                        .with_context(|| format!("window '{s}': '{x}' is not a number"))
                })
                .collect()
        };
        let w = if let Some(rest) = s.strip_prefix('p') {
            let v = nums(rest)?;
            if v.len() != 2 {
                bail!("window '{s}': expected p<low>,<high> percentiles");
            }
            Window::Percentile {
                low: v[0],
                high: v[1],
            }
        } else if s.starts_with("level") {
            let v = nums(s)?;
            if v.len() != 2 {
                bail!("window '{s}': expected level:<L>,width:<W>");
            }
            Window::level_width(v[0], v[1])
        } else {
            let v = nums(s)?;
            if v.len() != 2 {
                bail!("window '{s}': expected <min>,<max>, p<low>,<high> or level:<L>,width:<W>");
            }
            Window::Range {
                min: v[0],
                max: v[1],
            }
        };
        w.validate()?;
        Ok(w)
    }

    pub fn validate(&self) -> Result<()> {
        match *self {
            Window::Percentile { low, high } => {
                if !(0.0..=100.0).contains(&low) || !(0.0..=100.0).contains(&high) || low >= high {
                    bail!("percentile window {low}..{high}: need 0 ≤ low < high ≤ 100");
                }
            }
            Window::Range { min, max } => {
                if !min.is_finite() || !max.is_finite() || min >= max {
                    bail!("intensity window {min}..{max}: need finite min < max");
                }
            }
        }
        Ok(())
    }
}

/// Decoded samples, interleaved by channel.
#[derive(Clone, Debug, PartialEq)]
pub enum Samples {
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    /// Everything else (signed, 64-bit, floats, scaled NIfTI values).
    F32(Vec<f32>),
}

impl Samples {
    pub fn len(&self) -> usize {
        match self {
            Samples::U8(v) => v.len(),
            Samples::U16(v) => v.len(),
            Samples::U32(v) => v.len(),
            Samples::F32(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub(super) fn get(&self, i: usize) -> f32 {
        match self {
            Samples::U8(v) => v[i] as f32,
            Samples::U16(v) => v[i] as f32,
            Samples::U32(v) => v[i] as f32,
            Samples::F32(v) => v[i],
        }
    }
    /// Bits per sample of the source (8, 16, 32).
    pub fn bits(&self) -> u32 {
        match self {
            Samples::U8(_) => 8,
            Samples::U16(_) => 16,
            _ => 32,
        }
    }
}

/// One 2-D image before conversion to RGB: the raw values, so the app can re-window
/// without decoding again.
#[derive(Clone, Debug, PartialEq)]
pub struct Plane {
    pub width: usize,
    pub height: usize,
    /// Samples per pixel: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA; other counts are bands.
    pub channels: usize,
    pub samples: Samples,
}

impl Plane {
    /// The channels that carry colour: (first channel, count 1 or 3).
    fn colour_channels(&self) -> usize {
        if self.channels >= 3 { 3 } else { 1 }
    }

    /// Raw colour values (alpha and extra bands dropped), as f32.
    fn colour_values(&self) -> Vec<f32> {
        let c = self.channels.max(1);
        let k = self.colour_channels();
        let n = self.width * self.height;
        let mut out = Vec::with_capacity(n * k);
        for p in 0..n {
            for ch in 0..k {
                out.push(self.samples.get(p * c + ch));
            }
        }
        out
    }

    /// Min and max of the finite colour values (for a window editor).
    pub fn value_range(&self) -> Option<(f32, f32)> {
        let v = self.colour_values();
        let mut it = v.into_iter().filter(|x| x.is_finite());
        let first = it.next()?;
        Some(it.fold((first, first), |(lo, hi), x| (lo.min(x), hi.max(x))))
    }

    /// 8-bit RGB by the module's rule, or by `window` when given.
    pub fn to_rgb8(&self, window: Option<Window>) -> RgbImage {
        let (w, h) = (self.width as u32, self.height as u32);
        let k = self.colour_channels();
        let bytes: Vec<u8> = match (&self.samples, window) {
            (Samples::U8(v), None) => {
                let c = self.channels.max(1);
                if c == 3 {
                    v.clone()
                } else {
                    let n = self.width * self.height;
                    let mut out = Vec::with_capacity(n * k);
                    for p in 0..n {
                        for ch in 0..k {
                            out.push(v[p * c + ch]);
                        }
                    }
                    out
                }
            }
            (_, win) => apply_window(&self.colour_values(), win.unwrap_or_default()),
        };
        let rgb = if k == 1 {
            bytes.iter().flat_map(|&g| [g, g, g]).collect()
        } else {
            bytes
        };
        RgbImage::from_raw(w, h, rgb).unwrap_or_else(|| RgbImage::new(w, h))
    }
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

/// Percentile window `low_pct..high_pct` over all values, stretched to u8.
pub fn stretch_to_u8(values: &[f32], low_pct: f64, high_pct: f64) -> Vec<u8> {
    let mut sorted: Vec<f32> = values.iter().copied().filter(|v| v.is_finite()).collect();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let lo = percentile(&sorted, low_pct);
    let hi = percentile(&sorted, high_pct);
    stretch_range(values, lo, hi)
}

fn stretch_range(values: &[f32], lo: f64, hi: f64) -> Vec<u8> {
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

/// Maps values to 0..255 through `window`.
pub fn apply_window(values: &[f32], window: Window) -> Vec<u8> {
    match window {
        Window::Percentile { low, high } => stretch_to_u8(values, low, high),
        Window::Range { min, max } => stretch_range(values, min, max),
    }
}

/// The samples of a decoded `image` image.
pub fn plane_from_dynamic(img: DynamicImage) -> Plane {
    let (width, height) = (img.width() as usize, img.height() as usize);
    let (channels, samples) = match img {
        DynamicImage::ImageLuma8(i) => (1, Samples::U8(i.into_raw())),
        DynamicImage::ImageLumaA8(i) => (2, Samples::U8(i.into_raw())),
        DynamicImage::ImageRgb8(i) => (3, Samples::U8(i.into_raw())),
        DynamicImage::ImageRgba8(i) => (4, Samples::U8(i.into_raw())),
        DynamicImage::ImageLuma16(i) => (1, Samples::U16(i.into_raw())),
        DynamicImage::ImageLumaA16(i) => (2, Samples::U16(i.into_raw())),
        DynamicImage::ImageRgb16(i) => (3, Samples::U16(i.into_raw())),
        DynamicImage::ImageRgba16(i) => (4, Samples::U16(i.into_raw())),
        DynamicImage::ImageRgb32F(i) => (3, Samples::F32(i.into_raw())),
        other => (4, Samples::F32(other.to_rgba32f().into_raw())),
    };
    Plane {
        width,
        height,
        channels,
        samples,
    }
}

/// Converts any decoded image to 8-bit RGB by the rule in the module docs.
pub fn to_rgb8(img: DynamicImage) -> RgbImage {
    if let DynamicImage::ImageRgb8(i) = img {
        return i;
    }
    plane_from_dynamic(img).to_rgb8(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_parse() {
        assert_eq!(
            Window::parse("p1,99").unwrap(),
            Window::Percentile {
                low: 1.0,
                high: 99.0
            }
        );
        assert_eq!(
            Window::parse("-160,240").unwrap(),
            Window::Range {
                min: -160.0,
                max: 240.0
            }
        );
        assert_eq!(
            Window::parse("level:40,width:400").unwrap(),
            Window::Range {
                min: -160.0,
                max: 240.0
            }
        );
        assert!(Window::parse("5,1").is_err());
        assert!(Window::parse("p50,10").is_err());
        assert!(Window::parse("x").is_err());
    }

    #[test]
    fn plane_rules_match_dynamic_image() {
        let g16 = image::ImageBuffer::<image::Luma<u16>, _>::from_fn(7, 5, |x, y| {
            image::Luma([(x * 1000 + y * 37) as u16])
        });
        let a = to_rgb8(DynamicImage::ImageLuma16(g16.clone()));
        let vals: Vec<f32> = g16.as_raw().iter().map(|&v| v as f32).collect();
        let s = stretch_to_u8(&vals, 0.5, 99.5);
        assert_eq!(
            a.as_raw(),
            &s.iter().flat_map(|&v| [v, v, v]).collect::<Vec<_>>()
        );
        let rgba = image::RgbaImage::from_fn(3, 2, |x, y| image::Rgba([x as u8, y as u8, 9, 200]));
        let b = to_rgb8(DynamicImage::ImageRgba8(rgba.clone()));
        assert_eq!(b, DynamicImage::ImageRgba8(rgba).to_rgb8());
    }

    #[test]
    fn fixed_window() {
        assert_eq!(
            apply_window(
                &[-1000.0, 40.0, 3000.0, f32::NAN],
                Window::level_width(40.0, 400.0)
            ),
            vec![0, 128, 255, 0]
        );
    }
}
