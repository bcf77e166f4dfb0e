//! Large images by tiles, as micro-sam tiles them (tile shape + halo): the image is cut into
//! cores of `tile` px (the last row and column hold the remainder) and each core, grown by
//! `halo` px on every side and clamped at the image border, is embedded on its own. A prompt
//! is decoded in the tile whose core holds the prompt's centre, provided that tile with its
//! halo holds the whole prompt; otherwise it falls back to the whole image squeezed into the
//! model input. The mask is pasted back at full size (0 outside that tile).
//!
//! A 4000² image squeezed into 1024² loses objects of a few pixels; a tile keeps its
//! pixels at 1024 / (tile + 2·halo) of their size instead of 1024 / 4000.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use image::RgbImage;

use super::{ImageEmbedding, Predictor, PromptInput};

/// When and how an image is tiled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct TileConfig {
    /// Core size of a tile (px).
    pub tile: usize,
    /// Context added on every side of a core (px), clamped at the image border.
    pub halo: usize,
    /// Images whose longer side exceeds this are tiled; 0: never.
    pub tile_above: usize,
}

impl Default for TileConfig {
    fn default() -> Self {
        TileConfig {
            tile: 1024,
            halo: 256,
            tile_above: 2048,
        }
    }
}

/// Smallest core accepted: the decoder's masks come from a 256² low-resolution grid, so a
/// smaller core would mostly be halo.
pub const MIN_TILE: usize = 32;

impl TileConfig {
    /// No tiling: every image is squeezed whole into the model input.
    pub fn off() -> Self {
        TileConfig {
            tile_above: 0,
            ..Default::default()
        }
    }

    pub fn validate(&self) -> Result<()> {
        if self.tile < MIN_TILE {
            bail!("--tile {} is too small (at least {MIN_TILE} px)", self.tile);
        }
        Ok(())
    }

    /// Whether a `w`×`h` image is tiled.
    pub fn applies(&self, w: usize, h: usize) -> bool {
        self.tile_above > 0 && w.max(h) > self.tile_above
    }
}

/// Half-open pixel rectangle `[x0, x1) × [y0, y1)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rect {
    pub x0: usize,
    pub y0: usize,
    pub x1: usize,
    pub y1: usize,
}

impl Rect {
    pub fn width(&self) -> usize {
        self.x1 - self.x0
    }
    pub fn height(&self) -> usize {
        self.y1 - self.y0
    }
    pub fn contains(&self, x: usize, y: usize) -> bool {
        (self.x0..self.x1).contains(&x) && (self.y0..self.y1).contains(&y)
    }
    pub fn to_array(&self) -> [usize; 4] {
        [self.x0, self.y0, self.x1, self.y1]
    }

    /// The pixels of `image` inside this rectangle, as an image of their own.
    pub fn crop(&self, image: &RgbImage) -> RgbImage {
        image::imageops::crop_imm(
            image,
            self.x0 as u32,
            self.y0 as u32,
            self.width() as u32,
            self.height() as u32,
        )
        .to_image()
    }
}

/// One tile: the core it answers for and the region it is embedded from (core + halo).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tile {
    pub core: Rect,
    pub outer: Rect,
}

/// `[start, end)` of the cores along one axis: `0, tile, 2·tile, …`, the last one cut at
/// `len` (micro-sam's `blocking`).
fn cores(len: usize, tile: usize) -> Vec<(usize, usize)> {
    (0..len.div_ceil(tile))
        .map(|i| (i * tile, ((i + 1) * tile).min(len)))
        .collect()
}

/// The tiles of a `w`×`h` image, row by row. The cores cover every pixel exactly once; each
/// outer region is its core grown by `halo` and clamped to the image.
pub fn tile_grid(w: usize, h: usize, tile: usize, halo: usize) -> Vec<Tile> {
    let tile = tile.max(1);
    let (xs, ys) = (cores(w, tile), cores(h, tile));
    let mut out = Vec::with_capacity(xs.len() * ys.len());
    for &(y0, y1) in &ys {
        for &(x0, x1) in &xs {
            out.push(Tile {
                core: Rect { x0, y0, x1, y1 },
                outer: Rect {
                    x0: x0.saturating_sub(halo),
                    y0: y0.saturating_sub(halo),
                    x1: (x1 + halo).min(w),
                    y1: (y1 + halo).min(h),
                },
            });
        }
    }
    out
}

