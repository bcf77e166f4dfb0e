//! Reading images and label masks, and the documented rule that turns any supported image
//! into the 8-bit RGB SAM expects.
//!
//! Formats: PNG, JPEG, BMP, WebP (through `image`); TIFF through the `tiff` crate (8/16/32-bit
//! integer, 16/32/64-bit float, gray, gray+alpha, RGB, RGBA, multi-band; multi-page files are
//! stacks of slices, one per page); NIfTI-1 `.nii`/`.nii.gz` volumes as slices along an axis
//! (see [`nifti`]). The format is recognised from the file's first bytes, not its name.
//!
//! The rule (default, [`ImportOptions::window`] = `None`):
//!
//! * 8-bit RGB is used as is; RGBA and gray+alpha drop alpha; 8-bit gray is copied to R, G, B.
//! * More than 8 bits (16/32-bit integer, float, NIfTI): one window over all colour channels
//!   from the 0.5th to the 99.5th percentile of the finite values (numpy's linear
//!   interpolation) is stretched to 0..255, clipped and rounded half-to-even; NaN/inf become
//!   the window's low end; gray is then copied to R, G, B.
//! * Multi-band images (not gray/RGB): the first three bands are R, G, B (one or two bands:
//!   the first band is gray).
//!
//! A user-chosen [`Window`] (percentiles or a fixed range, e.g. a CT level/width) replaces the
//! rule and applies to 8-bit data too.
//!
//! Limits: images over [`MAX_PIXELS`] pixels or [`MAX_DECODED_BYTES`] of decoded samples are
//! refused with a message (downscale or tile first) before any large allocation. Decoders run
//! under `catch_unwind`: a malformed file gives an error, never a crash.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, bail};
use image::{DynamicImage, ImageReader, RgbImage};
use serde::{Deserialize, Serialize};

// Declared here (not in project/mod.rs) so this module owns its readers.
#[path = "nifti.rs"]
pub mod nifti;
pub use self::nifti::Axis;

/// Largest image accepted (pixels); bigger ones are refused with a message rather than
/// exhausting memory.
pub const MAX_PIXELS: u64 = 16384 * 16384;
/// Largest decoded sample buffer accepted (bytes), for images and NIfTI volumes.
pub const MAX_DECODED_BYTES: u64 = 4 << 30;
/// Most pages counted in a TIFF file.
pub const MAX_PAGES: usize = 100_000;

/// Memory limits of the readers (tests and the fuzzer use small ones).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_pixels: u64,
    pub max_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_pixels: MAX_PIXELS,
            max_bytes: MAX_DECODED_BYTES,
        }
    }
}

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

/// What to read from a file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ImportOptions {
    /// Slice index: the TIFF page, or the NIfTI slice along `axis`. 0 for single images.
    #[serde(default)]
    pub slice: usize,
    /// NIfTI slicing axis (default z, axial).
    #[serde(default)]
    pub axis: Axis,
    /// `None`: the default rule of the module docs.
    #[serde(default)]
    pub window: Option<Window>,
    #[serde(skip)]
    pub limits: Limits,
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
    fn get(&self, i: usize) -> f32 {
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

// ---------------------------------------------------------------------------------------------
// Reading

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Tiff,
    Nifti,
    Other,
}

fn sniff(path: &Path) -> Result<Format> {
    if !path.exists() {
        bail!("image {}: file not found", path.display());
    }
    if path.is_dir() {
        bail!("image {}: is a folder, not an image file", path.display());
    }
    let mut f = std::fs::File::open(path)
        .with_context(|| format!("image {}: cannot open", path.display()))?;
    let mut head = Vec::with_capacity(352);
    (&mut f)
        .take(352)
        .read_to_end(&mut head)
        .with_context(|| format!("image {}: cannot read", path.display()))?;
    if head.is_empty() {
        bail!("image {}: the file is empty (0 bytes)", path.display());
    }
    if head.starts_with(b"II*\0")
        || head.starts_with(b"MM\0*")
        || head.starts_with(b"II+\0")
        || head.starts_with(b"MM\0+")
    {
        return Ok(Format::Tiff);
    }
    if self::nifti::sniff(path, &head) {
        return Ok(Format::Nifti);
    }
    Ok(Format::Other)
}

