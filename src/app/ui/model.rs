//! The Model tab: the base checkpoint, its download, the project's adapters, and how large
//! images are tiled.

use egui::{Color32, RichText};

use crate::app::SegApp;
use crate::predict::tiling::{MIN_TILE, TileConfig, tile_grid};
use crate::project::project::AdapterEntry;

use super::short_hash;
use crate::service::dialogs::DialogKind;
use crate::service::worker::ModelSpec;
use crate::service::{JobKind, find_checkpoints};

impl SegApp {
    pub(crate) fn model_tab(&mut self, ui: &mut egui::Ui) {
        ui.label(RichText::new("Base model").strong());
        match (&self.base.summary, &self.base.loading, &self.base.error) {
            (_, Some(m), _) => {
                ui.horizontal(|ui| {
                    crate::app::ui::spinner(ui);
                    ui.label(format!("loading {m}…"));
                });
            }
            (Some(s), None, _) => {
                egui::Grid::new("model-info").num_columns(2).show(ui, |ui| {
                    ui.label("file");
                    ui.label(&s.name)
                        .on_hover_text(s.path.display().to_string());
                    ui.end_row();
                    ui.label("type");
                    ui.label(&s.model_type);
                    ui.end_row();
                    ui.label("sha256");
                    ui.label(RichText::new(format!("{}…", short_hash(&s.sha256))).monospace());
                    ui.end_row();
                    ui.label("device");
                    ui.label(&s.device);
                    ui.end_row();
                    ui.label("loaded in");
                    ui.label(format!("{:.1} s", s.load_ms / 1e3));
                    ui.end_row();
                });
            }
            (None, None, e) => {
                if let Some(e) = e {
                    ui.colored_label(Color32::LIGHT_RED, e);
                }
                ui.label(format!(
                    "No SAM checkpoint loaded. segadapt looks in {}.",
                    self.config.model_dir.display()
                ));
                ui.label(
                    RichText::new(
                        "Download MobileSAM (hash-checked), or choose an official sam_vit_*.pth.",
                    )
                    .weak(),
                );
                self.download_ui(ui);
            }
        }
        let found = find_checkpoints(&self.config.model_dir);
        if !found.is_empty() {
            ui.label(format!("In {}:", self.config.model_dir.display()));
            for f in found {
                ui.horizontal(|ui| {
                    ui.label(
                        f.file_name()
                            .map(|n| n.to_string_lossy().to_string())
                            .unwrap_or_default(),
                    );
                    if ui.small_button("Load").clicked() {
                        self.load_model(ModelSpec {
                            path: f.clone(),
                            config: None,
                        });
                    }
                });
            }
        }
        ui.horizontal(|ui| {
            if ui.button("Choose file…").clicked() {
                self.open_dialog(DialogKind::PickModel);
            }
        });
        ui.horizontal(|ui| {
            ui.add(
                egui::TextEdit::singleline(&mut self.model_input)
                    .hint_text("or type a checkpoint path")
                    .desired_width(200.0),
            );
            if ui.button("Load").clicked() && !self.model_input.trim().is_empty() {
                self.load_typed_model();
            }
        });
        ui.separator();
        ui.label(RichText::new("Adapters of this project").strong());
        let adapters: Vec<AdapterEntry> = self
            .project
            .as_ref()
            .map(|p| p.project.adapters.clone())
            .unwrap_or_default();
        let active = self
            .project
            .as_ref()
            .and_then(|p| p.project.active_adapter.clone());
        if ui.radio(active.is_none(), "base model only").clicked() {
            self.select_adapter(None);
        }
        for a in adapters {
            let sel = active.as_deref() == Some(&*a.path.to_string_lossy());
            let mut text = format!("{} ({})", a.name, a.method);
            if let (Some(b), Some(x)) = (a.base_dice, a.best_dice) {
                text.push_str(&format!(" Dice {b:.3} -> {x:.3}"));
            }
            let r = ui.radio(sel, text);
            let r = if a.improved {
                r
            } else {
                r.on_hover_text("not validated as better than the base model")
            };
            if r.clicked() && !sel {
                self.select_adapter(Some(a.path));
            }
        }
        if let Some(e) = &self.adapted.error {
            ui.colored_label(Color32::LIGHT_RED, e);
        }
        if let Some(s) = &self.adapted.summary
            && let Some(card) = &s.card
        {
            ui.collapsing("Model card", |ui| {
                ui.label(format!(
                    "method {} · rank {} · placement {:?}",
                    card.adapter.method.name(),
                    card.adapter.rank,
                    card.adapter.placement
                ));
                ui.label(format!(
                    "trainable {} / {} params",
                    card.params.adapter, card.params.total
                ));
                let chosen: Vec<String> = card
                    .cells
                    .iter()
                    .filter_map(|c| c.chosen.as_ref().map(|o| format!("{}: {o}", c.name)))
                    .collect();
                if !chosen.is_empty() {
                    ui.label(format!("chosen ops: {}", chosen.join(", ")));
                }
            });
        }
        let mut ab = self.ab_view;
        if ui
            .add_enabled(
                self.adapted.summary.is_some(),
                egui::Checkbox::new(&mut ab, "A/B view: base and adapted side by side (C)"),
            )
            .changed()
        {
            self.toggle_ab();
        }
        ui.separator();
        self.tiles_section(ui);
    }