/// Where a prompt is decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// In tile `i` of the grid.
    Tile(usize),
    /// In the whole image squeezed into the model input: no tile with its halo holds the
    /// whole prompt.
    Whole,
}

/// x0, y0, x1, y1 over the prompt's box corners and points; `None` without either.
pub fn prompt_extent(p: &PromptInput) -> Option<[f64; 4]> {
    let mut xy: Vec<[f64; 2]> = p.points.iter().map(|q| [q.x, q.y]).collect();
    if let Some(b) = p.bbox {
        xy.push([b[0], b[1]]);
        xy.push([b[2], b[3]]);
    }
    let first = *xy.first()?;
    Some(
        xy.iter()
            .fold([first[0], first[1], first[0], first[1]], |e, q| {
                [
                    e[0].min(q[0]),
                    e[1].min(q[1]),
                    e[2].max(q[0]),
                    e[3].max(q[1]),
                ]
            }),
    )
}

/// The tile for a prompt (in image pixels, already checked to lie inside the image): the
/// one whose core holds the centre of the prompt's extent, if its outer region holds the
/// whole extent (coordinates up to `x1 − 1`, as a prompt must lie inside an image).
pub fn place_prompt(grid: &[Tile], p: &PromptInput) -> Placement {
    // A low-resolution mask prompt is in the frame of the image it came from.
    if p.mask_input.is_some() && grid.len() > 1 {
        return Placement::Whole;
    }
    let Some([x0, y0, x1, y1]) = prompt_extent(p) else {
        return Placement::Whole;
    };
    let (cx, cy) = ((x0 + x1) / 2.0, (y0 + y1) / 2.0);
    if cx < 0.0 || cy < 0.0 {
        return Placement::Whole;
    }
    let Some(i) = grid
        .iter()
        .position(|t| t.core.contains(cx.floor() as usize, cy.floor() as usize))
    else {
        return Placement::Whole;
    };
    let o = grid[i].outer;
    let holds = x0 >= o.x0 as f64
        && y0 >= o.y0 as f64
        && x1 <= (o.x1 - 1) as f64
        && y1 <= (o.y1 - 1) as f64;
    if holds {
        Placement::Tile(i)
    } else {
        Placement::Whole
    }
}

/// The order to decode `prompts` in so that each tile is embedded once: tile by tile (in
/// grid order), prompts larger than a tile last, the given order kept within each group.
pub fn tile_order(grid: &[Tile], prompts: &[PromptInput]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..prompts.len()).collect();
    order.sort_by_key(|&i| match place_prompt(grid, &prompts[i]) {
        Placement::Tile(t) => t,
        Placement::Whole => usize::MAX,
    });
    order
}

/// The prompt in the pixel frame of region `r` (its top-left corner becomes 0, 0).
pub fn prompt_in(p: &PromptInput, r: Rect) -> PromptInput {
    let (dx, dy) = (r.x0 as f64, r.y0 as f64);
    let mut q = p.clone();
    for pt in &mut q.points {
        pt.x -= dx;
        pt.y -= dy;
    }
    q.bbox = p.bbox.map(|b| [b[0] - dx, b[1] - dy, b[2] - dx, b[3] - dy]);
    q
}

/// A row-major mask of region `r` placed into a `w`×`h` image; 0 outside `r`.
pub fn paste(mask: &[bool], r: Rect, w: usize, h: usize) -> Vec<bool> {
    let mut out = vec![false; w * h];
    let rw = r.width();
    for y in r.y0..r.y1.min(h) {
        let src = &mask[(y - r.y0) * rw..(y - r.y0 + 1) * rw];
        out[y * w + r.x0..y * w + r.x0 + rw].copy_from_slice(src);
    }
    out
}

/// One prompt decoded on a (possibly tiled) image.
#[derive(Clone, Debug)]
pub struct TiledPrediction {
    /// Full-size binary masks (SAM's candidates).
    pub masks: Vec<Vec<bool>>,
    pub iou: Vec<f32>,
    pub placement: Placement,
    /// The image region the masks were decoded in (the whole image when not tiled or for
    /// [`Placement::Whole`]).
    pub region: Rect,
}