/// Runs a decoder, turning a panic on malformed data into an error.
fn guarded<T>(path: &Path, f: impl FnOnce() -> Result<T>) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(_) => bail!(
            "image {}: corrupt or malformed data (the decoder failed)",
            path.display()
        ),
    }
}

fn check_size(path: &Path, w: u64, h: u64, bytes_per_pixel: u64, limits: &Limits) -> Result<()> {
    if w == 0 || h == 0 {
        bail!("image {}: has zero size ({w}×{h})", path.display());
    }
    if w * h > limits.max_pixels {
        bail!(
            "image {}: {w}×{h} is larger than the {}-pixel limit; downscale or tile it first",
            path.display(),
            limits.max_pixels
        );
    }
    if w * h * bytes_per_pixel > limits.max_bytes {
        bail!(
            "image {}: {w}×{h} at {bytes_per_pixel} bytes per pixel needs {} MiB, more than the {} MiB limit; downscale or tile it first",
            path.display(),
            (w * h * bytes_per_pixel) >> 20,
            limits.max_bytes >> 20
        );
    }
    Ok(())
}

fn open_dynamic(path: &Path, limits: &Limits) -> Result<DynamicImage> {
    let reader = ImageReader::open(path)
        .with_context(|| format!("image {}: cannot open", path.display()))?
        .with_guessed_format()
        .with_context(|| format!("image {}: cannot read", path.display()))?;
    if reader.format().is_none() {
        bail!(
            "image {}: unknown or unsupported image format (supported: PNG, JPEG, TIFF, BMP, WebP, NIfTI .nii/.nii.gz)",
            path.display()
        );
    }
    let mut reader = reader;
    let mut l = image::Limits::default();
    l.max_alloc = Some(limits.max_bytes);
    reader.limits(l);
    let (w, h) = reader
        .into_dimensions()
        .with_context(|| format!("image {}: unreadable or unsupported image", path.display()))?;
    check_size(path, w as u64, h as u64, 1, limits)?;
    let mut reader = ImageReader::open(path)?.with_guessed_format()?;
    let mut l = image::Limits::default();
    l.max_alloc = Some(limits.max_bytes);
    reader.limits(l);
    reader.decode().with_context(|| {
        format!(
            "image {}: corrupt, truncated or unsupported image data",
            path.display()
        )
    })
}

fn tiff_decoder(
    path: &Path,
    limits: &Limits,
) -> Result<tiff::decoder::Decoder<std::io::BufReader<std::fs::File>>> {
    let f = std::fs::File::open(path)
        .with_context(|| format!("image {}: cannot open", path.display()))?;
    let mut l = tiff::decoder::Limits::default();
    l.decoding_buffer_size = usize::try_from(limits.max_bytes).unwrap_or(usize::MAX);
    l.intermediate_buffer_size = l.decoding_buffer_size.min(512 << 20);
    l.ifd_value_size = 64 << 20;
    let d = tiff::decoder::Decoder::new(std::io::BufReader::new(f)).map_err(|e| {
        anyhow::anyhow!(
            "image {}: corrupt or unsupported TIFF ({e})",
            path.display()
        )
    })?;
    Ok(d.with_limits(l))
}

fn tiff_pages(path: &Path, limits: &Limits) -> Result<usize> {
    let mut d = tiff_decoder(path, limits)?;
    let mut n = 1;
    while d.more_images() && n < MAX_PAGES {
        d.next_image().map_err(|e| {
            anyhow::anyhow!("image {}: corrupt TIFF page {n} ({e})", path.display())
        })?;
        n += 1;
    }
    Ok(n)
}

