//! Label images: 0 background, k > 0 object k.

use std::path::Path;

use anyhow::{Result, bail};

use super::{ImportOptions, Samples, load_plane};

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
