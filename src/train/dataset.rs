//! Training data: objects (instance masks) of a data dir or project, a deterministic
//! train/validation split, and dihedral + intensity augmentation.

use std::path::Path;

use anyhow::{Result, bail};
use image::RgbImage;
use rand::Rng;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::eval::list_pairs;
use crate::project::import::{load_labels, load_rgb};

#[derive(Clone, Debug)]
pub struct Object {
    pub image: usize,
    /// Binary mask at the image's size, row-major.
    pub mask: Vec<bool>,
    pub area: usize,
}

#[derive(Clone, Debug)]
pub struct TrainData {
    pub images: Vec<RgbImage>,
    pub image_names: Vec<String>,
    pub objects: Vec<Object>,
    pub train: Vec<usize>,
    pub val: Vec<usize>,
}

/// What went into a run, for the model card.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DataManifest {
    pub images: Vec<String>,
    pub n_objects: usize,
    pub n_train: usize,
    pub n_val: usize,
    pub split: String,
}

impl TrainData {
    pub fn new(images: Vec<RgbImage>, image_names: Vec<String>, objects: Vec<Object>) -> Self {
        Self {
            images,
            image_names,
            objects,
            train: Vec::new(),
            val: Vec::new(),
        }
    }

    /// Loads `images/` + `masks/` label images; objects smaller than `min_area` are skipped.
    pub fn from_dir(dir: &Path, min_area: usize) -> Result<Self> {
        let mut images = Vec::new();
        let mut names = Vec::new();
        let mut objects = Vec::new();
        for (ip, mp) in list_pairs(dir)? {
            let img = load_rgb(&ip)?;
            let labels = load_labels(&mp)?;
            if (labels.width, labels.height) != (img.width() as usize, img.height() as usize) {
                bail!(
                    "mask {} does not match the size of image {}",
                    mp.display(),
                    ip.display()
                );
            }
            let idx = images.len();
            for id in labels.ids() {
                let mask = labels.mask_of(id);
                let area = mask.iter().filter(|&&m| m).count();
                if area >= min_area.max(1) {
                    objects.push(Object {
                        image: idx,
                        mask,
                        area,
                    });
                }
            }
            names.push(
                ip.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .to_string(),
            );
            images.push(img);
        }
        if objects.is_empty() {
            bail!("no objects found in {}", dir.display());
        }
        Ok(Self::new(images, names, objects))
    }

    /// Deterministic split: whole images go to validation when there are ≥ 3 images, else
    /// objects are split within images. At least one object stays on each side.
    pub fn split(&mut self, val_fraction: f64, seed: u64) -> String {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5EED_5B17);
        let n_val_target = ((self.objects.len() as f64) * val_fraction)
            .round()
            .max(1.0) as usize;
        self.train.clear();
        self.val.clear();
        let how;
        // Images that hold objects (an image without any belongs to neither side).
        let with_objects: Vec<usize> = (0..self.images.len())
            .filter(|&i| self.objects.iter().any(|o| o.image == i))
            .collect();
        if with_objects.len() >= 3 {
            let n_img = with_objects.len();
            let mut imgs = with_objects;
            imgs.shuffle(&mut rng);
            let mut val_imgs = Vec::new();
            let mut count = 0;
            for i in imgs {
                // At least one image stays for training: the fallback below would otherwise
                // move an object of a validation image into training (an image on both sides).
                if count >= n_val_target || val_imgs.len() + 1 >= n_img {
                    break;
                }
                count += self.objects.iter().filter(|o| o.image == i).count();
                val_imgs.push(i);
            }
            for (k, o) in self.objects.iter().enumerate() {
                if val_imgs.contains(&o.image) {
                    self.val.push(k)
                } else {
                    self.train.push(k)
                }
            }
            how = format!("by image ({} validation images)", val_imgs.len());
        } else {
            let mut idx: Vec<usize> = (0..self.objects.len()).collect();
            idx.shuffle(&mut rng);
            let n_val = n_val_target.min(self.objects.len().saturating_sub(1));
            self.val = idx[..n_val].to_vec();
            self.train = idx[n_val..].to_vec();
            self.val.sort_unstable();
            self.train.sort_unstable();
            how = "by object (fewer than 3 images with objects)".to_string();
        }
        if self.train.is_empty() && !self.val.is_empty() {
            self.train.push(self.val.pop().unwrap());
        }
        how
    }

    pub fn manifest(&self, split: &str) -> DataManifest {
        DataManifest {
            images: self.image_names.clone(),
            n_objects: self.objects.len(),
            n_train: self.train.len(),
            n_val: self.val.len(),
            split: split.to_string(),
        }
    }
}

/// One of the 8 flips/rotations by 90°: bit 0 transpose, bit 1 flip x, bit 2 flip y.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Dihedral(pub u8);

impl Dihedral {
    pub fn out_size(&self, w: usize, h: usize) -> (usize, usize) {
        if self.0 & 1 == 1 { (h, w) } else { (w, h) }
    }
    /// Source pixel of output pixel (x, y).
    fn src(&self, x: usize, y: usize, w: usize, h: usize) -> (usize, usize) {
        let (ow, oh) = self.out_size(w, h);
        let mut x = x;
        let mut y = y;
        if self.0 & 2 != 0 {
            x = ow - 1 - x;
        }
        if self.0 & 4 != 0 {
            y = oh - 1 - y;
        }
        if self.0 & 1 == 1 { (y, x) } else { (x, y) }
    }
    pub fn apply_mask(&self, m: &[bool], w: usize, h: usize) -> Vec<bool> {
        let (ow, oh) = self.out_size(w, h);
        let mut out = vec![false; ow * oh];
        for y in 0..oh {
            for x in 0..ow {
                let (sx, sy) = self.src(x, y, w, h);
                out[y * ow + x] = m[sy * w + sx];
            }
        }
        out
    }
    pub fn apply_image(&self, img: &RgbImage) -> RgbImage {
        let (w, h) = (img.width() as usize, img.height() as usize);
        let (ow, oh) = self.out_size(w, h);
        let raw = img.as_raw();
        let mut out = vec![0u8; ow * oh * 3];
        for y in 0..oh {
            for x in 0..ow {
                let (sx, sy) = self.src(x, y, w, h);
                out[(y * ow + x) * 3..(y * ow + x) * 3 + 3]
                    .copy_from_slice(&raw[(sy * w + sx) * 3..(sy * w + sx) * 3 + 3]);
            }
        }
        RgbImage::from_raw(ow as u32, oh as u32, out).expect("size")
    }
}

/// Mild brightness/contrast change: v' = (v - 128)·c + 128 + b.
pub fn jitter_intensity(img: &RgbImage, rng: &mut StdRng, strength: f32) -> RgbImage {
    let c = 1.0 + rng.random_range(-strength..=strength);
    let b = 255.0 * rng.random_range(-strength..=strength) * 0.5;
    let raw: Vec<u8> = img
        .as_raw()
        .iter()
        .map(|&v| {
            ((v as f32 - 128.0) * c + 128.0 + b)
                .round()
                .clamp(0.0, 255.0) as u8
        })
        .collect();
    RgbImage::from_raw(img.width(), img.height(), raw).expect("size")
}
