//! The models as the app sees them: the base and adapted slots, what is embedded, and the
//! SAM worker's events (loads, embeddings, predictions, plans).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crate::service::io::LoadJob;
use crate::service::worker::{Event, Job, ModelSpec, PredView, Slot};

use super::state::{Draft, Edit};
use super::{SegApp, ToastKind, file_name};
use crate::service::worker::ModelSummary;

#[derive(Default)]
pub struct ModelState {
    pub spec: Option<ModelSpec>,
    pub summary: Option<ModelSummary>,
    pub loading: Option<String>,
    pub error: Option<String>,
}

pub struct EmbedState {
    pub image: u64,
    pub started: Instant,
    pub expected_ms: Option<f64>,
}

/// What the SAM worker is doing for the app, and how fast it answered.
#[derive(Default)]
pub struct SamActivity {
    /// Embeddings in progress, per slot.
    pub embedding: HashMap<Slot, EmbedState>,
    pub embedded: HashSet<(Slot, u64)>,
    /// Images whose embedding was asked for ahead of use.
    pub prefetched: HashSet<u64>,
    pub last_embed_ms: Option<f64>,
    /// Since when the worker has been compiling GPU kernels ahead of use (`Job::WarmUp`).
    pub warming_since: Option<Instant>,
    pub last_decode_ms: Option<f64>,
    /// The prompt change (seq) a click made, and when: for the click-to-mask latency.
    pub click_at: Option<(u64, Instant)>,
}

/// The planner's estimate for the training settings: the estimate, the settings it was made
/// for, and the settings of the one asked for.
#[derive(Default)]
pub struct PlanState {
    pub estimate: Option<crate::train::planner::Plan>,
    pub key: String,
    pub pending: Option<String>,
}

impl SegApp {
    pub fn load_model(&mut self, spec: ModelSpec) {
        self.base.loading = Some(file_name(&spec.path));
        self.base.error = None;
        self.base.spec = Some(spec.clone());
        self.sam.embedded.clear();
        self.service.worker.send(Job::LoadModel(spec));
        if self.config.device.is_gpu {
            self.service.worker.send(Job::WarmUp);
        }
    }

    /// Loads the checkpoint whose path is typed in the model field.
    pub fn load_typed_model(&mut self) {
        let p = PathBuf::from(self.model_input.trim());
        if p.is_file() {
            self.load_model(ModelSpec {
                path: p,
                config: None,
            });
        } else {
            self.error(format!("{} is not a file", p.display()));
        }
    }

    pub fn model_ready(&self) -> bool {
        self.base.summary.is_some() && self.base.loading.is_none()
    }

    /// Selects an adapter (path relative to the project) or the base model (None).
    pub fn select_adapter(&mut self, rel: Option<PathBuf>) {
        let Some(p) = &mut self.project else { return };
        match rel {
            None => {
                self.use_adapter = false;
                self.ab_view = false;
                p.project.active_adapter = None;
                self.service.worker.send(Job::SetAdapter(None));
                self.adapted = ModelState::default();
            }
            Some(rel) => {
                let abs = p.resolve(&rel);
                p.project.active_adapter = Some(rel.to_string_lossy().to_string());
                self.use_adapter = true;
                self.adapted = ModelState {
                    loading: Some(file_name(&abs)),
                    ..Default::default()
                };
                self.sam.embedded.retain(|(s, _)| *s != Slot::Adapted);
                self.service.worker.send(Job::SetAdapter(Some(abs)));
            }
        }
        self.save_project();
        self.invalidate_preds();
    }

    pub fn active_slot(&self) -> Slot {
        if self.use_adapter && self.adapted.summary.is_some() {
            Slot::Adapted
        } else {
            Slot::Base
        }
    }

    pub fn other_slot(&self) -> Option<Slot> {
        (self.ab_view && self.adapted.summary.is_some()).then(|| {
            if self.active_slot() == Slot::Base {
                Slot::Adapted
            } else {
                Slot::Base
            }
        })
    }

    pub(crate) fn slots(&self) -> Vec<Slot> {
        let mut v = vec![self.active_slot()];
        v.extend(self.other_slot());
        v
    }

    pub fn slot_name(&self, slot: Slot) -> String {
        match slot {
            Slot::Base => self
                .base
                .summary
                .as_ref()
                .map(|s| format!("base: {}", s.name))
                .unwrap_or_else(|| "base".into()),
            Slot::Adapted => self
                .adapted
                .summary
                .as_ref()
                .map(|s| format!("adapted: {}", s.name))
                .unwrap_or_else(|| "adapted".into()),
        }
    }

