//! The SAM worker: one background thread that owns the models and the image embeddings.
//! The UI sends [`Job`]s and receives [`Event`]s; it never touches a tensor and never waits.
//!
//! Scheduling: model loads first, then the latest prompt of each model slot (a newer prompt
//! replaces an older one still queued), then embeddings of the open image, then prefetches.
//! Embeddings are cached in memory (a few images per slot) and on disk in the project's
//! `cache/` folder, keyed by image hash + model hash + adapter hash.

use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::time::Instant;

use burn::prelude::*;
use image::RgbImage;

use crate::adapt::file::{AdapterCard, load_adapter};
use crate::device::ComputeDevice;
use crate::fsutil::atomic_write;
use crate::predict::{ImageEmbedding, Point, Predictor, PromptInput};
use crate::sam::{CheckpointInfo, Sam, SamConfig, load_sam};

use super::Waker;

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
    Predict {
        slot: Slot,
        key: ImageKey,
        prompt: PromptInput,
        multimask: bool,
        seq: u64,
    },
    /// Drop queued work for images other than these (the user moved on).
    Retain(Vec<u64>),
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
}

impl PredView {
    pub fn best(&self) -> usize {
        (0..self.iou.len()).fold(0, |b, i| if self.iou[i] > self.iou[b] { i } else { b })
    }
}

