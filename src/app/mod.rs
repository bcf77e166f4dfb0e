//! The desktop app (eframe/egui on wgpu).
//!
//! The UI thread only draws and edits plain data. Everything else goes through the service
//! layer ([`crate::service`]): the SAM worker (models, embeddings, prompt → mask, the training
//! planner), the task registry (training, export, download, demo, imports, dialogs) and the
//! writer/loader, all answering with typed events.
//! Every edit of the annotations is undoable ([`state`]) and saved at once (atomic writes,
//! mask files before the `project.json` that names them).

pub mod autopilot;
pub mod canvas;
pub mod overlay;
pub mod panels;
pub mod state;
pub mod train_view;

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use egui::TextureHandle;
use image::RgbImage;

use crate::device::ComputeDevice;
use crate::predict::{Point, PromptInput};
use crate::project::project::{
    AdapterEntry, ImageEntry, ObjectEntry, OpenProject, PointEntry, PromptRecord, mask_stats,
    now_secs, palette_color,
};
use crate::service::device::AppDevice;
use crate::service::dialogs::DialogKind;
use crate::service::export::{ExportOptions, ExportReport};
use crate::service::io::{LoadJob, Loaded, Loader, WriteJob, Writer};
use crate::service::worker::{
    Event, ImageKey, Job, ModelSpec, ModelSummary, PredView, Slot, WorkerHandle,
};
use crate::service::{
    JobEvent, JobKind, JobOutput, TaskId, TaskReport, Tasks, Waker, find_checkpoints,
};
use crate::train::TrainConfig;

use overlay::{CpuOverlay, OverlayData, OverlayParams};
use state::{Draft, Edit, History, Stroke, Tool};
use train_view::TrainView;

/// How the app starts.
pub struct AppConfig {
    pub device: ComputeDevice,
    /// Model to load at start; None = last used, else the default in the model folder.
    pub model: Option<ModelSpec>,
    pub model_dir: PathBuf,
    /// Where settings (recent projects, last model) persist; None = not persisted.
    pub settings_file: Option<PathBuf>,
    /// Where "Open demo project" creates/opens the demo.
    pub demo_dir: PathBuf,
}

impl AppConfig {
    pub fn new(device: ComputeDevice) -> Self {
        let cache = crate::service::cache_dir();
        AppConfig {
            device,
            model: None,
            model_dir: crate::models::models_dir(),
            settings_file: Some(cache.join("app-settings.json")),
            demo_dir: cache.join("projects").join("nuclei-demo"),
        }
    }
}

#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Settings {
    #[serde(default)]
    pub recent: Vec<PathBuf>,
    #[serde(default)]
    pub model: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ToastKind {
    Info,
    Error,
}

pub struct Toast {
    pub kind: ToastKind,
    pub text: String,
    pub at: Instant,
}

/// The image on the canvas.
pub struct ImageView {
    pub id: u64,
    pub key: ImageKey,
    pub width: usize,
    pub height: usize,
    pub rgb: Option<Arc<RgbImage>>,
    pub texture: Option<TextureHandle>,
    /// Object id → mask.
    pub masks: HashMap<u64, Arc<Vec<bool>>>,
    pub error: Option<String>,
}

#[derive(Default)]
pub struct ModelState {
    pub spec: Option<ModelSpec>,
    pub summary: Option<ModelSummary>,
    pub loading: Option<String>,
    pub error: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tab {
    Annotate,
    Model,
    Adapt,
    Export,
}

/// Canvas view: screen points per image pixel and the image origin relative to the canvas.
#[derive(Clone, Copy, Debug)]
pub struct ViewXform {
    pub zoom: f32,
    pub offset: egui::Vec2,
}

pub struct EmbedState {
    pub image: u64,
    pub started: Instant,
    pub expected_ms: Option<f64>,
}

/// Frame timing for the debug overlay and the responsiveness report.
#[derive(Default)]
pub struct FrameStats {
    pub last_start: Option<Instant>,
    /// (interval between frames, time to build the UI) in ms.
    pub recent: VecDeque<(f32, f32)>,
    pub max_build_busy_ms: f32,
    pub max_interval_busy_ms: f32,
    /// Frame intervals over 100 ms while background work ran.
    pub slow_busy_frames: u64,
    pub frames: u64,
}

pub struct SegApp {
    pub config: AppConfig,
    pub waker: Waker,
    pub worker: WorkerHandle,
    pub writer: Writer,
    pub loader: Loader,
    pub settings: Settings,
    pub project: Option<OpenProject>,
    pub current: Option<ImageView>,
    pub thumbs: HashMap<u64, TextureHandle>,
    pub histories: HashMap<u64, History>,
    pub draft: Draft,
    pub selected: Option<u64>,
    pub tool: Tool,
    pub brush_radius: f32,
    pub view: ViewXform,
    pub fit_pending: bool,
    /// The user zoomed or panned since the last fit (no automatic refit on resize then).
    pub view_touched: bool,
    pub opacity: f32,
    pub outline_px: f32,
    pub show_objects: bool,
    pub overlay: Option<OverlayData>,
    pub overlay_dirty: bool,
    pub draft_dirty: bool,
    pub draft_mask: Option<Arc<Vec<bool>>>,
    pub draft_b_mask: Option<Arc<Vec<bool>>>,
    labels_version: u64,
    draft_version: u64,
    /// Label index (1-based) of each visible object id in the overlay.
    pub label_of: HashMap<u64, u16>,
    pub object_at_label: Vec<u64>,
    pub cpu_overlay: [CpuOverlay; 2],
    pub wgpu_overlay: bool,
    pub base: ModelState,
    pub adapted: ModelState,
    pub use_adapter: bool,
    pub ab_view: bool,
    pub embedding: HashMap<Slot, EmbedState>,
    pub embedded: HashSet<(Slot, u64)>,
    pub prefetched: HashSet<u64>,
    pub last_embed_ms: Option<f64>,
    /// Since when the worker has been compiling GPU kernels ahead of use (`Job::WarmUp`).
    pub warming_since: Option<Instant>,
    pub last_decode_ms: Option<f64>,
    pub click_latency_ms: Option<f64>,
    pub click_at: Option<(u64, Instant)>,
    pub seq: u64,
    pub train: TrainView,
    pub train_cfg: TrainConfig,
    pub export_options: ExportOptions,
    pub export_dir: String,
    pub export_report: Option<ExportReport>,
    /// The export job in flight; its report arrives through `tasks`.
    pub export_rx: Option<TaskId>,
    /// The background jobs (training, export, download, demo, import, dialogs).
    pub tasks: Tasks,
    /// The running download's latest progress.
    pub download_progress: Option<crate::models::Progress>,
    /// The planner's estimate for the current settings, the settings it was made for, and
    /// the settings of the one asked for.
    pub plan: Option<crate::train::planner::Plan>,
    pub plan_key: String,
    pub plan_pending: Option<String>,
    pub toasts: Vec<Toast>,
    pub show_help: bool,
    pub show_debug: bool,
    pub tab: Tab,
    pub frame: FrameStats,
    pub path_input: String,
    pub model_input: String,
    pub canvas_rect: Option<egui::Rect>,
    pub space_pan: bool,
    /// In-progress box drag (image coords) and brush stroke.
    pub box_drag: Option<([f32; 2], [f32; 2])>,
    pub stroke: Option<Stroke>,
    pub hover_image: Option<[f32; 2]>,
    pub renaming: Option<(u64, String)>,
    pub autopilot: Option<autopilot::Autopilot>,
}

fn spec_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default()
}

