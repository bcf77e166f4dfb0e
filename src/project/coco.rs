//! COCO instance-segmentation JSON with RLE masks, byte-compatible with `pycocotools`
//! (`mask.encode` / `mask.decode`): counts run over the mask in column-major order starting
//! with background, and are stored in the compressed string form.

use anyhow::{Result, bail};
use serde_json::{Value, json};

use crate::project::coco_polygon::outer_polygons;
use crate::sam::amg::{Rle, coco_string_counts};

/// How annotations carry their masks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum CocoSegmentation {
    /// Compressed RLE: exact, holes included.
    #[default]
    Rle,
    /// Pixel-edge polygons of each part's outer boundary (see [`crate::project::coco_polygon`]): exact for
    /// masks without holes; holes come back filled.
    Polygon,
}

/// The `segmentation` value of one annotation.
pub fn segmentation(mask: &[bool], width: usize, height: usize, kind: CocoSegmentation) -> Value {
    match kind {
        CocoSegmentation::Rle => json!({
            "size": [height, width],
            "counts": rle_to_string(&rle_counts(mask, width, height)),
        }),
        CocoSegmentation::Polygon => json!(outer_polygons(mask, width, height)),
    }
}

/// Uncompressed RLE counts of a row-major `width × height` mask, in COCO's column-major order.
pub fn rle_counts(mask: &[bool], width: usize, height: usize) -> Vec<u32> {
    Rle::from_mask(mask, height, width).counts
}

/// Decodes counts back to a row-major mask.
pub fn rle_decode(counts: &[u32], width: usize, height: usize) -> Result<Vec<bool>> {
    let total: u64 = counts.iter().map(|&c| c as u64).sum();
    if total != (width * height) as u64 {
        bail!("RLE covers {total} pixels, the mask has {}", width * height);
    }
    let mut mask = vec![false; width * height];
    let mut i = 0usize;
    let mut v = false;
    for &c in counts {
        for _ in 0..c {
            let (x, y) = (i / height, i % height);
            mask[y * width + x] = v;
            i += 1;
        }
        v = !v;
    }
    Ok(mask)
}

/// pycocotools' `rleToString`: LEB128-like, 5 bits per char, deltas from counts[i-2].
pub fn rle_to_string(counts: &[u32]) -> String {
    Rle {
        size: [0, 0],
        counts: counts.to_vec(),
    }
    .to_coco_string()
}

/// pycocotools' `rleFrString`.
pub fn rle_from_string(s: &str) -> Result<Vec<u32>> {
    coco_string_counts(s).map_err(anyhow::Error::msg)
}

/// One annotated object for export.
pub struct CocoObject<'a> {
    pub id: u64,
    pub category: &'a str,
    pub mask: &'a [bool],
}

pub struct CocoImage<'a> {
    pub id: u64,
    pub file_name: &'a str,
    pub width: usize,
    pub height: usize,
    pub objects: Vec<CocoObject<'a>>,
}

/// Builds a COCO dataset (`images`, `annotations`, `categories`). Empty masks are skipped.
pub fn build(images: &[CocoImage], description: &str, kind: CocoSegmentation) -> Value {
    let mut categories: Vec<String> = Vec::new();
    let mut anns = Vec::new();
    let mut imgs = Vec::new();
    for im in images {
        imgs.push(json!({ "id": im.id, "file_name": im.file_name, "width": im.width, "height": im.height }));
        for o in &im.objects {
            let Some((area, [x0, y0, x1, y1])) =
                crate::project::project::mask_stats(o.mask, im.width)
            else {
                continue;
            };
            let cat = match categories.iter().position(|c| c == o.category) {
                Some(i) => i,
                None => {
                    categories.push(o.category.to_string());
                    categories.len() - 1
                }
            };
            anns.push(json!({
                "id": o.id,
                "image_id": im.id,
                "category_id": cat + 1,
                "segmentation": segmentation(o.mask, im.width, im.height, kind),
                "area": area,
                "bbox": [x0, y0, x1 - x0 + 1, y1 - y0 + 1],
                "iscrowd": 0,
            }));
        }
    }
    let cats: Vec<Value> = categories
        .iter()
        .enumerate()
        .map(|(i, c)| json!({ "id": i + 1, "name": c, "supercategory": "" }))
        .collect();
    json!({
        "info": { "description": description, "version": "1.0", "contributor": "segadapt",
                  "date_created": crate::project::project::now_secs() },
        "licenses": [],
        "images": imgs,
        "annotations": anns,
        "categories": cats,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rle_roundtrip() {
        let (w, h) = (7, 5);
        let mask: Vec<bool> = (0..w * h).map(|i| (i * 7919 % 11) < 4 || i == 34).collect();
        let c = rle_counts(&mask, w, h);
        assert_eq!(rle_decode(&c, w, h).unwrap(), mask);
        assert_eq!(rle_from_string(&rle_to_string(&c)).unwrap(), c);
    }

    #[test]
    fn matches_pycocotools() {
        // pycocotools.mask.encode(np.asfortranarray(m)) of a 4x3 mask with m[1,1]=m[2,1]=1
        let (w, h) = (3, 4);
        let mut m = vec![false; w * h];
        m[w + 1] = true;
        m[2 * w + 1] = true;
        let c = rle_counts(&m, w, h);
        assert_eq!(c, vec![5, 2, 5]);
        assert_eq!(rle_to_string(&c), "525");
        let big = vec![100000u32, 3, 7, 2];
        assert_eq!(rle_from_string(&rle_to_string(&big)).unwrap(), big);
    }
}
