//! The desktop app (eframe/egui on wgpu).
//!
//! The UI thread only draws and edits plain data. Everything else goes through the service
//! layer ([`crate::service`]): the SAM worker (models, embeddings, prompt → mask, the training
//! planner), the task registry (training, export, download, demo, imports, dialogs) and the
//! writer/loader, all answering with typed events.
//! Every edit of the annotations is undoable ([`state`]) and saved at once (atomic writes,
//! mask files before the `project.json` that names them).

pub mod actions;
pub mod autopilot;
pub mod config;
pub mod frame;
pub mod models;
pub mod objects;
pub mod overlay;
pub mod project_ops;
pub mod prompts;
pub mod proposals;
pub mod state;
pub mod tasks;
pub mod toasts;
pub mod train_view;
pub mod ui;
pub mod view;

pub use config::{AppConfig, Settings};
pub use frame::FrameStats;
pub use models::{EmbedState, ModelState, PlanState, SamActivity};
pub use proposals::{Decision, Proposals};
pub use toasts::{Toast, ToastKind};
pub use view::{CanvasView, ImageView, OverlayState, ViewXform};

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use egui::TextureHandle;

use crate::device::ComputeDevice;
use crate::project::project::OpenProject;
use crate::service::device::AppDevice;
use crate::service::export::{ExportOptions, ExportReport};
use crate::service::io::{Loader, Writer};
use crate::service::worker::{ModelSpec, WorkerHandle};
use crate::service::{JobKind, TaskId, Tasks, Waker, find_checkpoints};
use crate::train::TrainConfig;

use state::{Draft, History, Tool};
use train_view::TrainView;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tab {
    Annotate,
    Model,
    Adapt,
    Export,
}

/// The handles on the service layer (see [`crate::service`]).
pub struct Services {
    pub waker: Waker,
    pub worker: WorkerHandle,
    pub writer: Writer,
    pub loader: Loader,
    /// The background jobs (training, export, download, demo, import, dialogs).
    pub tasks: Tasks,
}

pub struct SegApp {
    pub config: AppConfig,
    pub service: Services,
    pub settings: Settings,
    pub project: Option<OpenProject>,
    pub current: Option<ImageView>,
    pub thumbs: HashMap<u64, TextureHandle>,
    // The annotation: the draft object, the selection, the tool and each image's undo history.
    pub histories: HashMap<u64, History>,
    pub draft: Draft,
    /// The draft's mask as the overlay shows it (the chosen candidate with strokes applied).
    pub draft_mask: Option<Arc<Vec<bool>>>,
    /// Numbers prompt changes, so an answer for older prompts is recognised.
    pub seq: u64,
    pub selected: Option<u64>,
    pub tool: Tool,
    pub brush_radius: f32,
    pub renaming: Option<(u64, String)>,
    pub canvas: CanvasView,
    pub overlay: OverlayState,
    // The models: the two slots, which one answers, and the worker's activity.
    pub base: ModelState,
    pub adapted: ModelState,
    pub use_adapter: bool,
    pub ab_view: bool,
    pub sam: SamActivity,
    pub click_latency_ms: Option<f64>,
    /// "Propose all objects": settings, the run in flight, the proposals shown.
    pub proposals: Proposals,
    pub planner: PlanState,
    // Jobs: training, export and the model download.
    pub train: TrainView,
    pub train_cfg: TrainConfig,
    pub export_options: ExportOptions,
    pub export_dir: String,
    pub export_report: Option<ExportReport>,
    /// The export job in flight; its report arrives through `service.tasks`.
    pub export_rx: Option<TaskId>,
    /// "Predict all images": the run in flight and the last run's summary.
    pub predict_rx: Option<TaskId>,
    pub predict_summary: Option<crate::predict::run::RunSummary>,
    /// The running download's latest progress.
    pub download_progress: Option<crate::models::Progress>,
    // Windows and inputs.
    pub tab: Tab,
    pub toasts: Vec<Toast>,
    pub show_help: bool,
    pub show_debug: bool,
    pub frame: FrameStats,
    pub path_input: String,
    pub model_input: String,
    pub autopilot: Option<autopilot::Autopilot>,
}