impl SegApp {
    /// Builds the app; `render_state` enables the WGSL overlay.
    pub fn new(config: AppConfig, render_state: Option<&eframe::egui_wgpu::RenderState>) -> Self {
        let waker = Waker::default();
        let worker = WorkerHandle::spawn(config.device.clone(), waker.clone());
        let writer = Writer::spawn(waker.clone());
        let tasks = Tasks::new(waker.clone());
        let loader = Loader::spawn(waker.clone());
        let settings: Settings = config
            .settings_file
            .as_ref()
            .and_then(|f| std::fs::read(f).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let wgpu_overlay = render_state.map(overlay::init_wgpu).unwrap_or(false);
        let mut train_cfg = TrainConfig::default();
        train_cfg.save_final = true;
        let mut app = SegApp {
            waker,
            worker,
            writer,
            loader,
            settings,
            project: None,
            current: None,
            thumbs: HashMap::new(),
            histories: HashMap::new(),
            draft: Draft::default(),
            selected: None,
            tool: Tool::Prompt,
            brush_radius: 6.0,
            view: ViewXform {
                zoom: 1.0,
                offset: egui::Vec2::ZERO,
            },
            fit_pending: true,
            view_touched: false,
            opacity: 0.45,
            outline_px: 1.5,
            show_objects: true,
            overlay: None,
            overlay_dirty: true,
            draft_dirty: true,
            draft_mask: None,
            draft_b_mask: None,
            labels_version: 0,
            draft_version: 0,
            label_of: HashMap::new(),
            object_at_label: Vec::new(),
            cpu_overlay: Default::default(),
            wgpu_overlay,
            base: ModelState::default(),
            adapted: ModelState::default(),
            use_adapter: false,
            ab_view: false,
            embedding: HashMap::new(),
            embedded: HashSet::new(),
            prefetched: HashSet::new(),
            last_embed_ms: None,
            warming_since: None,
            last_decode_ms: None,
            click_latency_ms: None,
            click_at: None,
            seq: 0,
            train: TrainView::default(),
            train_cfg,
            export_options: Default::default(),
            export_dir: String::new(),
            export_report: None,
            export_rx: None,
            tasks,
            download_progress: None,
            plan: None,
            plan_key: String::new(),
            plan_pending: None,
            toasts: Vec::new(),
            show_help: false,
            show_debug: false,
            tab: Tab::Annotate,
            frame: FrameStats::default(),
            path_input: String::new(),
            model_input: String::new(),
            canvas_rect: None,
            space_pan: false,
            box_drag: None,
            stroke: None,
            hover_image: None,
            renaming: None,
            autopilot: None,
            config,
        };
        let start_model = app.config.model.clone().or_else(|| {
            let last = app.settings.model.clone().filter(|p| p.is_file());
            last.or_else(|| find_checkpoints(&app.config.model_dir).into_iter().next())
                .map(|path| ModelSpec { path, config: None })
        });
        if let Some(spec) = start_model {
            app.load_model(spec);
        }
        app
    }

    // ------------------------------------------------------------------ messages

    pub fn toast(&mut self, kind: ToastKind, text: impl Into<String>) {
        let text = text.into();
        if kind == ToastKind::Error {
            tracing::warn!("{text}");
        }
        self.toasts.push(Toast {
            kind,
            text,
            at: Instant::now(),
        });
        if self.toasts.len() > 6 {
            self.toasts.remove(0);
        }
    }

    pub fn error(&mut self, text: impl Into<String>) {
        self.toast(ToastKind::Error, text);
    }

    fn save_settings(&mut self) {
        if let Some(f) = &self.config.settings_file
            && let Ok(b) = serde_json::to_vec_pretty(&self.settings)
        {
            if let Some(d) = f.parent() {
                let _ = std::fs::create_dir_all(d);
            }
            self.writer.send(WriteJob::Bytes {
                path: f.clone(),
                bytes: b,
            });
        }
    }

    // ------------------------------------------------------------------ models

    pub fn load_model(&mut self, spec: ModelSpec) {
        self.base.loading = Some(spec_name(&spec.path));
        self.base.error = None;
        self.base.spec = Some(spec.clone());
        self.embedded.clear();
        self.worker.send(Job::LoadModel(spec));
        if self.config.device.is_gpu {
            self.worker.send(Job::WarmUp);
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
                self.worker.send(Job::SetAdapter(None));
                self.adapted = ModelState::default();
            }
            Some(rel) => {
                let abs = p.resolve(&rel);
                p.project.active_adapter = Some(rel.to_string_lossy().to_string());
                self.use_adapter = true;
                self.adapted = ModelState {
                    loading: Some(spec_name(&abs)),
                    ..Default::default()
                };
                self.embedded.retain(|(s, _)| *s != Slot::Adapted);
                self.worker.send(Job::SetAdapter(Some(abs)));
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

    fn slots(&self) -> Vec<Slot> {
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
    fn invalidate_preds(&mut self) {
        self.draft.pred = None;
        self.draft.pred_b = None;
        self.draft_dirty = true;
        self.ensure_embedded();
        self.request_predict();
    }

    // ------------------------------------------------------------------ projects

    pub fn open_project_at(&mut self, path: &Path) {
        match OpenProject::open(path) {
            Ok(p) => self.set_project(p),
            Err(e) => self.error(format!("Cannot open project: {e:#}")),
        }
    }

    pub fn create_project_at(&mut self, path: &Path) {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| "project".into());
        match OpenProject::create(path, &name) {
            Ok(p) => self.set_project(p),
            Err(e) => self.error(format!("Cannot create project: {e:#}")),
        }
    }

    /// Opens the bundled demo project, creating it first (on a background thread: it writes
    /// the images and 36 mask files).
    pub fn open_demo(&mut self) {
        if self.tasks.running(JobKind::Demo) {
            return;
        }
        let job = crate::service::jobs::open_demo(self.config.demo_dir.clone());
        self.tasks.spawn(JobKind::Demo, "demo project", job);
    }

    pub fn set_project(&mut self, p: OpenProject) {
        self.close_project();
        let removed = p.collect_garbage();
        if removed > 0 {
            tracing::info!("removed {removed} unreferenced annotation files");
        }
        let root = p.root.clone();
        self.settings.recent.retain(|r| r != &root);
        self.settings.recent.insert(0, root);
        self.settings.recent.truncate(10);
        self.save_settings();
        for img in &p.project.images {
            self.loader.send(LoadJob::Thumb {
                id: img.id,
                path: p.image_path(img),
            });
        }
        if self.base.spec.is_none()
            && let Some(m) = p.project.model.clone().filter(|m| m.is_file())
        {
            self.load_model(ModelSpec {
                path: m,
                config: None,
            });
        }
        let first = p.project.images.first().map(|i| i.id);
        let adapter = p.project.active_adapter.clone();
        self.export_dir = p
            .root
            .join(crate::project::project::EXPORT_DIR)
            .to_string_lossy()
            .to_string();
        if let Some(v) = p
            .project
            .train_config
            .clone()
            .and_then(|v| serde_json::from_value::<TrainConfig>(v).ok())
        {
            match v.validate() {
                Ok(()) => self.train_cfg = v,
                Err(e) => self.error(format!(
                    "project.json: training settings ignored, the current ones are kept ({e:#})"
                )),
            }
        }
        self.project = Some(p);
        if let Some(a) = adapter {
            let abs = self.project.as_ref().map(|p| p.resolve(Path::new(&a)));
            if abs.as_ref().is_some_and(|a| a.is_file()) {
                self.select_adapter(Some(PathBuf::from(a)));
            }
        }
        if let Some(id) = first {
            self.open_image(id);
        }
    }

    pub fn close_project(&mut self) {
        self.writer.flush_blocking();
        self.project = None;
        self.current = None;
        self.thumbs.clear();
        self.histories.clear();
        self.draft = Draft::default();
        self.selected = None;
        self.overlay = None;
        self.embedded.clear();
        self.prefetched.clear();
        if self.use_adapter || self.adapted.summary.is_some() {
            self.worker.send(Job::SetAdapter(None));
            self.adapted = ModelState::default();
            self.use_adapter = false;
            self.ab_view = false;
        }
    }

    /// Queues `project.json` for writing (after any mask queued before).
    pub fn save_project(&mut self) {
        if let Some(p) = &self.project {
            match p.project.to_json() {
                Ok(bytes) => self.writer.send(WriteJob::Bytes {
                    path: p.json_path(),
                    bytes,
                }),
                Err(e) => {
                    let msg = format!("Cannot save the project: {e:#}");
                    self.error(msg);
                }
            }
        }
    }

    /// Blocks until every queued write is on disk.
    pub fn flush(&self) {
        self.writer.flush_blocking();
    }

    pub fn image_ids(&self) -> Vec<u64> {
        self.project
            .as_ref()
            .map(|p| p.project.images.iter().map(|i| i.id).collect())
            .unwrap_or_default()
    }

    pub fn current_entry(&self) -> Option<&ImageEntry> {
        let id = self.current.as_ref()?.id;
        self.project.as_ref()?.project.image(id)
    }

    pub fn open_image(&mut self, id: u64) {
        let Some(p) = &self.project else { return };
        let Some(img) = p.project.image(id) else {
            return;
        };
        let masks = img
            .objects
            .iter()
            .map(|o| (o.id, p.resolve(&o.mask)))
            .collect();
        let path = p.image_path(img);
        let key = ImageKey {
            id,
            sha256: img.sha256.clone(),
        };
        let (w, h) = (img.width as usize, img.height as usize);
        self.loader.send(LoadJob::Image { id, path, masks });
        self.current = Some(ImageView {
            id,
            key,
            width: w,
            height: h,
            rgb: None,
            texture: None,
            masks: HashMap::new(),
            error: None,
        });
        self.draft = Draft::default();
        self.selected = None;
        self.box_drag = None;
        self.stroke = None;
        self.overlay = None;
        self.overlay_dirty = true;
        self.draft_dirty = true;
        self.fit_pending = true;
        self.embedding.clear();
        // Keep queued work only for this image and the next.
        let mut keep = vec![id];
        keep.extend(self.neighbour(id, 1));
        self.worker.send(Job::Retain(keep));
    }

    fn neighbour(&self, id: u64, step: isize) -> Option<u64> {
        let ids = self.image_ids();
        let i = ids.iter().position(|&x| x == id)? as isize + step;
        (i >= 0 && (i as usize) < ids.len()).then(|| ids[i as usize])
    }

    pub fn next_image(&mut self, step: isize) {
        if let Some(id) = self.current.as_ref().map(|c| c.id)
            && let Some(n) = self.neighbour(id, step)
        {
            self.open_image(n);
        }
    }

    /// Sends embed jobs for the current image on the slots in use (the worker answers at once
    /// from its cache when it has them).
    fn ensure_embedded(&mut self) {
        if !self.model_ready() {
            return;
        }
        let Some(cur) = &self.current else { return };
        let Some(rgb) = cur.rgb.clone() else { return };
        let key = cur.key.clone();
        let cache = self.project.as_ref().map(|p| p.cache_dir());
        for slot in self.slots() {
            if slot == Slot::Adapted && self.adapted.summary.is_none() {
                continue;
            }
            self.worker.send(Job::Embed {
                slot,
                key: key.clone(),
                image: rgb.clone(),
                prefetch: false,
                cache_dir: cache.clone(),
            });
        }
    }

    /// The current image's embedding is ready on every model slot in use.
    pub fn current_embedded(&self) -> bool {
        let Some(cur) = &self.current else {
            return false;
        };
        cur.rgb.is_some()
            && self.model_ready()
            && self
                .slots()
                .iter()
                .all(|s| self.embedded.contains(&(*s, cur.id)))
    }

    // ------------------------------------------------------------------ background results

    fn pump(&mut self, ctx: &egui::Context) {
        while let Ok(e) = self.worker.rx.try_recv() {
            self.on_worker(e);
        }
        while let Ok(l) = self.loader.rx.try_recv() {
            self.on_loaded(ctx, l);
        }
        while let Ok(e) = self.writer.errors.try_recv() {
            self.error(format!("Could not save {}: {}", e.path.display(), e.error));
        }
        for r in self.tasks.poll() {
            self.on_task(r);
        }
    }

    fn on_task(&mut self, r: TaskReport) {
        match r {
            TaskReport::Event { event, .. } => match event {
                JobEvent::Status(s) => self.train.status = s,
                JobEvent::Train(e) => self.train.apply(e),
                JobEvent::Download(p) => self.download_progress = Some(p),
            },
            TaskReport::Finished { kind, result, .. } => self.on_finished(kind, result),
        }
    }

    fn on_finished(&mut self, kind: JobKind, result: Result<JobOutput, String>) {
        match kind {
            JobKind::Train => self.train.task = None,
            JobKind::Export => self.export_rx = None,
            JobKind::Download => self.download_progress = None,
            JobKind::Demo | JobKind::Import | JobKind::Dialog => {}
        }
        let output = match result {
            Ok(o) => o,
            Err(e) => {
                let what = match kind {
                    JobKind::Train => {
                        self.train.error = Some(e.clone());
                        self.train.status = format!("failed: {e}");
                        "Training failed"
                    }
                    JobKind::Export => "Export failed",
                    JobKind::Download => "Download failed",
                    JobKind::Import => "Images not added",
                    JobKind::Dialog => "File dialog",
                    // The demo job's error names what failed.
                    JobKind::Demo => {
                        self.error(e);
                        return;
                    }
                };
                self.error(format!("{what}: {e}"));
                return;
            }
        };
        match output {
            JobOutput::Trained(Some(o)) => self.on_trained(o),
            JobOutput::Trained(None) => self.toast(
                ToastKind::Info,
                "Training cancelled; press Resume to continue",
            ),
            JobOutput::Exported(rep) => {
                self.toast(
                    ToastKind::Info,
                    format!(
                        "Exported {} files to {}",
                        rep.files.len(),
                        rep.out.display()
                    ),
                );
                self.export_report = Some(rep);
            }
            JobOutput::Downloaded(path) => {
                self.toast(
                    ToastKind::Info,
                    format!("Downloaded and verified {}", path.display()),
                );
                self.load_model(ModelSpec { path, config: None });
            }
            JobOutput::Demo(p) => self.set_project(p),
            JobOutput::Imported(list) => self.on_imported(list),
            JobOutput::Picked(kind, paths) => self.on_dialog(kind, paths),
        }
    }

    fn on_worker(&mut self, e: Event) {
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
                        self.plan_key.clear();
                        self.settings.model = Some(summary.path.clone());
                        self.save_settings();
                        if let Some(p) = &mut self.project {
                            p.project.model = Some(summary.path.clone());
                        }
                        self.base = ModelState {
                            spec: self.base.spec.take(),
                            summary: Some(summary),
                            loading: None,
                            error: None,
                        };
                        self.embedded.clear();
                    }
                    Slot::Adapted => {
                        self.adapted = ModelState {
                            spec: None,
                            summary: Some(summary),
                            loading: None,
                            error: None,
                        };
                        self.embedded.retain(|(s, _)| *s != Slot::Adapted);
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
                self.embedding.insert(
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
                self.embedding.remove(&slot);
                self.embedded.insert((slot, key.id));
                if !from_cache {
                    self.last_embed_ms = Some(ms);
                }
                let cur = self.current.as_ref().map(|c| c.id);
                if cur == Some(key.id) {
                    // Prefetch the next image's embedding while the user annotates this one.
                    if let Some(next) = self.neighbour(key.id, 1)
                        && self.prefetched.insert(next)
                        && let Some(p) = &self.project
                        && let Some(img) = p.project.image(next)
                    {
                        self.loader.send(LoadJob::Image {
                            id: next,
                            path: p.image_path(img),
                            masks: Vec::new(),
                        });
                    }
                }
            }
            Event::EmbedError { slot, key, error } => {
                self.embedding.remove(&slot);
                self.embedded.remove(&(slot, key.id));
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
                self.last_decode_ms = Some(pred.ms);
                if let Some((s, t)) = self.click_at
                    && s == seq
                    && slot == self.active_slot()
                {
                    self.click_latency_ms = Some(t.elapsed().as_secs_f64() * 1e3);
                    self.click_at = None;
                }
                self.store_prediction(key.id, slot, seq, pred);
            }
            Event::Planned { key, plan } => {
                if self.plan_pending.as_ref() == Some(&key) {
                    self.plan_pending = None;
                    self.plan_key = key;
                    self.plan = plan.map(|p| *p);
                }
            }
            Event::WarmupStarted => self.warming_since = Some(Instant::now()),
            Event::WarmupDone { ms, error } => {
                self.warming_since = None;
                match error {
                    Some(e) => self.error(format!("GPU kernel warm-up: {e}")),
                    None if ms > 2000.0 => self.toast(
                        ToastKind::Info,
                        format!("GPU kernels ready ({:.0} s, once per start)", ms / 1e3),
                    ),
                    None => {}
                }
            }
            Event::PredictError { seq, error, .. } => {
                if seq == self.draft.seq {
                    self.error(format!("SAM could not answer the prompt: {error}"));
                }
            }
        }
    }

    /// Puts a prediction into the draft (and into the undo entry that made these prompts).
    fn store_prediction(&mut self, image: u64, slot: Slot, seq: u64, pred: Arc<PredView>) {
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
            self.draft_dirty = true;
        }
    }

    fn on_loaded(&mut self, ctx: &egui::Context, l: Loaded) {
        match l {
            Loaded::Thumb { id, image } => {
                let t =
                    ctx.load_texture(format!("thumb-{id}"), image, egui::TextureOptions::LINEAR);
                self.thumbs.insert(id, t);
            }
            Loaded::Image {
                id,
                rgb,
                display,
                masks,
                ..
            } => {
                if self.current.as_ref().map(|c| c.id) == Some(id) {
                    let mut errors = Vec::new();
                    {
                        let cur = self.current.as_mut().expect("checked");
                        cur.texture = Some(ctx.load_texture(
                            format!("image-{id}"),
                            display,
                            egui::TextureOptions::LINEAR,
                        ));
                        cur.rgb = Some(rgb);
                        for (oid, m) in masks {
                            match m {
                                Ok(m) => {
                                    cur.masks.insert(oid, m);
                                }
                                Err(e) => errors.push(e),
                            }
                        }
                    }
                    for e in errors {
                        self.error(format!("Mask missing: {e}"));
                    }
                    self.overlay_dirty = true;
                    self.fit_pending = true;
                    self.ensure_embedded();
                } else if self.prefetched.contains(&id) && self.model_ready() {
                    let Some(p) = &self.project else { return };
                    let Some(img) = p.project.image(id) else {
                        return;
                    };
                    let key = ImageKey {
                        id,
                        sha256: img.sha256.clone(),
                    };
                    let cache = Some(p.cache_dir());
                    for slot in self.slots() {
                        self.worker.send(Job::Embed {
                            slot,
                            key: key.clone(),
                            image: rgb.clone(),
                            prefetch: true,
                            cache_dir: cache.clone(),
                        });
                    }
                }
            }
            Loaded::Error { id, error } => {
                if let Some(c) = &mut self.current
                    && c.id == id
                {
                    c.error = Some(error.clone());
                }
                self.error(format!("Cannot load image: {error}"));
            }
        }
    }

    fn on_imported(&mut self, list: Vec<Result<ImageEntry, String>>) {
        let Some(p) = &mut self.project else { return };
        let mut added = Vec::new();
        let mut errors = Vec::new();
        for r in list {
            match r.and_then(|e| p.insert_image(e).map_err(|e| format!("{e:#}"))) {
                Ok(id) => added.push(id),
                Err(e) => errors.push(e),
            }
        }
        for id in &added {
            if let Some(img) = p.project.image(*id) {
                self.loader.send(LoadJob::Thumb {
                    id: *id,
                    path: p.image_path(img),
                });
            }
        }
        let first = added.first().copied();
        let n = added.len();
        self.save_project();
        for e in errors {
            self.error(format!("Image not added: {e}"));
        }
        if n > 0 {
            self.toast(ToastKind::Info, format!("Added {n} image(s)"));
        }
        if self.current.is_none()
            && let Some(id) = first
        {
            self.open_image(id);
        }
    }

    /// Validates, hashes and copies images on a background thread.
    pub fn import_images(&mut self, files: Vec<PathBuf>, copy: bool) {
        let Some(p) = &self.project else {
            self.error("Open or create a project first");
            return;
        };
        let job = crate::service::jobs::import_images(p.root.clone(), files, copy);
        self.tasks.spawn(JobKind::Import, "adding images", job);
    }

    pub fn open_dialog(&mut self, kind: DialogKind) {
        let start = self.project.as_ref().map(|p| p.root.clone());
        let job = crate::service::dialogs::pick(kind, start, self.config.model_dir.clone());
        self.tasks.spawn(JobKind::Dialog, "file dialog", job);
    }

    fn on_dialog(&mut self, kind: DialogKind, paths: Vec<PathBuf>) {
        if paths.is_empty() {
            return;
        }
        match kind {
            DialogKind::OpenProject => self.open_project_at(&paths[0]),
            DialogKind::NewProject => self.create_project_at(&paths[0]),
            DialogKind::AddImages => self.import_images(paths, true),
            DialogKind::AddFolder => match crate::project::project::list_images(&paths[0]) {
                Ok(files) if !files.is_empty() => self.import_images(files, true),
                Ok(_) => self.error(format!("No images in {}", paths[0].display())),
                Err(e) => self.error(format!("{e:#}")),
            },
            DialogKind::PickModel => self.load_model(ModelSpec {
                path: paths[0].clone(),
                config: None,
            }),
            DialogKind::ExportDir => self.export_dir = paths[0].to_string_lossy().to_string(),
        }
    }

    // ------------------------------------------------------------------ prompts and edits

    fn history(&mut self) -> Option<&mut History> {
        let id = self.current.as_ref()?.id;
        Some(self.histories.entry(id).or_default())
    }

    /// Records a draft change as one undoable edit and asks SAM again if the prompts changed.
    fn edit_draft(&mut self, f: impl FnOnce(&mut Draft)) {
        if self.current.is_none() {
            return;
        }
        let before = self.draft.clone();
        f(&mut self.draft);
        if self.draft.same_input(&before) {
            return;
        }
        let prompts_changed = !self.draft.same_prompts(&before);
        if prompts_changed {
            self.seq += 1;
            self.draft.seq = self.seq;
        }
        let after = self.draft.clone();
        if let Some(h) = self.history() {
            h.push(Edit::Draft { before, after });
        }
        self.draft_dirty = true;
        if prompts_changed {
            self.request_predict();
        }
    }

    pub fn can_prompt(&self) -> bool {
        self.current.as_ref().is_some_and(|c| c.rgb.is_some())
    }

    pub fn add_point(&mut self, x: f64, y: f64, positive: bool) {
        if !self.can_prompt() {
            return;
        }
        self.selected = None;
        self.edit_draft(|d| d.points.push(Point { x, y, positive }));
        self.click_at = Some((self.draft.seq, Instant::now()));
    }

    pub fn set_box(&mut self, b: [f64; 4]) {
        if !self.can_prompt() {
            return;
        }
        let b = [
            b[0].min(b[2]),
            b[1].min(b[3]),
            b[0].max(b[2]),
            b[1].max(b[3]),
        ];
        self.selected = None;
        self.edit_draft(|d| d.bbox = Some(b));
        self.click_at = Some((self.draft.seq, Instant::now()));
    }

    pub fn clear_prompts(&mut self) {
        if !self.draft.is_empty() {
            self.edit_draft(|d| {
                *d = Draft {
                    seq: d.seq,
                    ..Default::default()
                }
            });
        }
        self.box_drag = None;
    }

    pub fn cycle_candidate(&mut self) {
        let n = self.draft.n_candidates();
        if n > 1 {
            self.edit_draft(|d| d.choice = (d.choice + 1) % n);
        }
    }

    pub fn choose_candidate(&mut self, i: usize) {
        if i < self.draft.n_candidates() {
            self.edit_draft(|d| d.choice = i);
        }
    }

    /// SAM with no prompt at all (for adapters trained with the no-prompt mix).
    pub fn segment_without_prompts(&mut self) {
        if !self.can_prompt() {
            return;
        }
        self.selected = None;
        self.edit_draft(|d| {
            *d = Draft {
                unprompted: true,
                seq: d.seq,
                ..Default::default()
            }
        });
        self.click_at = Some((self.draft.seq, Instant::now()));
    }

    fn request_predict(&mut self) {
        if !self.draft.has_prompts() {
            self.draft.pred = None;
            self.draft.pred_b = None;
            self.draft_dirty = true;
            return;
        }
        let Some(cur) = &self.current else { return };
        if !self.model_ready() {
            return;
        }
        let key = cur.key.clone();
        let d = &self.draft;
        let multimask = d.points.len() == 1 && d.bbox.is_none();
        for slot in self.slots() {
            let prev = if slot == self.active_slot() {
                &d.pred
            } else {
                &d.pred_b
            };
            // Refine with the previous answer's logits once several points are given.
            let mask_input = (d.points.len() >= 2)
                .then(|| {
                    prev.as_ref().and_then(|p| {
                        p.low_res
                            .get(d.choice.min(p.low_res.len().saturating_sub(1)))
                            .map(|l| l.as_ref().clone())
                    })
                })
                .flatten();
            let prompt = if d.unprompted {
                PromptInput::default()
            } else {
                PromptInput {
                    points: d.points.clone(),
                    bbox: d.bbox,
                    mask_input,
                }
            };
            self.worker.send(Job::Predict {
                slot,
                key: key.clone(),
                prompt,
                multimask,
                seq: d.seq,
            });
        }
    }

    fn commit_stroke(&mut self, s: Stroke) {
        let Some((cid, w, h)) = self.current.as_ref().map(|c| (c.id, c.width, c.height)) else {
            return;
        };
        if let Some(oid) = self.selected {
            // Paint on the selected accepted object.
            let entry = self
                .project
                .as_ref()
                .and_then(|p| p.project.image(cid))
                .and_then(|i| i.objects.iter().find(|o| o.id == oid))
                .cloned();
            let old = self
                .current
                .as_ref()
                .and_then(|c| c.masks.get(&oid).cloned());
            let (Some(entry), Some(old)) = (entry, old) else {
                return;
            };
            let mut m = old.as_ref().clone();
            s.apply(&mut m, w, h);
            let Some((area, bbox)) = mask_stats(&m, w) else {
                self.error("The eraser would leave the object empty; delete it instead (Del)");
                return;
            };
            let mut new = entry.clone();
            new.area = area;
            new.bbox = bbox;
            new.prompts.painted = true;
            new.mask = self.new_mask_rel(cid, oid);
            let m = Arc::new(m);
            self.write_mask(&new.mask, m.clone());
            let e = Edit::Replace {
                before: (entry, Some(old)),
                after: (new.clone(), Some(m.clone())),
            };
            self.apply_replace(new, Some(m));
            if let Some(h) = self.history() {
                h.push(e);
            }
        } else {
            self.edit_draft(|d| d.strokes.push(Arc::new(s)));
        }
    }

    fn new_mask_rel(&mut self, image: u64, object: u64) -> PathBuf {
        let Some(p) = &mut self.project else {
            return PathBuf::new();
        };
        let v = p.project.take_id();
        PathBuf::from(crate::project::project::ANNOTATIONS_DIR)
            .join(format!("img{image}"))
            .join(format!("obj{object}_{v}.png"))
    }

    fn write_mask(&mut self, rel: &Path, mask: Arc<Vec<bool>>) {
        let (Some(p), Some(cur)) = (&self.project, &self.current) else {
            return;
        };
        self.writer.send(WriteJob::Mask {
            path: p.resolve(rel),
            mask,
            width: cur.width,
            height: cur.height,
        });
    }

    /// Accepts the draft as a new object.
    pub fn accept(&mut self) {
        let Some(cur) = &self.current else { return };
        let (id, w, h) = (cur.id, cur.width, cur.height);
        let Some(mask) = self.draft.mask(w, h) else {
            self.error("Nothing to accept: click on an object first");
            return;
        };
        let Some((area, bbox)) = mask_stats(&mask, w) else {
            self.error("The mask is empty; add a positive point on the object");
            return;
        };
        let model = match self.active_slot() {
            Slot::Base => self.base.summary.as_ref().map(|s| s.name.clone()),
            Slot::Adapted => Some(format!(
                "{} + {}",
                self.base
                    .summary
                    .as_ref()
                    .map(|s| s.name.clone())
                    .unwrap_or_default(),
                self.adapted
                    .summary
                    .as_ref()
                    .map(|s| s.name.clone())
                    .unwrap_or_default()
            )),
        };
        let Some(p) = &mut self.project else { return };
        let oid = p.project.take_id();
        let class = p
            .project
            .classes
            .first()
            .map(|c| c.name.clone())
            .unwrap_or_else(|| "object".into());
        let n = p.project.image(id).map(|i| i.objects.len()).unwrap_or(0);
        let rel = self.new_mask_rel(id, oid);
        let d = &self.draft;
        let entry = ObjectEntry {
            id: oid,
            label: format!("{class} {}", n + 1),
            class,
            color: palette_color(oid),
            mask: rel.clone(),
            area,
            bbox,
            prompts: PromptRecord {
                points: d
                    .points
                    .iter()
                    .map(|p| PointEntry {
                        x: p.x,
                        y: p.y,
                        positive: p.positive,
                    })
                    .collect(),
                bbox: d.bbox,
                candidate: d.choice,
                painted: !d.strokes.is_empty(),
                model,
            },
            source: if d.has_prompts() {
                "sam".into()
            } else {
                "brush".into()
            },
            hidden: false,
            created: now_secs(),
        };
        let mask = Arc::new(mask);
        self.write_mask(&rel, mask.clone());
        let draft_before = std::mem::take(&mut self.draft);
        self.seq += 1;
        self.draft.seq = self.seq;
        self.insert_object(n, entry.clone(), mask.clone());
        if let Some(h) = self.history() {
            h.push(Edit::Accept {
                object: entry,
                mask,
                index: n,
                draft_before,
            });
        }
    }

    fn insert_object(&mut self, index: usize, entry: ObjectEntry, mask: Arc<Vec<bool>>) {
        let Some(cur) = &mut self.current else { return };
        let id = cur.id;
        cur.masks.insert(entry.id, mask);
        if let Some(p) = &mut self.project
            && let Some(img) = p.project.image_mut(id)
        {
            let i = index.min(img.objects.len());
            img.objects.insert(i, entry);
        }
        self.overlay_dirty = true;
        self.draft_dirty = true;
        self.save_project();
    }

    fn remove_object(&mut self, oid: u64) -> Option<(usize, ObjectEntry, Option<Arc<Vec<bool>>>)> {
        let cur = self.current.as_mut()?;
        let id = cur.id;
        let mask = cur.masks.remove(&oid);
        let p = self.project.as_mut()?;
        let img = p.project.image_mut(id)?;
        let i = img.objects.iter().position(|o| o.id == oid)?;
        let e = img.objects.remove(i);
        if self.selected == Some(oid) {
            self.selected = None;
        }
        self.overlay_dirty = true;
        self.save_project();
        Some((i, e, mask))
    }

    fn apply_replace(&mut self, entry: ObjectEntry, mask: Option<Arc<Vec<bool>>>) {
        let Some(cur) = &mut self.current else { return };
        let id = cur.id;
        if let Some(m) = mask {
            cur.masks.insert(entry.id, m);
        }
        if let Some(p) = &mut self.project
            && let Some(img) = p.project.image_mut(id)
            && let Some(o) = img.objects.iter_mut().find(|o| o.id == entry.id)
        {
            *o = entry;
        }
        self.overlay_dirty = true;
        self.save_project();
    }

    pub fn delete_object(&mut self, oid: u64) {
        if let Some((index, object, mask)) = self.remove_object(oid)
            && let Some(h) = self.history()
        {
            h.push(Edit::Delete {
                object,
                mask,
                index,
            });
        }
    }

    pub fn delete_selected(&mut self) {
        if let Some(oid) = self.selected {
            self.delete_object(oid);
        }
    }

    /// Changes an object's metadata (label, visibility) as an undoable edit.
    pub fn update_object(&mut self, oid: u64, f: impl FnOnce(&mut ObjectEntry)) {
        let Some(cur) = &self.current else { return };
        let Some(p) = &self.project else { return };
        let Some(before) = p
            .project
            .image(cur.id)
            .and_then(|i| i.objects.iter().find(|o| o.id == oid))
            .cloned()
        else {
            return;
        };
        let mask = cur.masks.get(&oid).cloned();
        let mut after = before.clone();
        f(&mut after);
        if after == before {
            return;
        }
        self.apply_replace(after.clone(), None);
        if let Some(h) = self.history() {
            h.push(Edit::Replace {
                before: (before, mask.clone()),
                after: (after, mask),
            });
        }
    }

    fn restore_draft(&mut self, mut d: Draft) {
        self.seq += 1;
        let had_pred = d.pred.is_some();
        // In-flight answers for other prompts must not land on the restored draft.
        d.seq = self.seq;
        self.draft = d;
        self.draft_dirty = true;
        if !had_pred && self.draft.has_prompts() {
            self.request_predict();
        }
    }

    pub fn undo(&mut self) {
        let Some(e) = self.history().and_then(|h| h.undo.pop()) else {
            return;
        };
        match &e {
            Edit::Draft { before, .. } => self.restore_draft(before.clone()),
            Edit::Accept {
                object,
                draft_before,
                ..
            } => {
                self.remove_object(object.id);
                self.restore_draft(draft_before.clone());
            }
            Edit::Delete {
                object,
                mask,
                index,
            } => {
                if let Some(m) = mask.clone() {
                    self.insert_object(*index, object.clone(), m);
                }
            }
            Edit::Replace { before, .. } => self.apply_replace(before.0.clone(), before.1.clone()),
        }
        if let Some(h) = self.history() {
            h.redo.push(e);
        }
    }

    pub fn redo(&mut self) {
        let Some(e) = self.history().and_then(|h| h.redo.pop()) else {
            return;
        };
        match &e {
            Edit::Draft { after, .. } => self.restore_draft(after.clone()),
            Edit::Accept {
                object,
                mask,
                index,
                ..
            } => {
                self.insert_object(*index, object.clone(), mask.clone());
                self.seq += 1;
                self.draft = Draft {
                    seq: self.seq,
                    ..Default::default()
                };
                self.draft_dirty = true;
            }
            Edit::Delete { object, .. } => {
                self.remove_object(object.id);
            }
            Edit::Replace { after, .. } => self.apply_replace(after.0.clone(), after.1.clone()),
        }
        if let Some(h) = self.history() {
            h.undo.push(e);
        }
    }

    pub fn can_undo(&self) -> bool {
        self.current
            .as_ref()
            .and_then(|c| self.histories.get(&c.id))
            .is_some_and(|h| !h.undo.is_empty())
    }
    pub fn can_redo(&self) -> bool {
        self.current
            .as_ref()
            .and_then(|c| self.histories.get(&c.id))
            .is_some_and(|h| !h.redo.is_empty())
    }

    // ------------------------------------------------------------------ overlay data

    fn refresh_overlay(&mut self) {
        let Some(cur) = &self.current else {
            self.overlay = None;
            return;
        };
        let (w, h) = (cur.width, cur.height);
        let objects: Vec<ObjectEntry> = self
            .project
            .as_ref()
            .and_then(|p| p.project.image(cur.id))
            .map(|i| i.objects.clone())
            .unwrap_or_default();
        if self.overlay_dirty || self.overlay.is_none() {
            self.overlay_dirty = false;
            self.labels_version += 1;
            self.label_of.clear();
            self.object_at_label = vec![0];
            let mut palette = vec![[0u8; 4]];
            let mut masks: Vec<(u16, &[bool])> = Vec::new();
            for o in objects.iter().filter(|o| !o.hidden) {
                if let Some(m) = cur.masks.get(&o.id) {
                    let k = palette.len() as u16;
                    if k == u16::MAX {
                        break;
                    }
                    palette.push([o.color[0], o.color[1], o.color[2], 255]);
                    self.label_of.insert(o.id, k);
                    self.object_at_label.push(o.id);
                    masks.push((k, m.as_slice()));
                }
            }
            let labels = overlay::build_labels(w, h, &masks);
            let prev = self.overlay.take();
            self.overlay = Some(OverlayData {
                width: w as u32,
                height: h as u32,
                labels: Arc::new(labels),
                labels_version: self.labels_version,
                palette: Arc::new(palette),
                draft: prev.as_ref().and_then(|p| p.draft.clone()),
                draft_version: prev.map(|p| p.draft_version).unwrap_or(0),
            });
        }
        if self.draft_dirty {
            self.draft_dirty = false;
            self.draft_version += 1;
            self.draft_mask = self.draft.mask(w, h).map(Arc::new);
            self.draft_b_mask = self.draft.mask_b(w, h);
            if let Some(o) = &mut self.overlay {
                o.draft = self.draft_mask.clone();
                o.draft_version = self.draft_version;
            }
        }
    }

    /// Overlay of the B side of the A/B view: same objects, the other model's draft.
    pub fn overlay_b(&self) -> Option<OverlayData> {
        let mut o = self.overlay.clone()?;
        o.draft = self.draft_b_mask.clone();
        o.draft_version = self.draft_version;
        Some(o)
    }

    pub fn overlay_params(&self) -> OverlayParams {
        OverlayParams {
            opacity: self.opacity,
            outline_px: self.outline_px,
            selected: self
                .selected
                .and_then(|s| self.label_of.get(&s).copied())
                .unwrap_or(0) as u32,
            show_objects: self.show_objects,
            show_draft: true,
            draft_color: [255, 220, 40],
        }
    }

    // ------------------------------------------------------------------ model download

    /// Downloads the default checkpoint (MobileSAM) into the model folder, then loads it.
    pub fn download_default_model(&mut self) {
        if self.tasks.running(JobKind::Download) {
            return;
        }
        self.download_progress = None;
        let job = crate::service::jobs::download_default_model(self.config.model_dir.clone());
        self.tasks.spawn(JobKind::Download, "model download", job);
    }

    pub fn cancel_download(&mut self) {
        self.tasks.cancel(JobKind::Download);
    }

    /// Asks the worker for time and memory of the current training settings, when they
    /// changed since the last estimate.
    pub fn request_plan(&mut self) {
        let Some(base) = self.base.summary.as_ref().filter(|_| self.model_ready()) else {
            return;
        };
        if self.plan_pending.is_some() {
            return;
        }
        let key = format!(
            "{}|{}",
            base.sha256,
            serde_json::to_string(&self.train_cfg).unwrap_or_default()
        );
        if key == self.plan_key {
            return;
        }
        self.plan_pending = Some(key.clone());
        self.worker.send(Job::Plan {
            key,
            config: Box::new(self.train_cfg.clone()),
        });
    }

    // ------------------------------------------------------------------ training

    fn on_trained(&mut self, o: crate::train::TrainOutcome) {
        let Some((cfg, out)) = self.train.last.clone() else {
            return;
        };
        let Some(p) = &mut self.project else { return };
        let rel = |abs: &Path| {
            abs.strip_prefix(&p.root)
                .map(Path::to_path_buf)
                .unwrap_or_else(|_| abs.to_path_buf())
        };
        let mut best_rel = None;
        if o.improved && out.is_file() {
            let r = rel(&out);
            p.project.adapters.push(AdapterEntry {
                name: spec_name(&out).trim_end_matches(".safetensors").to_string(),
                path: r.clone(),
                method: cfg.adapter.method.name().into(),
                created: now_secs(),
                base_dice: Some(o.base_dice),
                best_dice: Some(o.best_dice),
                improved: true,
                message: o.message.clone(),
            });
            best_rel = Some(r);
        }
        let fin = crate::train::trainer::final_path(&out);
        if fin.is_file() {
            p.project.adapters.push(AdapterEntry {
                name: format!(
                    "{} (last step)",
                    spec_name(&out).trim_end_matches(".safetensors")
                ),
                path: rel(&fin),
                method: cfg.adapter.method.name().into(),
                created: now_secs(),
                base_dice: Some(o.base_dice),
                best_dice: None,
                improved: false,
                message: "weights of the last step (not validated as better than the base)".into(),
            });
        }
        self.save_project();
        if let Some(r) = best_rel {
            self.toast(
                ToastKind::Info,
                format!(
                    "Adapter improved Dice {:.3} -> {:.3}; now active (A/B in the Model tab)",
                    o.base_dice, o.best_dice
                ),
            );
            self.select_adapter(Some(r));
        } else {
            self.toast(ToastKind::Info, o.message.clone());
        }
    }

    /// Starts (or resumes) training on the project's accepted objects.
    pub fn start_training(&mut self, resume: bool) {
        if self.train.running() {
            return;
        }
        let Some(spec) = self.base.spec.clone().filter(|_| self.model_ready()) else {
            self.error("Load a base model first (Model tab)");
            return;
        };
        let Some(p) = &self.project else {
            self.error("Open a project first");
            return;
        };
        let images: Vec<crate::service::train::TrainImage> = p
            .project
            .images
            .iter()
            .filter(|i| !i.objects.is_empty())
            .map(|i| crate::service::train::TrainImage {
                name: i.name.clone(),
                path: p.image_path(i),
                masks: i.objects.iter().map(|o| p.resolve(&o.mask)).collect(),
            })
            .collect();
        let adapters_dir = p.adapters_dir();
        let n: usize = images.iter().map(|i| i.masks.len()).sum();
        if n < 2 {
            self.error(format!(
                "Adapt needs at least 2 accepted objects (has {n}); annotate a few more"
            ));
            return;
        }
        let (cfg, out) = if resume {
            match self.train.last.clone() {
                Some(l) => l,
                None => {
                    self.error("Nothing to resume");
                    return;
                }
            }
        } else {
            let mut cfg = self.train_cfg.clone();
            cfg.adapter.alpha = crate::adapt::AdapterConfig::default_alpha(cfg.adapter.rank);
            if let Err(e) = std::fs::create_dir_all(&adapters_dir) {
                self.error(format!("Cannot create {}: {e}", adapters_dir.display()));
                return;
            }
            let out = adapters_dir.join(format!(
                "{}-{}.safetensors",
                cfg.adapter.method.name(),
                now_secs()
            ));
            (cfg, out)
        };
        if let Err(e) = cfg.validate() {
            self.error(format!("Cannot start training: {e:#}"));
            return;
        }
        if let Some(p) = &mut self.project {
            p.project.train_config = serde_json::to_value(&cfg).ok();
        }
        self.save_project();
        if resume {
            // Keep the curves of the first part of the run.
            self.train.cancelled = None;
            self.train.outcome = None;
            self.train.error = None;
        } else {
            self.train.reset();
        }
        self.train.last = Some((cfg.clone(), out.clone()));
        self.train.status = "starting…".into();
        let req = crate::service::train::TrainRequest {
            model: spec,
            images,
            config: cfg,
            out,
            resume,
            device: self.config.device.clone(),
            flushed: Some(self.writer.flush()),
        };
        let job = crate::service::train::job(req);
        self.train.task = Some(self.tasks.spawn(JobKind::Train, "training", job));
        self.tab = Tab::Adapt;
    }

    pub fn cancel_training(&mut self) {
        if self.train.running() {
            self.tasks.cancel(JobKind::Train);
            self.train.status = "cancelling at the next step…".into();
        }
    }

    pub fn can_resume(&self) -> bool {
        !self.train.running()
            && self
                .train
                .last
                .as_ref()
                .is_some_and(|(_, out)| crate::train::resume_dir(out).join("state.json").is_file())
    }

    // ------------------------------------------------------------------ export

    pub fn start_export(&mut self) {
        let Some(p) = &self.project else {
            self.error("Open a project first");
            return;
        };
        let out = if self.export_dir.trim().is_empty() {
            p.root.join(crate::project::project::EXPORT_DIR)
        } else {
            PathBuf::from(self.export_dir.trim())
        };
        let adapter = p
            .project
            .active_adapter
            .as_ref()
            .map(|a| p.resolve(Path::new(a)))
            .filter(|a| a.is_file());
        let req = crate::service::export::ExportRequest {
            project: p.clone(),
            out,
            options: self.export_options.clone(),
            adapter,
            model: self.base.spec.clone(),
            device: self.config.device.clone(),
            flushed: Some(self.writer.flush()),
        };
        self.export_report = None;
        let job = crate::service::export::job(req);
        self.export_rx = Some(self.tasks.spawn(JobKind::Export, "export", job));
    }

    // ------------------------------------------------------------------ frame

    /// Is background work running (for the responsiveness numbers)?
    pub fn busy(&self) -> bool {
        !self.embedding.is_empty() || self.train.running() || self.base.loading.is_some()
    }

    fn frame_begin(&mut self) {
        let now = Instant::now();
        if let Some(last) = self.frame.last_start {
            let dt = now.duration_since(last).as_secs_f32() * 1e3;
            self.frame.recent.push_back((dt, 0.0));
            if self.busy() {
                self.frame.max_interval_busy_ms = self.frame.max_interval_busy_ms.max(dt);
                if dt > 100.0 {
                    self.frame.slow_busy_frames += 1;
                }
            }
        }
        self.frame.last_start = Some(now);
        while self.frame.recent.len() > 240 {
            self.frame.recent.pop_front();
        }
    }

    fn frame_end(&mut self, build: Duration) {
        let ms = build.as_secs_f32() * 1e3;
        if let Some(l) = self.frame.recent.back_mut() {
            l.1 = ms;
        }
        self.frame.frames += 1;
        if self.busy() {
            self.frame.max_build_busy_ms = self.frame.max_build_busy_ms.max(ms);
        }
    }

    /// The whole UI for one frame (the eframe `App::ui` and the test harness call this).
    pub fn ui(&mut self, ui: &mut egui::Ui) {
        let t = Instant::now();
        let ctx = ui.ctx().clone();
        self.waker.set(&ctx);
        self.frame_begin();
        self.pump(&ctx);
        self.autopilot_step();
        self.refresh_overlay();
        self.shortcuts(&ctx);
        self.top_bar(ui);
        self.status_bar(ui);
        if self.project.is_some() {
            self.left_panel(ui);
            self.right_panel(ui);
            egui::CentralPanel::no_frame().show(ui, |ui| self.canvas(ui));
        } else {
            egui::CentralPanel::default_margins().show(ui, |ui| self.welcome(ui));
        }
        self.windows(&ctx);
        self.toasts_ui(&ctx);
        if self.busy()
            || !self.tasks.is_empty()
            || !self.toasts.is_empty()
            || self.autopilot.is_some()
        {
            ctx.request_repaint_after(Duration::from_millis(50));
        }
        self.frame_end(t.elapsed());
    }

    /// Waits (test helper) until `cond` holds, running frames through `step`.
    pub fn is_idle(&self) -> bool {
        self.embedding.is_empty() && self.base.loading.is_none() && self.adapted.loading.is_none()
    }
}

impl eframe::App for SegApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        SegApp::ui(self, ui);
    }

    fn on_exit(&mut self) {
        self.writer.flush_blocking();
        self.tasks.cancel(JobKind::Train);
    }
}