fn tiff_plane(path: &Path, page: usize, limits: &Limits) -> Result<Plane> {
    use tiff::ColorType as C;
    use tiff::decoder::DecodingResult as D;
    let mut d = tiff_decoder(path, limits)?;
    if page > 0 {
        d.seek_to_image(page).map_err(|_| {
            let n = tiff_pages(path, limits).unwrap_or(1);
            anyhow::anyhow!(
                "image {}: page {page} does not exist (the file has {n} page{})",
                path.display(),
                if n == 1 { "" } else { "s" }
            )
        })?;
    }
    let (w, h) = d
        .dimensions()
        .map_err(|e| anyhow::anyhow!("image {}: corrupt TIFF ({e})", path.display()))?;
    let ct = d
        .colortype()
        .map_err(|e| anyhow::anyhow!("image {}: unsupported TIFF ({e})", path.display()))?;
    let (channels, bits) = match ct {
        C::Gray(b) => (1usize, b),
        C::GrayA(b) => (2, b),
        C::RGB(b) => (3, b),
        C::RGBA(b) => (4, b),
        C::Multiband {
            bit_depth,
            num_samples,
        } if num_samples > 0 => (num_samples as usize, bit_depth),
        other => {
            // Palette, CMYK, YCbCr, ...: the `image` decoder handles some of these.
            if page == 0 {
                return open_dynamic(path, limits)
                    .map(plane_from_dynamic)
                    .map_err(|e| anyhow::anyhow!("{e:#} (TIFF colour type {other:?})"));
            }
            bail!(
                "image {}: TIFF colour type {other:?} is not supported",
                path.display()
            );
        }
    };
    if !matches!(bits, 8 | 16 | 32 | 64) {
        if page == 0 {
            return open_dynamic(path, limits).map(plane_from_dynamic);
        }
        bail!(
            "image {}: {bits}-bit TIFF samples are not supported",
            path.display()
        );
    }
    check_size(
        path,
        w as u64,
        h as u64,
        channels as u64 * (bits as u64 / 8),
        limits,
    )?;
    let data = d.read_image().map_err(|e| {
        anyhow::anyhow!(
            "image {}: corrupt, truncated or unsupported TIFF data ({e})",
            path.display()
        )
    })?;
    let samples = match data {
        D::U8(v) => Samples::U8(v),
        D::U16(v) => Samples::U16(v),
        D::U32(v) => Samples::U32(v),
        D::U64(v) => Samples::F32(v.into_iter().map(|x| x as f32).collect()),
        D::F16(v) => Samples::F32(v.into_iter().map(|x| x.to_f32()).collect()),
        D::F32(v) => Samples::F32(v),
        D::F64(v) => Samples::F32(v.into_iter().map(|x| x as f32).collect()),
        D::I8(v) => Samples::F32(v.into_iter().map(|x| x as f32).collect()),
        D::I16(v) => Samples::F32(v.into_iter().map(|x| x as f32).collect()),
        D::I32(v) => Samples::F32(v.into_iter().map(|x| x as f32).collect()),
        D::I64(v) => Samples::F32(v.into_iter().map(|x| x as f32).collect()),
    };
    let (w, h) = (w as usize, h as usize);
    if samples.len() < w * h * channels {
        bail!(
            "image {}: TIFF data is shorter than its {w}×{h}×{channels} size",
            path.display()
        );
    }
    Ok(Plane {
        width: w,
        height: h,
        channels,
        samples,
    })
}

/// Number of 2-D slices in a file: TIFF pages, NIfTI slices along `axis`, 1 otherwise.
pub fn slice_count(path: &Path, axis: Axis) -> Result<usize> {
    let limits = Limits::default();
    guarded(path, || match sniff(path)? {
        Format::Tiff => tiff_pages(path, &limits),
        Format::Nifti => self::nifti::slice_count(path, axis),
        Format::Other => Ok(1),
    })
}

