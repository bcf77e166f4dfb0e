//! Writing masks.

use std::path::Path;

use anyhow::{Context, Result};

use crate::fsutil::atomic_write;

/// Encodes a binary mask (true = object) as an 8-bit PNG with values 0/255.
pub fn mask_png_bytes(mask: &[bool], width: usize, height: usize) -> Result<Vec<u8>> {
    let px: Vec<u8> = mask.iter().map(|&m| if m { 255 } else { 0 }).collect();
    let img = image::GrayImage::from_raw(width as u32, height as u32, px)
        .context("mask size does not match")?;
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )?;
    Ok(bytes)
}

pub fn write_mask_png(path: &Path, mask: &[bool], width: usize, height: usize) -> Result<()> {
    atomic_write(path, &mask_png_bytes(mask, width, height)?)
        .with_context(|| format!("cannot write mask {}", path.display()))
}

/// A 16-bit label image (0 background, k object k).
pub fn write_label_png(path: &Path, labels: &[u16], width: usize, height: usize) -> Result<()> {
    let img = image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_raw(
        width as u32,
        height as u32,
        labels.to_vec(),
    )
    .context("label size does not match")?;
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )?;
    atomic_write(path, &bytes)
        .with_context(|| format!("cannot write label image {}", path.display()))
}

/// The same label image as a 16-bit gray TIFF (one page, deflate-compressed), for readers
/// that expect TIFF (Fiji, tifffile, napari).
pub fn label_tiff_bytes(labels: &[u16], width: usize, height: usize) -> Result<Vec<u8>> {
    use tiff::encoder::{Compression, DeflateLevel, TiffEncoder, colortype::Gray16};
    if labels.len() != width * height {
        anyhow::bail!("label size does not match");
    }
    let mut cursor = std::io::Cursor::new(Vec::new());
    TiffEncoder::new(&mut cursor)
        .and_then(|e| {
            let mut e = e.with_compression(Compression::Deflate(DeflateLevel::Balanced));
            e.write_image::<Gray16>(width as u32, height as u32, labels)
        })
        .context("cannot encode the label TIFF")?;
    Ok(cursor.into_inner())
}

pub fn write_label_tiff(path: &Path, labels: &[u16], width: usize, height: usize) -> Result<()> {
    atomic_write(path, &label_tiff_bytes(labels, width, height)?)
        .with_context(|| format!("cannot write label image {}", path.display()))
}