    /// Model switch: predictions are redone for the current prompts.
    pub(crate) fn invalidate_preds(&mut self) {
        self.draft.pred = None;
        self.draft.pred_b = None;
        self.overlay.draft_dirty = true;
        self.ensure_embedded();
        self.request_predict();
    }

    pub fn toggle_ab(&mut self) {
        if self.adapted.summary.is_none() {
            self.error("A/B needs an adapter: select one in the Model tab (or train one in Adapt)");
            return;
        }
        self.ab_view = !self.ab_view;
        self.canvas.fit_pending = true;
        // Ask the other model too.
        self.draft.pred_b = None;
        self.ensure_embedded();
        self.request_predict();
    }

    /// Sends embed jobs for the current image on the slots in use (the worker answers at once
    /// from its cache when it has them).
    pub(crate) fn ensure_embedded(&mut self) {
        if !self.model_ready() {
            return;
        }
        let Some(cur) = &self.current else { return };
        let Some(rgb) = cur.rgb.clone() else { return };
        let key = cur.key.clone();
        let cache = self.project.as_ref().map(|p| p.cache_dir());
        if self.settings.tiles.applies(cur.width, cur.height) {
            // Prompts on a tiled image embed their tile; the whole image squeezed is embedded
            // only for a prompt larger than a tile.
            self.service.worker.send(Job::Image {
                key,
                image: rgb,
                cache_dir: cache,
            });
            return;
        }
        for slot in self.slots() {
            if slot == Slot::Adapted && self.adapted.summary.is_none() {
                continue;
            }
            self.service.worker.send(Job::Embed {
                slot,
                key: key.clone(),
                image: rgb.clone(),
                prefetch: false,
                cache_dir: cache.clone(),
            });
        }
    }

    /// The current image's embedding is ready on every model slot in use (a tiled image needs
    /// none before its first prompt).
    pub fn current_embedded(&self) -> bool {
        let Some(cur) = &self.current else {
            return false;
        };
        let tiled = self.settings.tiles.applies(cur.width, cur.height);
        cur.rgb.is_some()
            && self.model_ready()
            && (tiled
                || self
                    .slots()
                    .iter()
                    .all(|s| self.sam.embedded.contains(&(*s, cur.id))))
    }

