//! DICOM images (`.dcm`, or any file with the `DICM` marker at byte 128) through dicom-rs.
//!
//! * Transfer syntaxes: uncompressed (implicit/explicit VR, little/big endian), deflated,
//!   RLE Lossless and JPEG (baseline, extended, lossless). Others (JPEG 2000, JPEG-LS, JPEG XL,
//!   video) are refused with the syntax's name: they need C decoders this build leaves out.
//! * Photometric interpretations: MONOCHROME1/2, RGB, and YBR that the decoder turns into RGB.
//!   MONOCHROME1 (low values white) is inverted after the 8-bit mapping, so it displays as
//!   radiology viewers show it.
//! * Intensities: the Modality LUT (Rescale Slope/Intercept) is applied, then the values go
//!   through the same rule as every other >8-bit image (0.5/99.5 percentile window, or the
//!   user's window, in modality units such as HU). The file's Window Center/Width and VOI LUT
//!   are not used: one rule for all formats keeps training and prediction images alike.
//! * Multi-frame files: frame 0 is used, with a warning (like the first volume of 4-D NIfTI).
//! * The header is read first (up to Pixel Data) and checked against the size limits before
//!   the pixel data are loaded.

use std::path::Path;

use anyhow::{Result, anyhow, bail};
use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, OpenFileOptions, Tag};
use dicom_pixeldata::{
    ConvertOptions, ModalityLutOption, PixelDecoder, PixelRepresentation, VoiLutOption,
};
use dicom_transfer_syntax_registry::{TransferSyntaxIndex, TransferSyntaxRegistry};

use super::sniff::check_size;
use super::{Limits, Plane, Samples};

/// A decoded DICOM frame.
pub(super) struct DicomImage {
    pub plane: Plane,
    /// MONOCHROME1: the 8-bit result is inverted.
    pub invert: bool,
}

/// True when the bytes carry the DICOM Part 10 marker (`DICM` after the 128-byte preamble).
pub(super) fn has_marker(head: &[u8]) -> bool {
    head.len() >= 132 && &head[128..132] == b"DICM"
}

/// True for a `.dcm`/`.dicom` name without the marker: read as DICOM so that the error says
/// what is wrong with it rather than "unknown format".
pub(super) fn sniff(path: &Path, head: &[u8]) -> bool {
    has_marker(head)
        || path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("dcm") || e.eq_ignore_ascii_case("dicom"))
}

/// True for a file that starts like DICOM Part 10 (for folder listings that also take files
/// without an extension, as scanners often write them).
pub fn is_dicom_file(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 132];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && has_marker(&head)
}

fn int(obj: &DefaultDicomObject, tag: Tag) -> Option<u64> {
    obj.element_opt(tag).ok().flatten()?.to_int::<u64>().ok()
}

fn text(obj: &DefaultDicomObject, tag: Tag) -> Option<String> {
    let v = obj.element_opt(tag).ok().flatten()?.to_str().ok()?;
    Some(
        v.trim_matches(|c: char| c == '\0' || c.is_whitespace())
            .to_string(),
    )
}

