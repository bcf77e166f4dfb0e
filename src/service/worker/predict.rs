//! Prompt → mask on the worker. Large images: an image whose longer side exceeds the app's `tile_above` is
//! decoded in the tile that holds the prompt (see [`crate::predict::tiling`]), so small
//! objects keep their pixels instead of being squeezed with the whole image into 1024².
//! Tile embeddings share the worker's bounded memory cache with whole-image ones and are not
//! written to disk (they are cheap to redo and would multiply the cache folder).

use std::time::Instant;

use std::sync::Arc;

use crate::predict::tiling::{
    Placement, Rect, TileConfig, paste, place_prompt, prompt_in, tile_grid,
};
use crate::predict::{ImageEmbedding, PromptInput};

use super::messages::{Event, ImageKey, PredView, Slot};
use super::{Worker, guarded};

impl Worker {
    pub(super) fn predict(
        &mut self,
        slot: Slot,
        key: ImageKey,
        mut prompt: PromptInput,
        multimask: bool,
        seq: u64,
        tiles: &TileConfig,
    ) {
        if self.slot(slot).is_none() {
            self.emit(Event::PredictError {
                slot,
                key,
                seq,
                error: "no model loaded".into(),
            });
            return;
        }
        // Bad tile settings (hand-edited settings file) are an error, not a silent fallback.
        if let Err(e) = tiles.validate() {
            self.emit(Event::PredictError {
                slot,
                key,
                seq,
                error: format!("tile settings (\"tiles\" in app-settings.json): {e:#}"),
            });
            return;
        }
        let tile = self.tile_for(&key, &mut prompt, tiles);
        let emb = match tile {
            Some(r) => self.tile_embedding(slot, &key, r),
            None => self.embedding(slot, &key, false),
        };
        let emb = match emb {
            Ok(e) => e,
            Err(error) => {
                self.emit(Event::PredictError {
                    slot,
                    key,
                    seq,
                    error,
                });
                return;
            }
        };
        let t = Instant::now();
        let ls = self.slot(slot).expect("checked");
        let prompt = match tile {
            Some(r) => prompt_in(&prompt, r),
            None => prompt,
        };
        let res = guarded(|| Ok(ls.predictor.predict(&emb, &prompt, multimask)));
        let full = self
            .images
            .get(&key.id)
            .map(|i| [i.height() as usize, i.width() as usize]);
        match res {
            Ok(p) => {
                // A tile's masks go back into the whole image (0 outside the tile).
                let (size, tile) = match (tile, full) {
                    (Some(r), Some(hw)) => (hw, Some(r)),
                    _ => (p.size, None),
                };
                let mask = |i: usize| match tile {
                    Some(r) => paste(&p.binary(i), r, size[1], size[0]),
                    None => p.binary(i),
                };
                let view = PredView {
                    masks: (0..p.masks.len()).map(|i| Arc::new(mask(i))).collect(),
                    iou: p.iou.clone(),
                    low_res: p.low_res.iter().cloned().map(Arc::new).collect(),
                    size,
                    ms: t.elapsed().as_secs_f64() * 1e3,
                    tile: tile.map(|r| r.to_array()),
                };
                self.emit(Event::Predicted {
                    slot,
                    key,
                    seq,
                    pred: Arc::new(view),
                });
            }
            Err(error) => self.emit(Event::PredictError {
                slot,
                key,
                seq,
                error,
            }),
        }
    }

    /// Where a prompt on `key` is decoded under `tiles`: `Some(region)` for a tile of a
    /// tiled image, `None` for the whole image (not tiled, or a prompt larger than a tile).
    /// On a tiled image the prompt loses its mask input: the previous answer's logits may be
    /// in another tile's frame.
    pub(super) fn tile_for(
        &self,
        key: &ImageKey,
        prompt: &mut PromptInput,
        tiles: &TileConfig,
    ) -> Option<Rect> {
        let img = self.images.get(&key.id)?;
        let (w, h) = (img.width() as usize, img.height() as usize);
        if !tiles.applies(w, h) {
            return None;
        }
        prompt.mask_input = None;
        let grid = tile_grid(w, h, tiles.tile, tiles.halo);
        match place_prompt(&grid, prompt) {
            Placement::Tile(i) if grid.len() > 1 => Some(grid[i].outer),
            _ => None,
        }
    }

    /// The embedding of region `r` of `key`'s image: memory, then the encoder on the crop.
    pub(super) fn tile_embedding(
        &mut self,
        slot: Slot,
        key: &ImageKey,
        r: Rect,
    ) -> Result<ImageEmbedding, String> {
        let Some(ls) = self.slot(slot) else {
            return Err("no model loaded".into());
        };
        let ident = ls.ident.clone();
        let sha = format!("{}@tile{},{},{},{}", key.sha256, r.x0, r.y0, r.x1, r.y1);
        if let Some(e) = self.cache.get(&ident, &sha) {
            return Ok(e);
        }
        let Some(img) = self.images.get(&key.id).cloned() else {
            return Err("the image is not loaded".into());
        };
        self.encode(slot, key, &r.crop(img.as_ref()), |w, e| {
            w.cache.put(ident, sha, e.clone())
        })
    }
}
