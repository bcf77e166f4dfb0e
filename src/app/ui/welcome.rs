//! The screen shown while no project is open.

use std::path::PathBuf;

use egui::{Color32, RichText, vec2};

use crate::app::SegApp;
use crate::service::JobKind;
use crate::service::dialogs::DialogKind;

impl SegApp {
    pub(crate) fn welcome(&mut self, ui: &mut egui::Ui) {
        ui.vertical_centered(|ui| {
            ui.add_space(40.0);
            ui.heading(RichText::new("segadapt").size(30.0));
            ui.label("Adapt Segment Anything to your images with NAS-LoRA, on your own machine.");
            ui.add_space(24.0);
            if ui
                .add_enabled(
                    !self.service.tasks.running(JobKind::Demo),
                    egui::Button::new(RichText::new("Open the demo project (nuclei)").size(17.0))
                        .min_size(vec2(320.0, 40.0)),
                )
                .clicked()
            {
                self.open_demo();
            }
            if self.service.tasks.running(JobKind::Demo) {
                ui.horizontal(|ui| {
                    ui.add_space((ui.available_width() - 220.0).max(0.0) / 2.0);
                    crate::app::ui::spinner(ui);
                    ui.label("preparing the demo project...");
                });
            }
            ui.add_space(8.0);
            ui.horizontal(|ui| {
                ui.add_space((ui.available_width() - 330.0).max(0.0) / 2.0);
                if ui
                    .add(egui::Button::new("New project…").min_size(vec2(160.0, 30.0)))
                    .clicked()
                {
                    self.open_dialog(DialogKind::NewProject);
                }
                if ui
                    .add(egui::Button::new("Open project…").min_size(vec2(160.0, 30.0)))
                    .clicked()
                {
                    self.open_dialog(DialogKind::OpenProject);
                }
            });
            ui.add_space(8.0);
            ui.horizontal(|ui| {
                ui.add_space((ui.available_width() - 480.0).max(0.0) / 2.0);
                ui.add(
                    egui::TextEdit::singleline(&mut self.path_input)
                        .hint_text("or type a project folder")
                        .desired_width(300.0),
                );
                let p = PathBuf::from(self.path_input.trim());
                let has = !self.path_input.trim().is_empty();
                if ui.add_enabled(has, egui::Button::new("Open")).clicked() {
                    self.open_project_at(&p);
                }
                if ui.add_enabled(has, egui::Button::new("Create")).clicked() {
                    self.create_project_at(&p);
                }
            });
            if !self.settings.recent.is_empty() {
                ui.add_space(20.0);
                ui.label(RichText::new("Recent projects").strong());
                for r in self.settings.recent.clone() {
                    if ui.link(r.display().to_string()).clicked() {
                        self.open_project_at(&r);
                    }
                }
            }
            ui.add_space(24.0);
            ui.separator();
            ui.label(RichText::new("Model").strong());
            match (&self.base.summary, &self.base.loading, &self.base.error) {
                (Some(s), _, _) => {
                    ui.label(format!("{} loaded on {}", s.name, s.device));
                }
                (None, Some(m), _) => {
                    ui.horizontal(|ui| {
                        ui.add_space((ui.available_width() - 200.0).max(0.0) / 2.0);
                        crate::app::ui::spinner(ui);
                        ui.label(format!("loading {m}…"));
                    });
                }
                (None, None, err) => {
                    if let Some(e) = err {
                        ui.colored_label(Color32::LIGHT_RED, e);
                    }
                    ui.label(format!(
                        "No SAM checkpoint found in {}.",
                        self.config.model_dir.display()
                    ));
                    self.download_ui(ui);
                    ui.label(RichText::new("or choose a checkpoint:").weak());
                    if ui.button("Choose a checkpoint…").clicked() {
                        self.open_dialog(DialogKind::PickModel);
                    }
                    ui.horizontal(|ui| {
                        ui.add_space((ui.available_width() - 360.0).max(0.0) / 2.0);
                        ui.add(
                            egui::TextEdit::singleline(&mut self.model_input)
                                .hint_text("checkpoint path")
                                .desired_width(280.0),
                        );
                        if ui.button("Load").clicked() {
                            self.load_typed_model();
                        }
                    });
                }
            }
        });
    }
}