/// Reads one 2-D plane (raw values) of any supported file.
pub fn load_plane(path: &Path, opts: &ImportOptions) -> Result<Plane> {
    guarded(path, || {
        let plane = match sniff(path)? {
            Format::Tiff => tiff_plane(path, opts.slice, &opts.limits)?,
            Format::Nifti => {
                let v = self::nifti::load_volume(path, opts.limits.max_bytes)?;
                let p = v
                    .slice(opts.axis, opts.slice)
                    .map_err(|e| anyhow::anyhow!("image {}: {e}", path.display()))?;
                check_size(path, p.width as u64, p.height as u64, 1, &opts.limits)?;
                p
            }
            Format::Other => {
                if opts.slice > 0 {
                    bail!(
                        "image {}: slice {} does not exist (a single image has only slice 0)",
                        path.display(),
                        opts.slice
                    );
                }
                plane_from_dynamic(open_dynamic(path, &opts.limits)?)
            }
        };
        if plane.width == 0 || plane.height == 0 {
            bail!(
                "image {}: has zero size ({}×{})",
                path.display(),
                plane.width,
                plane.height
            );
        }
        Ok(plane)
    })
}

/// Loads an image file (its first slice) as 8-bit RGB.
pub fn load_rgb(path: &Path) -> Result<RgbImage> {
    load_rgb_with(path, &ImportOptions::default())
}

/// Loads one slice of an image file as 8-bit RGB, with an optional window.
pub fn load_rgb_with(path: &Path, opts: &ImportOptions) -> Result<RgbImage> {
    if let Some(w) = &opts.window {
        w.validate()?;
    }
    let plane = load_plane(path, opts)?;
    guarded(path, || Ok(plane.to_rgb8(opts.window)))
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

/// Loads a label image (first slice): single-channel 8/16/32-bit integers, or float /
/// signed data that hold only non-negative whole numbers; an RGB(A) image is accepted only
/// when R = G = B everywhere (gray stored as colour).
pub fn load_labels(path: &Path) -> Result<LabelImage> {
    load_labels_with(path, &ImportOptions::default())
}

/// Loads one slice of a label image (see [`load_labels`]).
pub fn load_labels_with(path: &Path, opts: &ImportOptions) -> Result<LabelImage> {
    let p = load_plane(path, opts).map_err(|e| anyhow::anyhow!("mask: {e:#}"))?;
    let (w, h, c) = (p.width, p.height, p.channels.max(1));
    let n = w * h;
    let what = "label images must hold 0 for background and k = 1, 2, … for object k";
    // Which channel carries the label; colour must be gray.
    if c >= 3 {
        let differs = (0..n).find(|&i| {
            p.samples.get(i * c) != p.samples.get(i * c + 1)
                || p.samples.get(i * c) != p.samples.get(i * c + 2)
        });
        if let Some(i) = differs {
            bail!(
                "mask {}: a colour image (pixel ({}, {}) has different R, G, B); {what}, in one channel (8-, 16- or 32-bit gray)",
                path.display(),
                i % w,
                i / w
            );
        }
    }
    let labels: Vec<u32> = match &p.samples {
        Samples::U8(v) => (0..n).map(|i| v[i * c] as u32).collect(),
        Samples::U16(v) => (0..n).map(|i| v[i * c] as u32).collect(),
        Samples::U32(v) => (0..n).map(|i| v[i * c]).collect(),
        Samples::F32(v) => {
            let mut out = Vec::with_capacity(n);
            for i in 0..n {
                let x = v[i * c];
                if !(x.is_finite() && x >= 0.0 && x.fract() == 0.0 && x <= u32::MAX as f32) {
                    bail!(
                        "mask {}: value {x} at pixel ({}, {}) is not a label; {what}",
                        path.display(),
                        i % w,
                        i / w
                    );
                }
                out.push(x as u32);
            }
            out
        }
    };
    Ok(LabelImage {
        width: w,
        height: h,
        labels,
    })
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
