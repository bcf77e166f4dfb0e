//! NIfTI-1 volumes (`.nii`, `.nii.gz`) as stacks of 2-D slices.
//!
//! * The header is parsed by the `nifti` crate; the voxel data are read here, after checking
//!   that the volume fits the memory limit (a header may claim any size; a `.nii.gz` may
//!   inflate to far more than its file size), so a hostile file cannot exhaust memory.
//! * Data types: u8, i8, u16, i16, u32, i32, u64, i64, f32, f64 (as f32 after
//!   `scl_slope`/`scl_inter`) and RGB24/RGBA32 (as 8-bit colour). Complex and 128-bit types
//!   are refused with a message.
//! * Only the first 3-D volume of a 4-D or 5-D file is used (time point / component 0).
//! * Slices: along `z` (axial in RAS-stored volumes, the default), `y` (coronal) or `x`
//!   (sagittal). A slice along z has width `nx` and height `ny`; rows are flipped so that the
//!   highest `y` index is at the top (anterior up for RAS data, as radiology viewers show it).
//!   The affine (qform/sform) is not applied: voxels are shown in storage order.
//! * Intensities: the scaled values go through the same windowing as other >8-bit images
//!   (see [`super`]); a fixed window (e.g. CT level/width) can be chosen instead.

use std::io::{BufReader, Read};
use std::path::Path;

use anyhow::{Result, bail};
use nifti::{Endianness, NiftiHeader, NiftiType};

use super::{Plane, Samples};

/// Slicing axis in voxel coordinates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Axis {
    /// Sagittal for RAS-stored data.
    X,
    /// Coronal for RAS-stored data.
    Y,
    /// Axial for RAS-stored data.
    #[default]
    Z,
}

impl Axis {
    pub fn parse(s: &str) -> Result<Axis> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "x" | "sagittal" => Axis::X,
            "y" | "coronal" => Axis::Y,
            "z" | "axial" => Axis::Z,
            _ => bail!("axis '{s}': expected x|y|z (sagittal|coronal|axial)"),
        })
    }
}

/// A loaded 3-D volume (first time point), x fastest.
#[derive(Clone, Debug)]
pub struct Volume {
    pub dims: [usize; 3],
    /// Voxel spacing (pixdim 1..3), for display.
    pub spacing: [f32; 3],
    /// 1 (scalar) or 3/4 (RGB24/RGBA32).
    pub channels: usize,
    pub data: Samples,
}

/// True when the first bytes look like NIfTI-1 (single file) or gzip with a NIfTI name.
pub fn sniff(path: &Path, head: &[u8]) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    if head.len() >= 2 && head[0] == 0x1f && head[1] == 0x8b {
        return name.ends_with(".nii.gz") || name.ends_with(".nii.gzip");
    }
    is_nifti1_header(head)
        || (head.len() >= 4
            && (name.ends_with(".nii") || name.ends_with(".hdr"))
            && is_nifti2_header(head))
}

fn is_nifti1_header(h: &[u8]) -> bool {
    h.len() >= 348
        && (h[..4] == 348i32.to_le_bytes() || h[..4] == 348i32.to_be_bytes())
        && (&h[344..348] == b"n+1\0" || &h[344..348] == b"ni1\0")
}

fn is_nifti2_header(h: &[u8]) -> bool {
    h.len() >= 4 && (h[..4] == 540i32.to_le_bytes() || h[..4] == 540i32.to_be_bytes())
}

fn open_stream(path: &Path) -> Result<Box<dyn Read>> {
    let mut f = std::fs::File::open(path)
        .map_err(|e| anyhow::anyhow!("volume {}: cannot open ({e})", path.display()))?;
    let mut magic = [0u8; 2];
    let n = f.read(&mut magic).unwrap_or(0);
    let f = std::fs::File::open(path)
        .map_err(|e| anyhow::anyhow!("volume {}: cannot open ({e})", path.display()))?;
    let r = BufReader::new(f);
    Ok(if n == 2 && magic == [0x1f, 0x8b] {
        Box::new(flate2::read::MultiGzDecoder::new(r))
    } else {
        Box::new(r)
    })
}

/// Header facts needed before reading data.
struct Layout {
    dims: [usize; 3],
    spacing: [f32; 3],
    dtype: NiftiType,
    endianness: Endianness,
    vox_offset: u64,
    slope: f32,
    inter: f32,
}

