//! The worker's messages: the jobs the UI sends and the events it gets back.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use image::RgbImage;

use crate::adapt::file::AdapterCard;
pub use crate::predict::tiling::TileConfig;
pub use crate::predict::{Point, PromptInput};
pub use crate::sam::automatic_mask_generator::AmgParams;
use crate::sam::{CheckpointInfo, SamConfig};
use crate::train::TrainConfig;
use crate::train::planner::Plan;

/// Which model answers: the base checkpoint, or base + the selected adapter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Slot {
    Base,
    Adapted,
}

/// A checkpoint to load, with an explicit config for non-official (test) models.
#[derive(Clone, Debug)]
pub struct ModelSpec {
    pub path: PathBuf,
    pub config: Option<SamConfig>,
}

/// An image the worker may embed: the project's image id plus its content hash.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ImageKey {
    pub id: u64,
    pub sha256: String,
}

pub enum Job {
    LoadModel(ModelSpec),
    /// Loads an adapter into the `Adapted` slot (None unloads it).
    SetAdapter(Option<PathBuf>),
    /// Embedding wanted for `slot`. `prefetch` jobs run only when nothing else waits.
    Embed {
        slot: Slot,
        key: ImageKey,
        image: Arc<RgbImage>,
        prefetch: bool,
        cache_dir: Option<PathBuf>,
    },
    /// The image of `key` for the prompts to come, not embedded now: a tiled image embeds
    /// the tiles its prompts need.
    Image {
        key: ImageKey,
        image: Arc<RgbImage>,
        cache_dir: Option<PathBuf>,
    },
    Predict {
        slot: Slot,
        key: ImageKey,
        prompt: PromptInput,
        multimask: bool,
        seq: u64,
        /// Images larger than `tiles.tile_above` are decoded in the prompt's tile.
        tiles: TileConfig,
    },
    /// "Propose all objects": SAM's automatic mask generator on `key` with `slot`'s model,
    /// reusing the image's embedding. Answered with [`Event::ProposeProgress`] after each
    /// point batch, then one of [`Event::Proposed`], [`Event::ProposeCancelled`] (once
    /// `cancel` is set, checked between batches) or [`Event::ProposeError`], all with `run`.
    /// Runs after prompts and embeddings; a newer one replaces one still queued. An image
    /// larger than `tiles.tile_above` is segmented tile by tile (no whole-image embedding).
    Propose {
        slot: Slot,
        key: ImageKey,
        image: Arc<RgbImage>,
        cache_dir: Option<PathBuf>,
        params: AmgParams,
        tiles: TileConfig,
        run: u64,
        cancel: Arc<AtomicBool>,
    },
    /// Drop queued work for images other than these (the user moved on).
    Retain(Vec<u64>),
    /// Estimate time and memory of training the base model with `config`; answered with
    /// [`Event::Planned`] carrying the same `key`. Runs when no prompt or embedding waits.
    Plan {
        key: String,
        config: Box<TrainConfig>,
    },
    /// Compile the GPU kernels of an encoder pass and of the usual prompts (a box; a point with
    /// three candidates) on a blank image before they are needed. wgpu compiles and autotunes
    /// each kernel on first use (tens of seconds on a cold start); done while the user picks an
    /// image, the first embedding and the first click do not pay it. Lowest priority: it runs
    /// only when nothing else waits. The app sends it after loading a model on a GPU.
    WarmUp,
    Shutdown,
}

/// A model as the UI sees it.
#[derive(Clone, Debug)]
pub struct ModelSummary {
    pub name: String,
    pub path: PathBuf,
    pub sha256: String,
    pub model_type: String,
    pub device: String,
    pub load_ms: f64,
    pub card: Option<AdapterCard>,
}

/// Masks of one prediction, thresholded, at the original image size.
#[derive(Clone, Debug)]
pub struct PredView {
    pub masks: Vec<Arc<Vec<bool>>>,
    pub iou: Vec<f32>,
    pub low_res: Vec<Arc<Vec<f32>>>,
    /// (h, w)
    pub size: [usize; 2],
    pub ms: f64,
    /// On a tiled image: the region (x0, y0, x1, y1) the masks were decoded in, 0 outside
    /// it; `low_res` is then in that region's frame. `None`: the whole image.
    pub tile: Option<[usize; 4]>,
}

impl PredView {
    pub fn best(&self) -> usize {
        (0..self.iou.len()).fold(0, |b, i| if self.iou[i] > self.iou[b] { i } else { b })
    }
}

/// One mask of "Propose all objects", ready to draw and to accept.
#[derive(Clone, Debug)]
pub struct Proposal {
    /// Over its box only (memory grows with the object, not the image); the box is
    /// `mask.bbox` (inclusive pixel bounds, as an object's).
    pub mask: Arc<super::BoxMask>,
    pub area: u64,
    pub predicted_iou: f32,
    pub stability_score: f32,
    /// The grid point that produced it (image pixels).
    pub point: [f64; 2],
    /// The mask's boundary as closed loops along pixel edges (image pixel corners), so the
    /// canvas draws crisp outlines at any zoom without tracing masks on the UI thread.
    pub outline: Vec<Vec<[f32; 2]>>,
}

pub enum Event {
    ModelLoading {
        slot: Slot,
        what: String,
    },
    ModelLoaded {
        slot: Slot,
        summary: Box<ModelSummary>,
        info: Box<CheckpointInfo>,
    },
    ModelUnloaded {
        slot: Slot,
    },
    ModelError {
        slot: Slot,
        error: String,
    },
    EmbedStarted {
        slot: Slot,
        key: ImageKey,
        expected_ms: Option<f64>,
    },
    EmbedDone {
        slot: Slot,
        key: ImageKey,
        ms: f64,
        from_cache: bool,
    },
    EmbedError {
        slot: Slot,
        key: ImageKey,
        error: String,
    },
    Predicted {
        slot: Slot,
        key: ImageKey,
        seq: u64,
        pred: Arc<PredView>,
    },
    PredictError {
        slot: Slot,
        key: ImageKey,
        seq: u64,
        error: String,
    },
    Planned {
        key: String,
        plan: Option<Box<Plan>>,
    },
    ProposeProgress {
        run: u64,
        /// Steps done of `total`: the embedding, then one per point batch.
        done: usize,
        total: usize,
    },
    Proposed {
        run: u64,
        key: ImageKey,
        proposals: Vec<Proposal>,
        /// Generator time (without the embedding when it had to be computed first).
        ms: f64,
    },
    ProposeCancelled {
        run: u64,
    },
    ProposeError {
        run: u64,
        error: String,
    },
    WarmupStarted,
    WarmupDone {
        ms: f64,
        error: Option<String>,
    },
}
