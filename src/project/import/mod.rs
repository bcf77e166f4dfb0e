//! Reading images and label masks, and the documented rule that turns any supported image
//! into the 8-bit RGB SAM expects.
//!
//! Formats: PNG, JPEG, BMP, WebP (through `image`); TIFF through the `tiff` crate (8/16/32-bit
//! integer, 16/32/64-bit float, gray, gray+alpha, RGB, RGBA, multi-band; multi-page files are
//! stacks of slices, one per page); NIfTI-1 `.nii`/`.nii.gz` volumes as slices along an axis
//! (see [`nifti`]); single-frame DICOM (see [`dicom`]: Modality LUT, then the rule below;
//! MONOCHROME1 inverted). The format is recognised from the file's first
//! bytes (DICOM: the `DICM` marker at byte 128, or a `.dcm` name), not its name.
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
//!
//! Files: this one holds the limits, the options and the entry points (`load_plane`,
//! `load_rgb*`, `slice_count`); `rule` the samples, planes and the mapping to 8-bit RGB;
//! `sniff` format recognition, the panic guard, the size check and the `image` reader;
//! `tiff` the TIFF reader; `labels` label images; `nifti` NIfTI volumes; `dicom` DICOM files.

use std::path::Path;

use anyhow::{Result, bail};
use image::RgbImage;
use serde::{Deserialize, Serialize};

pub mod dicom;
mod labels;
pub mod nifti;
mod rule;
mod sniff;
mod tiff;

pub use self::dicom::is_dicom_file;
pub use self::labels::*;
pub use self::nifti::Axis;
pub use self::rule::*;
use self::sniff::{Format, check_size, guarded, open_dynamic, sniff};
use self::tiff::{tiff_pages, tiff_plane};

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

/// Number of 2-D slices in a file: TIFF pages, NIfTI slices along `axis`, 1 otherwise
/// (DICOM too: only frame 0 of a multi-frame file is read).
pub fn slice_count(path: &Path, axis: Axis) -> Result<usize> {
    let limits = Limits::default();
    guarded(path, || match sniff(path)? {
        Format::Tiff => tiff_pages(path, &limits),
        Format::Nifti => self::nifti::slice_count(path, axis),
        Format::Dicom | Format::Other => Ok(1),
    })
}

/// Reads one 2-D plane (raw values) of any supported file.
pub fn load_plane(path: &Path, opts: &ImportOptions) -> Result<Plane> {
    load_plane_display(path, opts).map(|(plane, _)| plane)
}

/// How a file asks to be shown, beyond its values (DICOM only so far).
#[derive(Clone, Copy, Debug, Default)]
struct Display {
    /// Low values are white (DICOM MONOCHROME1): invert after the 8-bit mapping.
    invert: bool,
}

fn single_slice(path: &Path, opts: &ImportOptions) -> Result<()> {
    if opts.slice > 0 {
        bail!(
            "image {}: slice {} does not exist (a single image has only slice 0)",
            path.display(),
            opts.slice
        );
    }
    Ok(())
}

fn load_plane_display(path: &Path, opts: &ImportOptions) -> Result<(Plane, Display)> {
    guarded(path, || {
        let mut display = Display::default();
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
            Format::Dicom => {
                single_slice(path, opts)?;
                let d = self::dicom::read(path, &opts.limits)?;
                display = Display { invert: d.invert };
                d.plane
            }
            Format::Other => {
                single_slice(path, opts)?;
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
        Ok((plane, display))
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
    let (plane, display) = load_plane_display(path, opts)?;
    guarded(path, || {
        let mut rgb = plane.to_rgb8(opts.window);
        if display.invert {
            rgb.iter_mut().for_each(|v| *v = 255 - *v);
        }
        Ok(rgb)
    })
}