fn read_header(path: &Path, stream: &mut dyn Read) -> Result<Layout> {
    let mut head = vec![0u8; 348];
    read_full(stream, &mut head).map_err(|_| {
        anyhow::anyhow!(
            "volume {}: truncated NIfTI header (file too short)",
            path.display()
        )
    })?;
    if is_nifti2_header(&head) {
        bail!(
            "volume {}: NIfTI-2 files are not supported; save as NIfTI-1 (e.g. nibabel.Nifti1Image)",
            path.display()
        );
    }
    if !is_nifti1_header(&head) {
        bail!(
            "volume {}: not a NIfTI-1 file (bad header size or magic)",
            path.display()
        );
    }
    if &head[344..348] == b"ni1\0" {
        bail!(
            "volume {}: a .hdr/.img pair; convert it to a single .nii or .nii.gz file",
            path.display()
        );
    }
    let h = NiftiHeader::from_reader(&head[..])
        .map_err(|e| anyhow::anyhow!("volume {}: bad NIfTI header ({e})", path.display()))?;
    let ndim = h.dim[0] as usize;
    if !(1..=7).contains(&ndim) {
        bail!(
            "volume {}: bad NIfTI header (dim[0] = {ndim})",
            path.display()
        );
    }
    let d = |i: usize| if i <= ndim { h.dim[i] as usize } else { 1 };
    let dims = [d(1), d(2), d(3)];
    if dims.contains(&0) {
        bail!(
            "volume {}: has a zero-size dimension {:?}",
            path.display(),
            &h.dim[1..=ndim]
        );
    }
    let dtype = h.data_type().map_err(|_| {
        anyhow::anyhow!(
            "volume {}: unknown NIfTI data type code {}",
            path.display(),
            h.datatype
        )
    })?;
    match dtype {
        NiftiType::Complex64
        | NiftiType::Complex128
        | NiftiType::Complex256
        | NiftiType::Float128 => {
            bail!(
                "volume {}: data type {dtype:?} is not supported (use real-valued 8–64-bit data)",
                path.display()
            )
        }
        _ => {}
    }
    let vox_offset = if h.vox_offset.is_finite() && h.vox_offset >= 348.0 {
        h.vox_offset as u64
    } else {
        352
    };
    if vox_offset > 348 + (64 << 20) {
        bail!(
            "volume {}: bad NIfTI header (voxel data offset {vox_offset})",
            path.display()
        );
    }
    let slope = if h.scl_slope.is_finite() && h.scl_slope != 0.0 {
        h.scl_slope
    } else {
        1.0
    };
    let inter = if h.scl_inter.is_finite() && h.scl_slope != 0.0 {
        h.scl_inter
    } else {
        0.0
    };
    let sp = |i: usize| {
        if h.pixdim[i].is_finite() && h.pixdim[i] > 0.0 {
            h.pixdim[i]
        } else {
            1.0
        }
    };
    Ok(Layout {
        dims,
        spacing: [sp(1), sp(2), sp(3)],
        dtype,
        endianness: h.endianness,
        vox_offset,
        slope,
        inter,
    })
}

fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<()> {
    r.read_exact(buf)
}

/// Reads the header only: (nx, ny, nz) of the first volume.
pub fn dims(path: &Path) -> Result<[usize; 3]> {
    let mut s = open_stream(path)?;
    Ok(read_header(path, &mut *s)?.dims)
}

/// Number of 2-D slices along `axis`.
pub fn slice_count(path: &Path, axis: Axis) -> Result<usize> {
    let d = dims(path)?;
    Ok(match axis {
        Axis::X => d[0],
        Axis::Y => d[1],
        Axis::Z => d[2],
    })
}

/// Loads the first 3-D volume; refuses volumes whose decoded size exceeds `max_bytes`.
pub fn load_volume(path: &Path, max_bytes: u64) -> Result<Volume> {
    let mut s = open_stream(path)?;
    let l = read_header(path, &mut *s)?;
    let n = (l.dims[0] as u64)
        .checked_mul(l.dims[1] as u64)
        .and_then(|v| v.checked_mul(l.dims[2] as u64));
    let size_of = l.dtype.size_of() as u64;
    let channels = match l.dtype {
        NiftiType::Rgb24 => 3usize,
        NiftiType::Rgba32 => 4,
        _ => 1,
    };
    let raw_bytes = n.and_then(|n| n.checked_mul(size_of));
    // Decoded samples take at most 4 bytes per voxel (f32, or 3–4 colour bytes).
    let decoded = n.and_then(|n| n.checked_mul(4));
    let (Some(n), Some(raw_bytes), Some(decoded)) = (n, raw_bytes, decoded) else {
        bail!(
            "volume {}: dimensions {:?} overflow",
            path.display(),
            l.dims
        );
    };
    if raw_bytes.max(decoded) > max_bytes {
        bail!(
            "volume {}: {}×{}×{} voxels of {:?} need {} MiB, more than the {} MiB limit; crop or downsample it first",
            path.display(),
            l.dims[0],
            l.dims[1],
            l.dims[2],
            l.dtype,
            raw_bytes.max(decoded) >> 20,
            max_bytes >> 20
        );
    }
    // Skip extensions up to the voxel data.
    let skip = l.vox_offset - 348;
    let skipped = std::io::copy(&mut (&mut s).take(skip), &mut std::io::sink())
        .map_err(|e| anyhow::anyhow!("volume {}: corrupt or truncated ({e})", path.display()))?;
    if skipped != skip {
        bail!(
            "volume {}: truncated (ends before the voxel data)",
            path.display()
        );
    }
    let mut raw = Vec::new();
    raw.try_reserve_exact(raw_bytes as usize)
        .map_err(|_| anyhow::anyhow!("volume {}: not enough memory", path.display()))?;
    let got = (&mut s)
        .take(raw_bytes)
        .read_to_end(&mut raw)
        .map_err(|e| {
            anyhow::anyhow!(
                "volume {}: corrupt or truncated compressed data ({e})",
                path.display()
            )
        })?;
    if (got as u64) != raw_bytes {
        bail!(
            "volume {}: truncated: {got} of {raw_bytes} bytes of voxel data",
            path.display()
        );
    }
    let data = decode(&raw, l.dtype, l.endianness, l.slope, l.inter, n as usize);
    Ok(Volume {
        dims: l.dims,
        spacing: l.spacing,
        channels,
        data,
    })
}