/// Reads frame 0 of a DICOM file.
pub(super) fn read(path: &Path, limits: &Limits) -> Result<DicomImage> {
    let p = path.display();
    if !is_dicom_file(path) {
        bail!(
            "image {p}: not a DICOM Part 10 file (no 'DICM' marker at byte 128); files without the file meta header are not supported"
        );
    }
    // Header first: the size checks come before any pixel data are loaded.
    let header = OpenFileOptions::new()
        .read_until(tags::PIXEL_DATA)
        .open_file(path)
        .map_err(|e| anyhow!("image {p}: corrupt or truncated DICOM header ({e})"))?;
    let uid = header
        .meta()
        .transfer_syntax()
        .trim_end_matches(['\0', ' '])
        .to_string();
    let ts = TransferSyntaxRegistry
        .get(&uid)
        .ok_or_else(|| anyhow!("image {p}: unknown DICOM transfer syntax {uid}"))?;
    if !ts.can_decode_all() {
        bail!(
            "image {p}: DICOM transfer syntax '{}' ({uid}) is not supported (supported: uncompressed, deflated, RLE Lossless, JPEG baseline/extended/lossless); convert it first, e.g. `gdcmconv --raw` or `dcmdjpeg`",
            ts.name()
        );
    }
    let (rows, cols) = match (int(&header, tags::ROWS), int(&header, tags::COLUMNS)) {
        (Some(r), Some(c)) => (r, c),
        _ => {
            let modality = text(&header, tags::MODALITY).unwrap_or_default();
            bail!(
                "image {p}: a DICOM file without an image (no Rows/Columns{}); only image objects (CT, MR, CR, DX, US, SC, ...) can be imported",
                if modality.is_empty() {
                    String::new()
                } else {
                    format!("; modality {modality}")
                }
            );
        }
    };
    let spp = int(&header, tags::SAMPLES_PER_PIXEL).unwrap_or(1).max(1);
    let bits = int(&header, tags::BITS_ALLOCATED).unwrap_or(16).max(1);
    // Decoded as f32 per sample.
    check_size(path, cols, rows, spp * 4, limits)?;
    let file_len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    if file_len > limits.max_bytes {
        bail!(
            "image {p}: the DICOM file is {} MiB, more than the {} MiB limit",
            file_len >> 20,
            limits.max_bytes >> 20
        );
    }
    let frames = text(&header, tags::NUMBER_OF_FRAMES)
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(1)
        .max(1);
    if ts.is_codec_free()
        && frames.saturating_mul(rows * cols * spp * bits.div_ceil(8)) > limits.max_bytes
    {
        bail!(
            "image {p}: {frames} frames of {cols}×{rows} exceed the {} MiB limit",
            limits.max_bytes >> 20
        );
    }
    drop(header);

    let obj = dicom_object::open_file(path)
        .map_err(|e| anyhow!("image {p}: corrupt or truncated DICOM file ({e})"))?;
    if obj.element_opt(tags::PIXEL_DATA).ok().flatten().is_none() {
        bail!("image {p}: the DICOM file has no Pixel Data element");
    }
    if frames > 1 {
        tracing::warn!("image {p}: DICOM file with {frames} frames; using frame 0 only");
    }
    if uid == RLE_LOSSLESS {
        check_rle(&obj, (rows * cols) as usize).map_err(|e| anyhow!("image {p}: {e}"))?;
    }
    let px = obj
        .decode_pixel_data_frame(0)
        .map_err(|e| anyhow!("image {p}: cannot decode the DICOM pixel data ({e})"))?;
    let (w, h) = (px.columns() as usize, px.rows() as usize);
    let pi = px.photometric_interpretation().as_str().to_string();
    let n = w * h;
    match (pi.as_str(), px.samples_per_pixel()) {
        ("MONOCHROME1" | "MONOCHROME2", 1) => {
            let identity = px
                .rescale()
                .is_ok_and(|r| r.iter().all(|r| r.slope == 1.0 && r.intercept == 0.0));
            let unsigned = px.pixel_representation() == PixelRepresentation::Unsigned;
            let samples =
                if px.bits_allocated() == 8 && px.bits_stored() == 8 && unsigned && identity {
                    // Plain 8-bit gray is used as is, as for PNG (the rule's 8-bit case).
                    let raw = px.frame_data(0).map_err(|e| {
                        anyhow!("image {p}: cannot read the DICOM pixel data ({e})")
                    })?;
                    Samples::U8(raw.to_vec())
                } else if px.bits_allocated() == 32 {
                    Samples::F32(gray32(&px, n).map_err(|e| anyhow!("image {p}: {e}"))?)
                } else {
                    let opts = ConvertOptions::new()
                        .with_modality_lut(ModalityLutOption::Default)
                        .with_voi_lut(VoiLutOption::Identity);
                    Samples::F32(px.to_vec_frame_with_options(0, &opts).map_err(|e| {
                        anyhow!("image {p}: cannot convert the DICOM pixel data ({e})")
                    })?)
                };
            if samples.len() != n {
                bail!(
                    "image {p}: DICOM pixel data hold {} values, expected {n}",
                    samples.len()
                );
            }
            Ok(DicomImage {
                plane: Plane {
                    width: w,
                    height: h,
                    channels: 1,
                    samples,
                },
                invert: pi == "MONOCHROME1",
            })
        }
        ("RGB", 3) => {
            let samples = if px.bits_allocated() == 8 {
                Samples::U8(rgb8(&px, n).map_err(|e| anyhow!("image {p}: {e}"))?)
            } else {
                let v: Vec<f32> = px
                    .to_vec_frame(0)
                    .map_err(|e| anyhow!("image {p}: cannot convert the DICOM pixel data ({e})"))?;
                Samples::F32(v)
            };
            if samples.len() != n * 3 {
                bail!(
                    "image {p}: DICOM pixel data hold {} values, expected {}",
                    samples.len(),
                    n * 3
                );
            }
            Ok(DicomImage {
                plane: Plane {
                    width: w,
                    height: h,
                    channels: 3,
                    samples,
                },
                invert: false,
            })
        }
        (other, s) => bail!(
            "image {p}: DICOM photometric interpretation {other} with {s} sample(s) per pixel is not supported (MONOCHROME1/2 or RGB)"
        ),
    }
}

