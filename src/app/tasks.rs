//! The app's side of the background jobs: starting training, export and the model
//! download, and applying what the task registry reports.

use std::path::{Path, PathBuf};

use crate::project::project::{AdapterEntry, now_secs};
use crate::service::worker::ModelSpec;
use crate::service::{JobEvent, JobKind, JobOutput, TaskReport};

use super::{SegApp, Tab, ToastKind, file_name};

impl SegApp {
    pub(crate) fn pump(&mut self, ctx: &egui::Context) {
        while let Ok(e) = self.service.worker.rx.try_recv() {
            self.on_worker(e);
        }
        while let Ok(l) = self.service.loader.rx.try_recv() {
            self.on_loaded(ctx, l);
        }
        while let Ok(e) = self.service.writer.errors.try_recv() {
            self.error(format!("Could not save {}: {}", e.path.display(), e.error));
        }
        for r in self.service.tasks.poll() {
            self.on_task(r);
        }
    }

    pub(crate) fn on_task(&mut self, r: TaskReport) {
        match r {
            TaskReport::Event { kind, event, .. } => match event {
                JobEvent::Status(s) if kind == JobKind::Train => self.train.status = s,
                // Other jobs' status lines stay in the registry (the status bar shows them).
                JobEvent::Status(_) => {}
                JobEvent::Train(e) => self.train.apply(e),
                JobEvent::Download(p) => self.download_progress = Some(p),
            },
            TaskReport::Finished { kind, result, .. } => self.on_finished(kind, result),
        }
    }

    pub(crate) fn on_finished(&mut self, kind: JobKind, result: Result<JobOutput, String>) {
        match kind {
            JobKind::Train => self.train.task = None,
            JobKind::Export => self.export_rx = None,
            JobKind::Predict => self.predict_rx = None,
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
                    JobKind::Predict => "Prediction failed",
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
            JobOutput::Predicted(summary) => {
                let kind = if summary.failed.is_empty() {
                    ToastKind::Info
                } else {
                    ToastKind::Error
                };
                let what = if summary.cancelled { "Stopped: " } else { "" };
                self.toast(kind, format!("{what}{}", summary.line()));
                self.predict_summary = Some(summary);
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

    /// Downloads the default checkpoint (MobileSAM) into the model folder, then loads it.
    pub fn download_default_model(&mut self) {
        if self.service.tasks.running(JobKind::Download) {
            return;
        }
        self.download_progress = None;
        let job = crate::service::jobs::download_default_model(self.config.model_dir.clone());
        self.service
            .tasks
            .spawn(JobKind::Download, "model download", job);
    }

    pub fn cancel_download(&mut self) {
        self.service.tasks.cancel(JobKind::Download);
    }

    pub(crate) fn on_trained(&mut self, o: crate::train::TrainOutcome) {
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
                name: file_name(&out).trim_end_matches(".safetensors").to_string(),
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
                    file_name(&out).trim_end_matches(".safetensors")
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
            flushed: Some(self.service.writer.flush()),
            tiles: self.settings.tiles,
        };
        let job = crate::service::train::job(req);
        self.train.task = Some(self.service.tasks.spawn(JobKind::Train, "training", job));
        self.tab = Tab::Adapt;
    }

    pub fn cancel_training(&mut self) {
        if self.train.running() {
            self.service.tasks.cancel(JobKind::Train);
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

    pub fn start_export(&mut self) {
        let Some(p) = &self.project else {
            self.error("Open a project first");
            return;
        };
        let out = self.export_folder(p);
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
            flushed: Some(self.service.writer.flush()),
        };
        self.export_report = None;
        let job = crate::service::export::job(req);
        self.export_rx = Some(self.service.tasks.spawn(JobKind::Export, "export", job));
    }

    /// Segment everything on every image of the project with the model that answers clicks
    /// (base or adapted), writing what `segadapt predict` writes into `<export folder>/predict`.
    /// Resumable like the CLI: images done with the same settings are skipped.
    pub fn start_predict_all(&mut self) {
        let Some(p) = &self.project else {
            self.error("Open a project first");
            return;
        };
        let Some((model, config)) = self
            .base
            .spec
            .as_ref()
            .map(|s| (s.path.clone(), s.config.clone()))
        else {
            self.error("Load a model first");
            return;
        };
        let export = self.export_folder(p);
        let adapter = if self.use_adapter {
            self.adapted.summary.as_ref().map(|s| s.path.clone())
        } else {
            None
        };
        let req = crate::predict::run::RunRequest {
            input: p.root.clone(),
            model,
            config,
            adapter,
            prompts: None,
            params: self.proposals.params.clone(),
            multimask: false,
            outputs: crate::predict::outputs::OutputSpec {
                dir: export.join("predict"),
                labels_png: true,
                labels_tiff: false,
                objects: self.export_options.masks,
                coco_segmentation: self.export_options.coco_segmentation(),
            },
            overwrite: false,
            tiles: self.settings.tiles,
            device: self.config.device.clone(),
        };
        self.predict_summary = None;
        let job = crate::service::predict_all::job(req);
        self.predict_rx = Some(
            self.service
                .tasks
                .spawn(JobKind::Predict, "predict all", job),
        );
    }

    /// The folder the Export tab writes into: the one typed there, else the project's own.
    fn export_folder(&self, p: &crate::project::project::OpenProject) -> PathBuf {
        if self.export_dir.trim().is_empty() {
            p.root.join(crate::project::project::EXPORT_DIR)
        } else {
            PathBuf::from(self.export_dir.trim())
        }
    }
}
