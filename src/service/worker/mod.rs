//! The SAM worker: one background thread that owns the models and the image embeddings.
//! The UI sends [`Job`]s and receives [`Event`]s; it never touches a tensor and never waits.
//!
//! Scheduling: model loads first, then the latest prompt of each model slot (a newer prompt
//! replaces an older one still queued), then embeddings of the open image, then "propose all
//! objects" (the user asked for it; a prefetch did not), then prefetches, then a training
//! plan, then the kernel warm-up.
//! Embeddings are cached in memory (a few images per slot) and on disk in the project's
//! `cache/` folder, keyed by image hash + model hash + adapter hash.

mod box_mask;
mod embeddings;
mod messages;
mod predict;
mod propose;

pub use box_mask::BoxMask;
pub use messages::{
    AmgParams, Event, ImageKey, Job, ModelSpec, ModelSummary, Point, PredView, PromptInput,
    Proposal, Slot, TileConfig,
};
pub use propose::outline;

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::time::Instant;

use image::RgbImage;

use crate::device::ComputeDevice;
use crate::predict::{ImageEmbedding, Predictor};
use crate::sam::CheckpointInfo;
use crate::train::TrainConfig;

use super::thread::{Waker, guarded, lower_thread_priority};
use embeddings::{MemoryCache, read_embedding, short, write_embedding};
use propose::PendingPropose;

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
                lower_thread_priority();
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
    cache: MemoryCache,
    images: HashMap<u64, Arc<RgbImage>>,
    cache_dirs: HashMap<u64, PathBuf>,
    last_embed_ms: HashMap<Slot, f64>,
    // pending work
    load: Option<ModelSpec>,
    adapter: Option<Option<PathBuf>>,
    predicts: HashMap<Slot, (ImageKey, PromptInput, bool, u64, TileConfig)>,
    embeds: VecDeque<(Slot, ImageKey, bool)>,
    propose: Option<PendingPropose>,
    plan: Option<(String, TrainConfig)>,
    warmup: bool,
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
            cache: MemoryCache::default(),
            images: HashMap::new(),
            cache_dirs: HashMap::new(),
            last_embed_ms: HashMap::new(),
            load: None,
            adapter: None,
            predicts: HashMap::new(),
            embeds: VecDeque::new(),
            propose: None,
            plan: None,
            warmup: false,
        }
    }

    fn emit(&self, e: Event) {
        let _ = self.tx.send(e);
        self.waker.wake();
    }

    /// The image of `key` (and where its embeddings are cached) for the jobs that follow.
    fn remember_image(&mut self, key: &ImageKey, image: Arc<RgbImage>, cache_dir: Option<PathBuf>) {
        self.images.insert(key.id, image);
        if let Some(d) = cache_dir {
            self.cache_dirs.insert(key.id, d);
        }
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
                self.remember_image(&key, image, cache_dir);
                self.embeds.retain(|(s, k, _)| !(*s == slot && k == &key));
                if prefetch {
                    self.embeds.push_back((slot, key, true));
                } else {
                    self.embeds.push_front((slot, key, false));
                }
            }
            Job::Image {
                key,
                image,
                cache_dir,
            } => self.remember_image(&key, image, cache_dir),
            Job::Predict {
                slot,
                key,
                prompt,
                multimask,
                seq,
                tiles,
            } => {
                self.predicts
                    .insert(slot, (key, prompt, multimask, seq, tiles));
            }
            job @ Job::Propose { .. } => self.queue_propose(job),
            Job::Retain(ids) => {
                self.embeds.retain(|(_, k, _)| ids.contains(&k.id));
                self.images.retain(|id, _| ids.contains(id));
                if let Some(p) = self.propose.take_if(|p| !ids.contains(&p.key.id)) {
                    self.emit(Event::ProposeCancelled { run: p.run });
                }
            }
            Job::Plan { key, config } => self.plan = Some((key, *config)),
            Job::WarmUp => self.warmup = true,
        }
        true
    }

    fn has_work(&self) -> bool {
        self.load.is_some()
            || self.adapter.is_some()
            || !self.predicts.is_empty()
            || !self.embeds.is_empty()
            || self.propose.is_some()
            || self.plan.is_some()
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
            if let Some((key, prompt, mm, seq, tiles)) = self.predicts.remove(&slot) {
                self.predict(slot, key, prompt, mm, seq, &tiles);
                return;
            }
        }
        // Wanted embeddings sit at the front of the queue, prefetches behind them.
        let only_prefetches = self.embeds.front().is_none_or(|(_, _, prefetch)| *prefetch);
        if only_prefetches && let Some(p) = self.propose.take() {
            self.propose(p);
            return;
        }
        if let Some((slot, key, _)) = self.embeds.pop_front() {
            if self.slot(slot).is_some() {
                let _ = self.embedding(slot, &key, true);
            }
            return;
        }
        if let Some((key, cfg)) = self.plan.take() {
            self.plan(key, cfg);
            return;
        }
        if self.warmup_due() {
            self.warmup = false;
            self.warm_up();
        }
    }

    /// See [`Job::Plan`]. Without a base model the answer is no plan.
    fn plan(&mut self, key: String, cfg: TrainConfig) {
        let plan = self.base.as_ref().and_then(|(ls, info)| {
            let res = guarded(|| {
                Ok(crate::engine::plan_training(
                    &ls.predictor.model,
                    info,
                    &cfg,
                    &self.device,
                ))
            });
            res.map_err(|e| tracing::warn!("training planner: {e}"))
                .ok()
        });
        self.emit(Event::Planned {
            key,
            plan: plan.map(Box::new),
        });
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

    /// Tells the UI that `slot` is loading the file `path`; returns the file's name.
    fn announce_loading(&self, slot: Slot, path: &Path) -> String {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        self.emit(Event::ModelLoading {
            slot,
            what: name.clone(),
        });
        name
    }

    fn load_model(&mut self, spec: ModelSpec) {
        let name = self.announce_loading(Slot::Base, &spec.path);
        let t = Instant::now();
        let res = guarded(|| {
            crate::engine::load(&spec.path, None, spec.config.clone(), self.device.clone())
        });
        match res {
            Ok(loaded) => {
                let info = loaded.info;
                let ms = t.elapsed().as_secs_f64() * 1e3;
                self.cache.clear();
                self.adapted = None;
                let summary = ModelSummary {
                    name,
                    path: spec.path.clone(),
                    sha256: info.sha256.clone(),
                    // The family decides the pre/post-processing; the user should see it.
                    model_type: format!(
                        "{:?}, {}",
                        info.config.model_type,
                        info.config.family.title()
                    ),
                    device: self.device.description.clone(),
                    load_ms: ms,
                    card: None,
                };
                // The family is part of the key: the same weights run as SAM and as MedSAM see
                // different input, so their embeddings differ.
                let ident = format!("{}_{}", short(&info.sha256), info.config.family.name());
                self.base = Some((
                    LoadedSlot {
                        predictor: loaded.predictor,
                        ident,
                    },
                    info.clone(),
                ));
                self.emit(Event::ModelLoaded {
                    slot: Slot::Base,
                    summary: Box::new(summary),
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
        let name = self.announce_loading(Slot::Adapted, &path);
        let t = Instant::now();
        let sam = base.predictor.model.clone();
        let info = info.clone();
        let res = guarded(|| {
            let loaded =
                crate::engine::with_adapter(sam, info.clone(), Some(&path), self.device.clone())?;
            let sha = crate::sam::checkpoint::sha256_file(&path)?;
            Ok((loaded, sha))
        });
        match res {
            Ok((loaded, sha)) => {
                let card = loaded.card.expect("an adapter was given");
                let ms = t.elapsed().as_secs_f64() * 1e3;
                let ident = format!(
                    "{}_{}_{}",
                    short(&info.sha256),
                    info.config.family.name(),
                    short(&sha)
                );
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
                    predictor: loaded.predictor,
                    ident,
                });
                self.emit(Event::ModelLoaded {
                    slot: Slot::Adapted,
                    summary: Box::new(summary),
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
        if let Some(e) = self.cache.get(&ident, &key.sha256) {
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
            .map(|d| embeddings::file_in(d, key, &ident));
        if let Some(f) = &file {
            let t = Instant::now();
            if let Some(e) = read_embedding(f, &self.device.device) {
                self.cache.put(ident, key.sha256.clone(), e.clone());
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
        self.encode(slot, key, &img, |w, e| {
            if let Some(f) = &file
                && let Err(err) = write_embedding(f, e)
            {
                tracing::warn!("embedding cache: {err:#}");
            }
            w.cache.put(ident, key.sha256.clone(), e.clone());
        })
    }

    /// `slot`'s encoder on `image` (all of `key`'s image or a tile of it), announced by
    /// [`Event::EmbedStarted`] and answered by [`Event::EmbedDone`] once `keep` has stored the
    /// result, or by [`Event::EmbedError`].
    fn encode(
        &mut self,
        slot: Slot,
        key: &ImageKey,
        image: &RgbImage,
        keep: impl FnOnce(&mut Self, &ImageEmbedding),
    ) -> Result<ImageEmbedding, String> {
        let Some(ls) = self.slot(slot) else {
            return Err("no model loaded".into());
        };
        self.emit(Event::EmbedStarted {
            slot,
            key: key.clone(),
            expected_ms: self.last_embed_ms.get(&slot).copied(),
        });
        let t = Instant::now();
        let res = guarded(|| Ok(ls.predictor.set_image(image)));
        let ms = t.elapsed().as_secs_f64() * 1e3;
        match res {
            Ok(e) => {
                self.last_embed_ms.insert(slot, ms);
                keep(self, &e);
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
}