const RLE_LOSSLESS: &str = "1.2.840.10008.1.2.5";

/// Checks frame 0's RLE fragment (PS3.5 G) before it is decoded: dicom-rs 0.10 indexes past
/// the end of a short header or segment (a truncated file) and panics instead of failing.
fn check_rle(obj: &DefaultDicomObject, n: usize) -> Result<()> {
    let bad = |what: String| anyhow!("corrupt or truncated RLE pixel data ({what})");
    let frag = obj
        .element(tags::PIXEL_DATA)
        .ok()
        .and_then(|e| e.value().fragments())
        .and_then(|f| f.first())
        .ok_or_else(|| bad("no fragment".into()))?;
    let word = |i: usize| u32::from_le_bytes([frag[i], frag[i + 1], frag[i + 2], frag[i + 3]]);
    if frag.len() < 64 {
        return Err(bad(format!("{}-byte fragment", frag.len())));
    }
    let segs = word(0) as usize;
    if !(1..=15).contains(&segs) {
        return Err(bad(format!("{segs} segments")));
    }
    let mut ends: Vec<usize> = (1..=segs).map(|k| word(4 * k) as usize).collect();
    ends.push(frag.len());
    for k in 0..segs {
        let (a, b) = (ends[k], ends[k + 1]);
        if a < 64 || a > b || b > frag.len() {
            return Err(bad(format!(
                "segment {k} at bytes {a}..{b} of {}",
                frag.len()
            )));
        }
        let got = packbits_len(&frag[a..b], n);
        if got < n {
            return Err(bad(format!("segment {k} holds {got} of {n} bytes")));
        }
    }
    Ok(())
}

/// Bytes a PackBits segment decodes to (counting only complete runs), up to `need`.
fn packbits_len(seg: &[u8], need: usize) -> usize {
    let (mut i, mut out) = (0, 0);
    while i < seg.len() && out < need {
        let h = seg[i] as i8;
        i += 1;
        match h {
            0..=127 if i + (h as usize) < seg.len() => {
                out += h as usize + 1;
                i += h as usize + 1;
            }
            -127..=-1 if i < seg.len() => {
                out += (1 - h as isize) as usize;
                i += 1;
            }
            -128 => {}
            _ => break,
        }
    }
    out
}

/// Frame 0 of 32-bit grayscale (e.g. RT dose) with the Modality LUT applied: dicom-pixeldata
/// converts only 1-, 8- and 16-bit samples.
fn gray32(px: &dicom_pixeldata::DecodedPixelData<'_>, n: usize) -> Result<Vec<f32>> {
    let raw = px
        .frame_data(0)
        .map_err(|e| anyhow!("cannot read the DICOM pixel data ({e})"))?;
    if raw.len() < n * 4 {
        bail!(
            "DICOM pixel data are too short ({} bytes, expected {})",
            raw.len(),
            n * 4
        );
    }
    let r = px
        .rescale()
        .map_err(|e| anyhow!("bad DICOM Rescale Slope/Intercept ({e})"))?[0];
    let stored = u32::from(px.bits_stored().clamp(1, 32));
    let signed = px.pixel_representation() == PixelRepresentation::Signed;
    Ok(raw[..n * 4]
        .chunks_exact(4)
        .map(|b| {
            let u = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            // Only the low Bits Stored bits are the value; signed values are sign-extended
            // from there (PS3.5 8.1.1).
            let v = if signed {
                f64::from(((u << (32 - stored)) as i32) >> (32 - stored))
            } else {
                f64::from(u & (u32::MAX >> (32 - stored)))
            };
            (v * r.slope + r.intercept) as f32
        })
        .collect())
}

/// 8-bit RGB samples of frame 0, pixel-interleaved whatever the planar configuration.
fn rgb8(px: &dicom_pixeldata::DecodedPixelData<'_>, n: usize) -> Result<Vec<u8>> {
    let raw = px
        .frame_data(0)
        .map_err(|e| anyhow!("cannot read the DICOM pixel data ({e})"))?;
    if raw.len() < n * 3 {
        bail!(
            "DICOM pixel data are too short ({} bytes, expected {})",
            raw.len(),
            n * 3
        );
    }
    let planar = px.planar_configuration() != dicom_pixeldata::PlanarConfiguration::Standard;
    Ok(if planar {
        (0..n)
            .flat_map(|i| [raw[i], raw[n + i], raw[2 * n + i]])
            .collect()
    } else {
        raw[..n * 3].to_vec()
    })
}
