//! Opening, creating and closing projects; the image list, image loads and imports.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::project::project::{ImageEntry, OpenProject};
use crate::service::JobKind;
use crate::service::dialogs::DialogKind;
use crate::service::io::{LoadJob, Loaded, WriteJob};
use crate::service::worker::{ImageKey, Job, ModelSpec};
use crate::train::TrainConfig;

use super::state::Draft;
use super::{ImageView, ModelState, SegApp, ToastKind};

impl SegApp {
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
        if self.service.tasks.running(JobKind::Demo) {
            return;
        }
        let job = crate::service::jobs::open_demo(self.config.demo_dir.clone());
        self.service.tasks.spawn(JobKind::Demo, "demo project", job);
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
            self.service.loader.send(LoadJob::Thumb {
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
        self.service.writer.flush_blocking();
        self.drop_proposals();
        self.project = None;
        self.current = None;
        self.thumbs.clear();
        self.histories.clear();
        self.draft = Draft::default();
        self.selected = None;
        self.overlay.data = None;
        self.sam.embedded.clear();
        self.sam.prefetched.clear();
        if self.use_adapter || self.adapted.summary.is_some() {
            self.service.worker.send(Job::SetAdapter(None));
            self.adapted = ModelState::default();
            self.use_adapter = false;
            self.ab_view = false;
        }
    }

    /// Queues `project.json` for writing (after any mask queued before).
    pub fn save_project(&mut self) {
        if let Some(p) = &self.project {
            match p.project.to_json() {
                Ok(bytes) => self.service.writer.send(WriteJob::Bytes {
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
        self.service.writer.flush_blocking();
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
        self.service.loader.send(LoadJob::Image { id, path, masks });
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
        if self.current.as_ref().is_some_and(|c| c.id != id) {
            self.drop_proposals();
        }
        self.draft = Draft::default();
        self.selected = None;
        self.canvas.box_drag = None;
        self.canvas.stroke = None;
        self.overlay.data = None;
        self.overlay.labels_dirty = true;
        self.overlay.draft_dirty = true;
        self.canvas.fit_pending = true;
        self.sam.embedding.clear();
        // Keep queued work only for this image and the next.
        let mut keep = vec![id];
        keep.extend(self.neighbour(id, 1));
        self.service.worker.send(Job::Retain(keep));
    }

    pub(crate) fn neighbour(&self, id: u64, step: isize) -> Option<u64> {
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

    pub(crate) fn on_loaded(&mut self, ctx: &egui::Context, l: Loaded) {
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
                    self.overlay.labels_dirty = true;
                    self.canvas.fit_pending = true;
                    self.ensure_embedded();
                } else if self.sam.prefetched.contains(&id)
                    && self.model_ready()
                    && !self
                        .settings
                        .tiles
                        .applies(rgb.width() as usize, rgb.height() as usize)
                {
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
                        self.service.worker.send(Job::Embed {
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

    pub(crate) fn on_imported(&mut self, list: Vec<Result<ImageEntry, String>>) {
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
                self.service.loader.send(LoadJob::Thumb {
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
        self.service
            .tasks
            .spawn(JobKind::Import, "adding images", job);
    }

    pub fn open_dialog(&mut self, kind: DialogKind) {
        let start = self.project.as_ref().map(|p| p.root.clone());
        let job = crate::service::dialogs::pick(kind, start, self.config.model_dir.clone());
        self.service
            .tasks
            .spawn(JobKind::Dialog, "file dialog", job);
    }

    pub(crate) fn on_dialog(&mut self, kind: DialogKind, paths: Vec<PathBuf>) {
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
}
