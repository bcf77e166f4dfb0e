//! Training on large images by tiles: an image whose longer side exceeds `tile_above` is
//! replaced, for each of its objects, by the tile (core + halo, as in
//! [`crate::predict::tiling`]) whose core holds the centre of the object's box, so the model
//! trains at the resolution it will predict at instead of on the whole image squeezed into
//! 1024². An object larger than its tile gets its own crop: its box grown by the halo.
//! Objects keep their order and indices, so a train/validation split made before stays valid
//! (and whole-image splits stay whole: tiles of a validation image are not trained on).

use std::collections::HashMap;

use image::RgbImage;

use super::dataset::{Object, TrainData};
use crate::predict::PromptInput;
use crate::predict::tiling::{Placement, Rect, TileConfig, place_prompt, tile_grid};

/// What [`into_tiles`] did, for the run's log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TilingSummary {
    /// Source images that were tiled.
    pub images_tiled: usize,
    /// Crops made of them (tiles plus own crops).
    pub crops: usize,
    /// Objects larger than their tile, given their own crop.
    pub own_crops: usize,
}

fn crop_mask(m: &[bool], w: usize, r: Rect) -> Vec<bool> {
    (r.y0..r.y1)
        .flat_map(|y| m[y * w + r.x0..y * w + r.x1].iter().copied())
        .collect()
}

/// The region object `m` (`w`×`h`) is trained in: its tile, or its box grown by `halo`.
fn region_of(m: &[bool], w: usize, h: usize, cfg: &TileConfig) -> Option<(Rect, bool)> {
    let b = crate::metrics::bbox(m, w)?;
    let grid = tile_grid(w, h, cfg.tile, cfg.halo);
    let prompt = PromptInput {
        bbox: Some(b.map(|v| v as f64)),
        ..Default::default()
    };
    Some(match place_prompt(&grid, &prompt) {
        Placement::Tile(i) => (grid[i].outer, false),
        Placement::Whole => (
            Rect {
                x0: b[0].saturating_sub(cfg.halo),
                y0: b[1].saturating_sub(cfg.halo),
                x1: (b[2] + 1 + cfg.halo).min(w),
                y1: (b[3] + 1 + cfg.halo).min(h),
            },
            true,
        ),
    })
}

/// `data` with every image above `cfg.tile_above` replaced by the crops its objects need
/// (each crop made once, shared by the objects it holds); other images unchanged.
pub fn into_tiles(data: TrainData, cfg: &TileConfig) -> (TrainData, TilingSummary) {
    let mut sum = TilingSummary::default();
    let TrainData {
        images,
        image_names,
        objects,
        train,
        val,
    } = data;
    let mut out_images: Vec<RgbImage> = Vec::new();
    let mut out_names: Vec<String> = Vec::new();
    // (source image, region) → new image index; untiled images keyed by the full frame.
    let mut index: HashMap<(usize, [usize; 4]), usize> = HashMap::new();
    let mut out_objects = Vec::with_capacity(objects.len());
    let mut tiled = vec![false; images.len()];
    for o in objects {
        let img = &images[o.image];
        let (w, h) = (img.width() as usize, img.height() as usize);
        let region = cfg
            .applies(w, h)
            .then(|| region_of(&o.mask, w, h, cfg))
            .flatten();
        let r = region.map_or(
            Rect {
                x0: 0,
                y0: 0,
                x1: w,
                y1: h,
            },
            |(r, _)| r,
        );
        let key = (o.image, r.to_array());
        let new_i = *index.entry(key).or_insert_with(|| {
            let (im, name) = match region {
                None => (img.clone(), image_names[o.image].clone()),
                Some(_) => {
                    let crop = r.crop(img);
                    let name = format!(
                        "{} [x {}..{}, y {}..{}]",
                        image_names[o.image], r.x0, r.x1, r.y0, r.y1
                    );
                    (crop, name)
                }
            };
            out_images.push(im);
            out_names.push(name);
            out_images.len() - 1
        });
        let mask = match region {
            None => o.mask,
            Some((_, own)) => {
                tiled[o.image] = true;
                sum.own_crops += usize::from(own);
                crop_mask(&o.mask, w, r)
            }
        };
        out_objects.push(Object {
            image: new_i,
            area: mask.iter().filter(|&&v| v).count(),
            mask,
        });
    }
    sum.images_tiled = tiled.iter().filter(|&&t| t).count();
    sum.crops = index
        .keys()
        .filter(|(i, r)| {
            tiled[*i]
                && *r
                    != [
                        0,
                        0,
                        images[*i].width() as usize,
                        images[*i].height() as usize,
                    ]
        })
        .count();
    let mut data = TrainData::new(out_images, out_names, out_objects);
    data.train = train;
    data.val = val;
    (data, sum)
}

#[cfg(test)]
#[path = "tiles_tests.rs"]
mod tests;