    /// Large images by tiles: the settings clicks, Propose and Predict all images use, saved
    /// in the app's settings file.
    fn tiles_section(&mut self, ui: &mut egui::Ui) {
        ui.label(RichText::new("Large images (tiles)").strong());
        ui.label(
            RichText::new(
                "Images whose longer side exceeds the threshold are embedded tile by tile \
                 (core + halo), so small objects keep their pixels.",
            )
            .weak(),
        );
        let mut t = self.settings.tiles;
        egui::Grid::new("tiles").num_columns(2).show(ui, |ui| {
            ui.label("tile above (px, 0 = never)");
            ui.add(
                egui::DragValue::new(&mut t.tile_above)
                    .range(0..=65536)
                    .speed(16),
            );
            ui.end_row();
            ui.label("tile core (px)");
            ui.add(
                egui::DragValue::new(&mut t.tile)
                    .range(MIN_TILE..=16384)
                    .speed(16),
            );
            ui.end_row();
            ui.label("halo (px)");
            ui.add(egui::DragValue::new(&mut t.halo).range(0..=4096).speed(8));
            ui.end_row();
        });
        if let Some(cur) = &self.current {
            let (w, h) = (cur.width, cur.height);
            let text = if t.applies(w, h) {
                let n = tile_grid(w, h, t.tile, t.halo).len();
                format!("this image ({w}×{h}): {n} tiles")
            } else {
                format!("this image ({w}×{h}): not tiled")
            };
            ui.label(text);
        }
        if ui.button("Default tiles").clicked() {
            t = TileConfig::default();
        }
        if t != self.settings.tiles {
            self.settings.tiles = t;
            self.save_settings();
        }
    }

    /// Download button for the default checkpoint, or the running download's progress.
    pub(crate) fn download_ui(&mut self, ui: &mut egui::Ui) {
        let spec = crate::models::default_model();
        match self
            .service
            .tasks
            .running(JobKind::Download)
            .then_some(self.download_progress)
        {
            Some(p) => {
                let (done, total) = p
                    .map(|p| (p.done, p.total.unwrap_or(spec.size)))
                    .unwrap_or((0, spec.size));
                let phase = p
                    .map(|p| format!("{:?}", p.phase))
                    .unwrap_or_else(|| "Connecting".into());
                ui.add(
                    egui::ProgressBar::new(done as f32 / total.max(1) as f32)
                        .desired_width(320.0)
                        .text(format!(
                            "{phase}: {:.1} / {:.1} MB",
                            done as f64 / 1e6,
                            total as f64 / 1e6
                        )),
                );
                if ui.button("Cancel download").clicked() {
                    self.cancel_download();
                }
            }
            None => {
                if ui
                    .button(format!(
                        "Download {} ({:.1} MB, sha256-checked)",
                        spec.name,
                        spec.size as f64 / 1e6
                    ))
                    .on_hover_text(spec.url)
                    .clicked()
                {
                    self.download_default_model();
                }
            }
        }
    }
}