impl TiledPrediction {
    /// Index of the mask with the highest predicted IoU.
    pub fn best(&self) -> usize {
        (0..self.iou.len()).fold(0, |b, i| if self.iou[i] > self.iou[b] { i } else { b })
    }
}

/// Tile embeddings kept at once (least recently used dropped first): memory stays bounded
/// on a 16384² image (256 tiles: 4 MB each would be 1 GB) while clicks in one area (at most
/// 2×2 tiles) reuse their embeddings.
pub const MAX_CACHED_TILES: usize = 4;

/// A predictor over one image that embeds tiles lazily: only those a prompt needs, the most
/// recent [`MAX_CACHED_TILES`] kept. With tiling off (or an image no larger than
/// `tile_above`) the grid is one tile, the whole image, and every prompt is decoded exactly
/// as [`Predictor`] decodes it.
pub struct TiledPredictor<'a> {
    predictor: &'a Predictor,
    image: &'a RgbImage,
    grid: Vec<Tile>,
    /// (tile index, embedding), most recently used last.
    tiles: Vec<(usize, ImageEmbedding)>,
    whole: Option<ImageEmbedding>,
    /// Time spent in image embeddings, and their count.
    pub embed_time: Duration,
    pub embeddings: usize,
}

impl<'a> TiledPredictor<'a> {
    pub fn new(predictor: &'a Predictor, image: &'a RgbImage, cfg: &TileConfig) -> Result<Self> {
        cfg.validate()?;
        let (w, h) = (image.width() as usize, image.height() as usize);
        let grid = if cfg.applies(w, h) {
            tile_grid(w, h, cfg.tile, cfg.halo)
        } else {
            tile_grid(w, h, w.max(h).max(1), 0)
        };
        Ok(TiledPredictor {
            predictor,
            image,
            grid,
            tiles: Vec::new(),
            whole: None,
            embed_time: Duration::ZERO,
            embeddings: 0,
        })
    }

    pub fn grid(&self) -> &[Tile] {
        &self.grid
    }

    pub fn is_tiled(&self) -> bool {
        self.grid.len() > 1
    }

    fn full(&self) -> Rect {
        Rect {
            x0: 0,
            y0: 0,
            x1: self.image.width() as usize,
            y1: self.image.height() as usize,
        }
    }

    fn embed(&mut self, r: Rect) -> ImageEmbedding {
        let t = Instant::now();
        let e = if r == self.full() {
            self.predictor.set_image(self.image)
        } else {
            self.predictor.set_image(&r.crop(self.image))
        };
        self.embed_time += t.elapsed();
        self.embeddings += 1;
        e
    }

    /// Decodes one prompt (image pixels, inside the image) in its tile.
    pub fn predict(&mut self, p: &PromptInput, multimask: bool) -> TiledPrediction {
        let placement = place_prompt(&self.grid, p);
        let region = match placement {
            Placement::Tile(i) => self.grid[i].outer,
            Placement::Whole => self.full(),
        };
        let emb = match placement {
            Placement::Tile(i) => {
                let hit = self.tiles.iter().position(|(t, _)| *t == i);
                let entry = match hit {
                    Some(k) => self.tiles.remove(k),
                    None => (i, self.embed(region)),
                };
                if self.tiles.len() >= MAX_CACHED_TILES {
                    self.tiles.remove(0);
                }
                self.tiles.push(entry);
                &self.tiles.last().expect("pushed above").1
            }
            Placement::Whole => {
                if self.whole.is_none() {
                    let e = self.embed(region);
                    self.whole = Some(e);
                }
                self.whole.as_ref().expect("embedded above")
            }
        };
        let pred = self
            .predictor
            .predict(emb, &prompt_in(p, region), multimask);
        let (w, h) = (self.image.width() as usize, self.image.height() as usize);
        let masks = (0..pred.masks.len())
            .map(|k| {
                let m = pred.binary(k);
                if region == self.full() {
                    m
                } else {
                    paste(&m, region, w, h)
                }
            })
            .collect();
        TiledPrediction {
            masks,
            iou: pred.iou,
            placement,
            region,
        }
    }
}

#[cfg(test)]
#[path = "tiling_tests.rs"]
mod tests;