fn decode(raw: &[u8], t: NiftiType, e: Endianness, slope: f32, inter: f32, n: usize) -> Samples {
    let le = matches!(e, Endianness::Little);
    macro_rules! conv {
        ($ty:ty, $sz:expr) => {
            raw.chunks_exact($sz)
                .map(|c| {
                    let b: [u8; $sz] = c.try_into().unwrap_or([0; $sz]);
                    if le {
                        <$ty>::from_le_bytes(b)
                    } else {
                        <$ty>::from_be_bytes(b)
                    }
                })
                .collect::<Vec<$ty>>()
        };
    }
    let identity = slope == 1.0 && inter == 0.0;
    let scaled = |v: Vec<f32>| {
        if identity {
            v
        } else {
            v.into_iter().map(|x| x * slope + inter).collect()
        }
    };
    match t {
        NiftiType::Uint8 if identity => Samples::U8(raw[..n].to_vec()),
        NiftiType::Uint16 if identity => Samples::U16(conv!(u16, 2)),
        NiftiType::Rgb24 | NiftiType::Rgba32 => Samples::U8(raw.to_vec()),
        NiftiType::Uint8 => Samples::F32(scaled(raw.iter().map(|&v| v as f32).collect())),
        NiftiType::Int8 => Samples::F32(scaled(raw.iter().map(|&v| v as i8 as f32).collect())),
        NiftiType::Uint16 => Samples::F32(scaled(
            conv!(u16, 2).into_iter().map(|v| v as f32).collect(),
        )),
        NiftiType::Int16 => Samples::F32(scaled(
            conv!(i16, 2).into_iter().map(|v| v as f32).collect(),
        )),
        NiftiType::Uint32 => Samples::F32(scaled(
            conv!(u32, 4).into_iter().map(|v| v as f32).collect(),
        )),
        NiftiType::Int32 => Samples::F32(scaled(
            conv!(i32, 4).into_iter().map(|v| v as f32).collect(),
        )),
        NiftiType::Uint64 => Samples::F32(scaled(
            conv!(u64, 8).into_iter().map(|v| v as f32).collect(),
        )),
        NiftiType::Int64 => Samples::F32(scaled(
            conv!(i64, 8).into_iter().map(|v| v as f32).collect(),
        )),
        NiftiType::Float32 => Samples::F32(scaled(conv!(f32, 4))),
        NiftiType::Float64 => Samples::F32(scaled(
            conv!(f64, 8).into_iter().map(|v| v as f32).collect(),
        )),
        // Refused in read_header.
        _ => Samples::F32(vec![0.0; n]),
    }
}

impl Volume {
    pub fn slice_count(&self, axis: Axis) -> usize {
        match axis {
            Axis::X => self.dims[0],
            Axis::Y => self.dims[1],
            Axis::Z => self.dims[2],
        }
    }

    /// One 2-D slice (see the module docs for orientation).
    pub fn slice(&self, axis: Axis, index: usize) -> Result<Plane> {
        let [nx, ny, nz] = self.dims;
        let count = self.slice_count(axis);
        if index >= count {
            bail!(
                "slice {index} does not exist: the volume has {count} slices along {axis:?} (0..{})",
                count.saturating_sub(1)
            );
        }
        // (width axis length, height axis length, voxel index of (col, row_from_bottom))
        let (w, h): (usize, usize) = match axis {
            Axis::Z => (nx, ny),
            Axis::Y => (nx, nz),
            Axis::X => (ny, nz),
        };
        let voxel = |col: usize, up: usize| -> usize {
            match axis {
                Axis::Z => col + nx * (up + ny * index),
                Axis::Y => col + nx * (index + ny * up),
                Axis::X => index + nx * (col + ny * up),
            }
        };
        let c = self.channels;
        let mut order = Vec::with_capacity(w * h);
        for row in 0..h {
            let up = h - 1 - row;
            for col in 0..w {
                order.push(voxel(col, up));
            }
        }
        let samples = match &self.data {
            Samples::U8(v) => Samples::U8(
                order
                    .iter()
                    .flat_map(|&i| v[i * c..i * c + c].iter().copied())
                    .collect(),
            ),
            Samples::U16(v) => Samples::U16(order.iter().map(|&i| v[i]).collect()),
            Samples::U32(v) => Samples::U32(order.iter().map(|&i| v[i]).collect()),
            Samples::F32(v) => Samples::F32(order.iter().map(|&i| v[i]).collect()),
        };
        Ok(Plane {
            width: w,
            height: h,
            channels: c,
            samples,
        })
    }
}
