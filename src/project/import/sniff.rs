//! Recognising a file's format from its first bytes, running decoders under a panic guard,
//! refusing images over the limits, and the `image` crate's reader.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, bail};
use image::{DynamicImage, ImageReader};

use super::Limits;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Format {
    Tiff,
    Dicom,
    Nifti,
    Other,
}

pub(super) fn sniff(path: &Path) -> Result<Format> {
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
    // Before TIFF: a DICOM preamble may itself hold a TIFF header (dual-personality files,
    // e.g. pydicom's CT_small.dcm); the marker at byte 128 is the stronger signal.
    if super::dicom::has_marker(&head) {
        return Ok(Format::Dicom);
    }
    if head.starts_with(b"II*\0")
        || head.starts_with(b"MM\0*")
        || head.starts_with(b"II+\0")
        || head.starts_with(b"MM\0+")
    {
        return Ok(Format::Tiff);
    }
    if super::dicom::sniff(path, &head) {
        return Ok(Format::Dicom);
    }
    if super::nifti::sniff(path, &head) {
        return Ok(Format::Nifti);
    }
    Ok(Format::Other)
}

/// Runs a decoder, turning a panic on malformed data into an error.
pub(super) fn guarded<T>(path: &Path, f: impl FnOnce() -> Result<T>) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(_) => bail!(
            "image {}: corrupt or malformed data (the decoder failed)",
            path.display()
        ),
    }
}

pub(super) fn check_size(
    path: &Path,
    w: u64,
    h: u64,
    bytes_per_pixel: u64,
    limits: &Limits,
) -> Result<()> {
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

pub(super) fn open_dynamic(path: &Path, limits: &Limits) -> Result<DynamicImage> {
    let reader = ImageReader::open(path)
        .with_context(|| format!("image {}: cannot open", path.display()))?
        .with_guessed_format()
        .with_context(|| format!("image {}: cannot read", path.display()))?;
    if reader.format().is_none() {
        bail!(
            "image {}: unknown or unsupported image format (supported: PNG, JPEG, TIFF, BMP, WebP, NIfTI .nii/.nii.gz, DICOM .dcm)",
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