/// The file name of `p`, for messages.
pub(crate) fn file_name(p: &Path) -> String {
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
        let (settings, settings_problem) = config::load_settings(config.settings_file.as_deref());
        let wgpu_overlay = render_state.map(overlay::init_wgpu).unwrap_or(false);
        let train_cfg = TrainConfig {
            save_final: true,
            ..Default::default()
        };
        let mut app = SegApp {
            service: Services {
                waker,
                worker,
                writer,
                loader,
                tasks,
            },
            settings,
            project: None,
            current: None,
            thumbs: HashMap::new(),
            histories: HashMap::new(),
            draft: Draft::default(),
            draft_mask: None,
            seq: 0,
            selected: None,
            tool: Tool::Prompt,
            brush_radius: 6.0,
            renaming: None,
            canvas: CanvasView::default(),
            overlay: OverlayState::new(wgpu_overlay),
            base: ModelState::default(),
            adapted: ModelState::default(),
            use_adapter: false,
            ab_view: false,
            sam: SamActivity::default(),
            click_latency_ms: None,
            proposals: Proposals::new(config.device.is_gpu),
            planner: PlanState::default(),
            train: TrainView::default(),
            train_cfg,
            export_options: Default::default(),
            export_dir: String::new(),
            export_report: None,
            export_rx: None,
            predict_rx: None,
            predict_summary: None,
            download_progress: None,
            tab: Tab::Annotate,
            toasts: Vec::new(),
            show_help: false,
            show_debug: false,
            frame: FrameStats::default(),
            path_input: String::new(),
            model_input: String::new(),
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
        if let Some(problem) = settings_problem {
            app.error(problem);
        }
        app
    }
}

/// Frame interval while background work runs and nothing else asks for a frame: enough for
/// progress text and [`ui::spinner`]; worker events and input repaint at once. Frames are
/// not free without a GPU (the renderer then takes CPU from the work being waited for).
pub const BUSY_REPAINT: Duration = Duration::from_millis(250);
/// Frame interval while only training runs (its events repaint at every step).
pub const TRAIN_REPAINT: Duration = Duration::from_secs(1);

impl SegApp {
    /// The whole UI for one frame (the eframe `App::ui` and the test harness call this).
    pub fn ui(&mut self, ui: &mut egui::Ui) {
        let t = Instant::now();
        let ctx = ui.ctx().clone();
        self.service.waker.set(&ctx);
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
            egui::CentralPanel::no_frame().show(ui, |ui| self.canvas_panel(ui));
        } else {
            egui::CentralPanel::default_margins().show(ui, |ui| self.welcome(ui));
        }
        self.windows(&ctx);
        self.toasts_ui(&ctx);
        // Training alone: every step's event repaints, so frames in between only tick the
        // clock (a step takes seconds; frames on a software renderer take the trainer's cores).
        let other_tasks = self
            .service
            .tasks
            .iter()
            .any(|t| t.kind != crate::service::tasks::JobKind::Train);
        let other_work = !self.sam.embedding.is_empty()
            || self.base.loading.is_some()
            || other_tasks
            || !self.toasts.is_empty();
        if other_work || (self.autopilot.is_some() && !self.train.running()) {
            ctx.request_repaint_after(BUSY_REPAINT);
        } else if self.train.running() {
            ctx.request_repaint_after(TRAIN_REPAINT);
        } else if self.proposals.running.is_some() {
            // Each batch's event repaints; this only ticks the seconds shown. Frames are not
            // free with a software renderer, and the generator needs the cores.
            ctx.request_repaint_after(Duration::from_millis(500));
        }
        self.frame_end(t.elapsed());
    }

    /// Waits (test helper) until `cond` holds, running frames through `step`.
    pub fn is_idle(&self) -> bool {
        self.sam.embedding.is_empty()
            && self.base.loading.is_none()
            && self.adapted.loading.is_none()
    }
}

impl eframe::App for SegApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        SegApp::ui(self, ui);
    }

    fn on_exit(&mut self) {
        self.service.writer.flush_blocking();
        self.service.tasks.cancel(JobKind::Train);
    }
}

/// Opens the app window, computing on `device` (chosen by the caller).
pub fn run(device: AppDevice) -> anyhow::Result<()> {
    crate::service::device::compute_below_the_ui();
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
                ui::fonts::install(&cc.egui_ctx);
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