/// Opens the app window, computing on `device` (chosen by the caller).
pub fn run(device: AppDevice) -> anyhow::Result<()> {
    crate::service::device::leave_a_core_to_the_ui();
    let compute = device.compute;
    tracing::info!("compute device: {}", compute.description);
    let viewport = || {
        egui::ViewportBuilder::default()
            .with_title("segadapt")
            .with_inner_size([1360.0, 860.0])
            .with_min_inner_size([900.0, 600.0])
    };
    let mut native = eframe::NativeOptions {
        viewport: viewport(),
        renderer: eframe::Renderer::Wgpu,
        ..Default::default()
    };
    // A real GPU is shared with the renderer; otherwise eframe renders on whatever wgpu finds.
    let shared = device.shared_wgpu.is_some();
    if let Some(existing) = device.shared_wgpu {
        native.wgpu_options.wgpu_setup = eframe::egui_wgpu::WgpuSetup::Existing(existing);
    }
    let make = |native: eframe::NativeOptions, compute: ComputeDevice| {
        eframe::run_native(
            "segadapt",
            native,
            Box::new(move |cc| {
                let cfg = AppConfig::new(compute);
                let mut app = SegApp::new(cfg, cc.wgpu_render_state.as_ref());
                app.autopilot = std::env::var("SEGADAPT_AUTOPILOT")
                    .ok()
                    .and_then(|s| autopilot::Scene::parse(&s))
                    .map(autopilot::Autopilot::new);
                Ok(Box::new(app))
            }),
        )
    };
    match make(native, compute.clone()) {
        Ok(()) => Ok(()),
        Err(e) if shared => {
            // The shared device could not drive the window: let eframe pick its own.
            tracing::warn!(
                "rendering on the shared wgpu device failed ({e}); retrying with eframe's own device"
            );
            let native = eframe::NativeOptions {
                viewport: viewport(),
                renderer: eframe::Renderer::Wgpu,
                ..Default::default()
            };
            make(native, compute).map_err(|e| anyhow::anyhow!("cannot open the window: {e}"))
        }
        Err(e) => Err(anyhow::anyhow!("cannot open the window: {e}")),
    }
}