    pub(crate) fn on_worker(&mut self, e: Event) {
        match e {
            Event::ModelLoading { slot, what } => match slot {
                Slot::Base => self.base.loading = Some(what),
                Slot::Adapted => self.adapted.loading = Some(what),
            },
            Event::ModelLoaded { slot, summary, .. } => {
                let msg = format!(
                    "Loaded {} in {:.1} s on {}",
                    summary.name,
                    summary.load_ms / 1e3,
                    summary.device
                );
                match slot {
                    Slot::Base => {
                        self.planner.key.clear();
                        self.settings.model = Some(summary.path.clone());
                        self.save_settings();
                        if let Some(p) = &mut self.project {
                            p.project.model = Some(summary.path.clone());
                        }
                        self.base = ModelState {
                            spec: self.base.spec.take(),
                            summary: Some(*summary),
                            loading: None,
                            error: None,
                        };
                        self.sam.embedded.clear();
                    }
                    Slot::Adapted => {
                        self.adapted = ModelState {
                            spec: None,
                            summary: Some(*summary),
                            loading: None,
                            error: None,
                        };
                        self.sam.embedded.retain(|(s, _)| *s != Slot::Adapted);
                    }
                }
                self.toast(ToastKind::Info, msg);
                self.invalidate_preds();
            }
            Event::ModelUnloaded { slot } => {
                if slot == Slot::Adapted {
                    self.adapted = ModelState::default();
                }
            }
            Event::ModelError { slot, error } => {
                match slot {
                    Slot::Base => {
                        self.base.loading = None;
                        self.base.error = Some(error.clone());
                        self.base.summary = None;
                    }
                    Slot::Adapted => {
                        self.adapted = ModelState {
                            error: Some(error.clone()),
                            ..Default::default()
                        };
                        self.use_adapter = false;
                    }
                }
                self.error(format!("Model: {error}"));
            }
            Event::EmbedStarted {
                slot,
                key,
                expected_ms,
            } => {
                self.sam.embedding.insert(
                    slot,
                    EmbedState {
                        image: key.id,
                        started: Instant::now(),
                        expected_ms,
                    },
                );
            }
            Event::EmbedDone {
                slot,
                key,
                ms,
                from_cache,
            } => {
                self.sam.embedding.remove(&slot);
                self.sam.embedded.insert((slot, key.id));
                if !from_cache {
                    self.sam.last_embed_ms = Some(ms);
                    tracing::info!("embedding of image {} computed in {ms:.0} ms", key.id);
                }
                let cur = self.current.as_ref().map(|c| c.id);
                if cur == Some(key.id) {
                    // Prefetch the next image's embedding while the user annotates this one.
                    if let Some(next) = self.neighbour(key.id, 1)
                        && self.sam.prefetched.insert(next)
                        && let Some(p) = &self.project
                        && let Some(img) = p.project.image(next)
                    {
                        self.service.loader.send(LoadJob::Image {
                            id: next,
                            path: p.image_path(img),
                            masks: Vec::new(),
                        });
                    }
                }
            }
            Event::EmbedError { slot, key, error } => {
                self.sam.embedding.remove(&slot);
                self.sam.embedded.remove(&(slot, key.id));
                self.error(format!("Image embedding failed: {error}"));
            }
            Event::Predicted {
                slot,
                key,
                seq,
                pred,
            } => {
                if self.current.as_ref().map(|c| c.id) != Some(key.id) {
                    return;
                }
                self.sam.last_decode_ms = Some(pred.ms);
                if let Some((s, t)) = self.sam.click_at
                    && s == seq
                    && slot == self.active_slot()
                {
                    let ms = t.elapsed().as_secs_f64() * 1e3;
                    tracing::info!("click to mask shown: {ms:.0} ms (decode {:.0} ms)", pred.ms);
                    self.click_latency_ms = Some(ms);
                    self.sam.click_at = None;
                }
                self.store_prediction(key.id, slot, seq, pred);
            }
            Event::Planned { key, plan } => {
                if self.planner.pending.as_ref() == Some(&key) {
                    self.planner.pending = None;
                    self.planner.key = key;
                    self.planner.estimate = plan.map(|p| *p);
                }
            }
            Event::WarmupStarted => self.sam.warming_since = Some(Instant::now()),
            Event::WarmupDone { ms, error } => {
                self.sam.warming_since = None;
                match error {
                    Some(e) => self.error(format!("GPU kernel warm-up: {e}")),
                    None if ms > 2000.0 => self.toast(
                        ToastKind::Info,
                        format!("GPU kernels ready ({:.0} s, once per start)", ms / 1e3),
                    ),
                    None => {}
                }
            }
            e @ (Event::ProposeProgress { .. }
            | Event::Proposed { .. }
            | Event::ProposeCancelled { .. }
            | Event::ProposeError { .. }) => self.on_proposal_event(e),
            Event::PredictError { seq, error, .. } => {
                if seq == self.draft.seq {
                    self.error(format!("SAM could not answer the prompt: {error}"));
                }
            }
        }
    }

    /// Puts a prediction into the draft (and into the undo entry that made these prompts).
    pub(crate) fn store_prediction(
        &mut self,
        image: u64,
        slot: Slot,
        seq: u64,
        pred: Arc<PredView>,
    ) {
        let active = slot == self.active_slot();
        let set = |d: &mut Draft| {
            if d.seq == seq {
                if active {
                    d.pred = Some(pred.clone());
                    if d.choice >= pred.masks.len() {
                        d.choice = pred.best();
                    }
                } else {
                    d.pred_b = Some(pred.clone());
                }
            }
        };
        if let Some(h) = self.histories.get_mut(&image) {
            for e in h
                .undo
                .iter_mut()
                .rev()
                .take(3)
                .chain(h.redo.iter_mut().rev().take(3))
            {
                if let Edit::Draft { after, .. } = e {
                    set(after);
                }
            }
        }
        if self.draft.seq == seq {
            let fresh =
                active && self.draft.pred.as_ref().map(|p| p.masks.len()) != Some(pred.masks.len());
            set(&mut self.draft);
            if fresh && active {
                self.draft.choice = pred.best();
            }
            self.overlay.draft_dirty = true;
        }
    }

    /// Asks the worker for time and memory of the current training settings, when they
    /// changed since the last estimate.
    pub fn request_plan(&mut self) {
        let Some(base) = self.base.summary.as_ref().filter(|_| self.model_ready()) else {
            return;
        };
        if self.planner.pending.is_some() {
            return;
        }
        let key = format!(
            "{}|{}",
            base.sha256,
            serde_json::to_string(&self.train_cfg).unwrap_or_default()
        );
        if key == self.planner.key {
            return;
        }
        self.planner.pending = Some(key.clone());
        self.service.worker.send(Job::Plan {
            key,
            config: Box::new(self.train_cfg.clone()),
        });
    }
}