pub enum Event {
    ModelLoading {
        slot: Slot,
        what: String,
    },
    ModelLoaded {
        slot: Slot,
        summary: ModelSummary,
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
    WarmupStarted,
    WarmupDone {
        ms: f64,
        error: Option<String>,
    },
}

/// The UI's handle on the worker thread.
pub struct WorkerHandle {
    pub tx: Sender<Job>,
    pub rx: Receiver<Event>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl WorkerHandle {
    pub fn spawn(device: ComputeDevice, waker: Waker) -> Self {
        let (tx, jrx) = std::sync::mpsc::channel();
        let (etx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("sam-worker".into())
            .spawn(move || {
                super::lower_thread_priority();
                Worker::new(device, etx, waker).run(jrx)
            })
            .expect("spawn worker thread");
        WorkerHandle {
            tx,
            rx,
            thread: Some(thread),
        }
    }
    pub fn send(&self, job: Job) {
        let _ = self.tx.send(job);
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        let _ = self.tx.send(Job::Shutdown);
        // Do not join: an encoder pass may take seconds; the thread exits after it.
        self.thread.take();
    }
}

struct LoadedSlot {
    predictor: Predictor,
    /// Hash that keys this slot's embeddings (model sha + adapter sha).
    ident: String,
}

struct Worker {
    device: ComputeDevice,
    tx: Sender<Event>,
    waker: Waker,
    base: Option<(LoadedSlot, CheckpointInfo)>,
    adapted: Option<LoadedSlot>,
    adapter_path: Option<PathBuf>,
    /// (slot ident, image sha) → embedding; most recent last.
    cache: VecDeque<((String, String), ImageEmbedding)>,
    images: HashMap<u64, Arc<RgbImage>>,
    cache_dirs: HashMap<u64, PathBuf>,
    last_embed_ms: HashMap<Slot, f64>,
    // pending work
    load: Option<ModelSpec>,
    adapter: Option<Option<PathBuf>>,
    predicts: HashMap<Slot, (ImageKey, PromptInput, bool, u64)>,
    embeds: VecDeque<(Slot, ImageKey, bool)>,
    warmup: bool,
}

const MEM_CACHE: usize = 8;

fn panic_message(e: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = e.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = e.downcast_ref::<String>() {
        s.clone()
    } else {
        "internal error".to_string()
    }
}

/// Runs `f`, turning a panic inside the engine into an error message.
fn guarded<T>(f: impl FnOnce() -> anyhow::Result<T>) -> Result<T, String> {
    match std::panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{e:#}")),
        Err(p) => Err(format!("the engine failed: {}", panic_message(p))),
    }
}

fn short(s: &str) -> &str {
    &s[..16.min(s.len())]
}

impl Worker {
    fn new(device: ComputeDevice, tx: Sender<Event>, waker: Waker) -> Self {
        Worker {
            device,
            tx,
            waker,
            base: None,
            adapted: None,
            adapter_path: None,
            cache: VecDeque::new(),
            images: HashMap::new(),
            cache_dirs: HashMap::new(),
            last_embed_ms: HashMap::new(),
            load: None,
            adapter: None,
            predicts: HashMap::new(),
            embeds: VecDeque::new(),
            warmup: false,
        }
    }

    fn emit(&self, e: Event) {
        let _ = self.tx.send(e);
        self.waker.wake();
    }

    /// Takes a job into the pending state. Returns false on shutdown.
    fn accept(&mut self, job: Job) -> bool {
        match job {
            Job::Shutdown => return false,
            Job::LoadModel(spec) => {
                self.load = Some(spec);
            }
            Job::SetAdapter(p) => self.adapter = Some(p),
            Job::Embed {
                slot,
                key,
                image,
                prefetch,
                cache_dir,
            } => {
                self.images.insert(key.id, image);
                if let Some(d) = cache_dir {
                    self.cache_dirs.insert(key.id, d);
                }
                self.embeds.retain(|(s, k, _)| !(*s == slot && k == &key));
                if prefetch {
                    self.embeds.push_back((slot, key, true));
                } else {
                    self.embeds.push_front((slot, key, false));
                }
            }
            Job::Predict {
                slot,
                key,
                prompt,
                multimask,
                seq,
            } => {
                self.predicts.insert(slot, (key, prompt, multimask, seq));
            }
            Job::Retain(ids) => {
                self.embeds.retain(|(_, k, _)| ids.contains(&k.id));
                self.images.retain(|id, _| ids.contains(id));
            }
            Job::WarmUp => self.warmup = true,
        }
        true
    }

    fn has_work(&self) -> bool {
        self.load.is_some()
            || self.adapter.is_some()
            || !self.predicts.is_empty()
            || !self.embeds.is_empty()
            || self.warmup_due()
    }

    /// A warm-up was asked for and there is a model to warm up.
    fn warmup_due(&self) -> bool {
        self.warmup && self.base.is_some()
    }

    fn run(mut self, rx: Receiver<Job>) {
        loop {
            if !self.has_work() {
                match rx.recv() {
                    Ok(j) => {
                        if !self.accept(j) {
                            return;
                        }
                    }
                    Err(_) => return,
                }
            }
            loop {
                match rx.try_recv() {
                    Ok(j) => {
                        if !self.accept(j) {
                            return;
                        }
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return,
                }
            }
            self.step();
        }
    }

    fn slot(&self, slot: Slot) -> Option<&LoadedSlot> {
        match slot {
            Slot::Base => self.base.as_ref().map(|(s, _)| s),
            Slot::Adapted => self.adapted.as_ref(),
        }
    }

    /// Does one unit of work.
    fn step(&mut self) {
        if let Some(spec) = self.load.take() {
            self.load_model(spec);
            return;
        }
        if let Some(a) = self.adapter.take() {
            self.set_adapter(a);
            return;
        }
        for slot in [Slot::Base, Slot::Adapted] {
            if let Some((key, prompt, mm, seq)) = self.predicts.remove(&slot) {
                self.predict(slot, key, prompt, mm, seq);
                return;
            }
        }
        if let Some((slot, key, _)) = self.embeds.pop_front() {
            if self.slot(slot).is_some() {
                let _ = self.embedding(slot, &key, true);
            }
            return;
        }
        if self.warmup_due() {
            self.warmup = false;
            self.warm_up();
        }
    }

    /// See [`Job::WarmUp`]. Same shapes as real use: the encoder always sees the padded
    /// square input, and a box or a single point both give the decoder two prompt tokens.
    fn warm_up(&mut self) {
        let Some((ls, _)) = &self.base else {
            return;
        };
        self.emit(Event::WarmupStarted);
        let t = Instant::now();
        let predictor = &ls.predictor;
        let res = guarded(|| {
            let n = predictor.img_size();
            let img = RgbImage::new(n as u32, n as u32);
            let emb = predictor.set_image(&img);
            let s = n as f64;
            let boxed = PromptInput {
                bbox: Some([0.25 * s, 0.25 * s, 0.75 * s, 0.75 * s]),
                ..Default::default()
            };
            std::hint::black_box(predictor.predict(&emb, &boxed, false));
            let point = PromptInput {
                points: vec![Point {
                    x: 0.5 * s,
                    y: 0.5 * s,
                    positive: true,
                }],
                ..Default::default()
            };
            std::hint::black_box(predictor.predict(&emb, &point, true));
            Ok(())
        });
        if let Err(e) = &res {
            tracing::warn!("kernel warm-up failed: {e}");
        }
        self.emit(Event::WarmupDone {
            ms: t.elapsed().as_secs_f64() * 1e3,
            error: res.err(),
        });
    }

    fn load_model(&mut self, spec: ModelSpec) {
        let name = spec
            .path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        self.emit(Event::ModelLoading {
            slot: Slot::Base,
            what: name.clone(),
        });
        let t = Instant::now();
        let device = self.device.device.clone();
        let res = guarded(|| Ok(load_sam(&spec.path, spec.config.clone(), &device)?));
        match res {
            Ok((sam, info)) => {
                let ms = t.elapsed().as_secs_f64() * 1e3;
                self.cache.clear();
                self.adapted = None;
                let summary = ModelSummary {
                    name,
                    path: spec.path.clone(),
                    sha256: info.sha256.clone(),
                    model_type: format!("{:?}", info.config.model_type),
                    device: self.device.description.clone(),
                    load_ms: ms,
                    card: None,
                };
                let ident = short(&info.sha256).to_string();
                self.base = Some((
                    LoadedSlot {
                        predictor: Predictor::new(sam, device),
                        ident,
                    },
                    info.clone(),
                ));
                self.emit(Event::ModelLoaded {
                    slot: Slot::Base,
                    summary,
                    info: Box::new(info),
                });
                if self.adapter_path.is_some() && self.adapter.is_none() {
                    // Re-apply the adapter that was selected on top of the new base.
                    self.adapter = Some(self.adapter_path.clone());
                }
            }
            Err(e) => self.emit(Event::ModelError {
                slot: Slot::Base,
                error: e,
            }),
        }
    }

    fn set_adapter(&mut self, path: Option<PathBuf>) {
        self.adapter_path = path.clone();
        let Some(path) = path else {
            self.adapted = None;
            self.emit(Event::ModelUnloaded {
                slot: Slot::Adapted,
            });
            return;
        };
        let Some((base, info)) = &self.base else {
            self.emit(Event::ModelError {
                slot: Slot::Adapted,
                error: "load a base model before an adapter".into(),
            });
            return;
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        self.emit(Event::ModelLoading {
            slot: Slot::Adapted,
            what: name.clone(),
        });
        let t = Instant::now();
        let mut sam: Sam = base.predictor.model.clone();
        let device = self.device.device.clone();
        let info = info.clone();
        let res = guarded(|| {
            let card = load_adapter(&mut sam, &info, &path, &device)?;
            let sha = crate::sam::checkpoint::sha256_file(&path)?;
            Ok((card, sha))
        });
        match res {
            Ok((card, sha)) => {
                let ms = t.elapsed().as_secs_f64() * 1e3;
                let ident = format!("{}_{}", short(&info.sha256), short(&sha));
                let summary = ModelSummary {
                    name,
                    path: path.clone(),
                    sha256: sha,
                    model_type: card.adapter.method.name().to_string(),
                    device: self.device.description.clone(),
                    load_ms: ms,
                    card: Some(card),
                };
                self.adapted = Some(LoadedSlot {
                    predictor: Predictor::new(sam, device),
                    ident,
                });
                self.emit(Event::ModelLoaded {
                    slot: Slot::Adapted,
                    summary,
                    info: Box::new(info),
                });
            }
            Err(e) => {
                self.adapter_path = None;
                self.adapted = None;
                self.emit(Event::ModelError {
                    slot: Slot::Adapted,
                    error: e,
                });
            }
        }
    }

    fn cached(&self, ident: &str, sha: &str) -> Option<ImageEmbedding> {
        self.cache
            .iter()
            .find(|((i, s), _)| i == ident && s == sha)
            .map(|(_, e)| e.clone())
    }

    fn remember(&mut self, ident: String, sha: String, emb: ImageEmbedding) {
        self.cache.retain(|((i, s), _)| !(i == &ident && s == &sha));
        self.cache.push_back(((ident, sha), emb));
        while self.cache.len() > MEM_CACHE {
            self.cache.pop_front();
        }
    }

    /// The embedding of `key` for `slot`: memory, then disk, then the encoder.
    fn embedding(
        &mut self,
        slot: Slot,
        key: &ImageKey,
        announce: bool,
    ) -> Result<ImageEmbedding, String> {
        let Some(ls) = self.slot(slot) else {
            return Err("no model loaded".into());
        };
        let ident = ls.ident.clone();
        if let Some(e) = self.cached(&ident, &key.sha256) {
            if announce {
                self.emit(Event::EmbedDone {
                    slot,
                    key: key.clone(),
                    ms: 0.0,
                    from_cache: true,
                });
            }
            return Ok(e);
        }
        let file = self
            .cache_dirs
            .get(&key.id)
            .map(|d| d.join(format!("{}_{}.emb", short(&key.sha256), ident)));
        if let Some(f) = &file {
            let t = Instant::now();
            if let Some(e) = read_embedding(f, &self.device.device) {
                self.remember(ident, key.sha256.clone(), e.clone());
                self.emit(Event::EmbedDone {
                    slot,
                    key: key.clone(),
                    ms: t.elapsed().as_secs_f64() * 1e3,
                    from_cache: true,
                });
                return Ok(e);
            }
        }
        let Some(img) = self.images.get(&key.id).cloned() else {
            return Err("the image is not loaded".into());
        };
        self.emit(Event::EmbedStarted {
            slot,
            key: key.clone(),
            expected_ms: self.last_embed_ms.get(&slot).copied(),
        });
        let t = Instant::now();
        let ls = self.slot(slot).expect("checked");
        let res = guarded(|| Ok(ls.predictor.set_image(&img)));
        match res {
            Ok(e) => {
                let ms = t.elapsed().as_secs_f64() * 1e3;
                self.last_embed_ms.insert(slot, ms);
                if let Some(f) = &file
                    && let Err(err) = write_embedding(f, &e)
                {
                    tracing::warn!("embedding cache: {err:#}");
                }
                self.remember(ident, key.sha256.clone(), e.clone());
                self.emit(Event::EmbedDone {
                    slot,
                    key: key.clone(),
                    ms,
                    from_cache: false,
                });
                Ok(e)
            }
            Err(err) => {
                self.emit(Event::EmbedError {
                    slot,
                    key: key.clone(),
                    error: err.clone(),
                });
                Err(err)
            }
        }
    }

    fn predict(
        &mut self,
        slot: Slot,
        key: ImageKey,
        prompt: PromptInput,
        multimask: bool,
        seq: u64,
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
        let emb = match self.embedding(slot, &key, false) {
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
        let res = guarded(|| Ok(ls.predictor.predict(&emb, &prompt, multimask)));
        match res {
            Ok(p) => {
                let view = PredView {
                    masks: (0..p.masks.len()).map(|i| Arc::new(p.binary(i))).collect(),
                    iou: p.iou.clone(),
                    low_res: p.low_res.into_iter().map(Arc::new).collect(),
                    size: p.size,
                    ms: t.elapsed().as_secs_f64() * 1e3,
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
}

const EMB_MAGIC: &[u8; 8] = b"SEGEMB1\n";

/// Embedding file: magic, a JSON header line (dims, sizes), then little-endian f32.
fn write_embedding(path: &Path, e: &ImageEmbedding) -> anyhow::Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    let dims = e.embedding.dims();
    let data: Vec<f32> = e
        .embedding
        .clone()
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let header = serde_json::json!({ "dims": dims, "input_size": e.input_size, "original_size": e.original_size });
    let mut bytes = Vec::with_capacity(data.len() * 4 + 256);
    bytes.extend_from_slice(EMB_MAGIC);
    bytes.extend_from_slice(header.to_string().as_bytes());
    bytes.push(b'\n');
    for v in data {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    atomic_write(path, &bytes)
}

fn read_embedding(path: &Path, device: &Device) -> Option<ImageEmbedding> {
    let bytes = std::fs::read(path).ok()?;
    let rest = bytes.strip_prefix(EMB_MAGIC)?;
    let nl = rest.iter().position(|&b| b == b'\n')?;
    let header: serde_json::Value = serde_json::from_slice(&rest[..nl]).ok()?;
    let dims: Vec<usize> = serde_json::from_value(header.get("dims")?.clone()).ok()?;
    let input_size: [usize; 2] = serde_json::from_value(header.get("input_size")?.clone()).ok()?;
    let original_size: [usize; 2] =
        serde_json::from_value(header.get("original_size")?.clone()).ok()?;
    let body = &rest[nl + 1..];
    let n: usize = dims.iter().product();
    if dims.len() != 4 || body.len() != n * 4 {
        return None;
    }
    let data: Vec<f32> = body
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let embedding = Tensor::<4>::from_data(TensorData::new(data, dims), device);
    Some(ImageEmbedding {
        embedding,
        input_size,
        original_size,
    })
}
