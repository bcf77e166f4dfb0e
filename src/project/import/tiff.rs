//! The TIFF reader: pages and one page's samples (8/16/32/64-bit, gray, RGB(A), multi-band).

use std::path::Path;

use anyhow::{Context, Result, bail};

use super::sniff::{check_size, open_dynamic};
use super::{Limits, MAX_PAGES, Plane, Samples, plane_from_dynamic};

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

pub(super) fn tiff_pages(path: &Path, limits: &Limits) -> Result<usize> {
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

pub(super) fn tiff_plane(path: &Path, page: usize, limits: &Limits) -> Result<Plane> {
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
