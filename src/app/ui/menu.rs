//! The menu bar and the model selector beside it.

use std::path::PathBuf;

use egui::RichText;

use crate::app::actions::Action;
use crate::app::{SegApp, Tab};
use crate::service::dialogs::DialogKind;

impl SegApp {
    pub(crate) fn top_bar(&mut self, ui: &mut egui::Ui) {
        egui::Panel::top("menu").show(ui, |ui| {
            egui::MenuBar::new().ui(ui, |ui| {
                ui.menu_button("Project", |ui| {
                    if ui.button("Open demo project (nuclei)").clicked() {
                        self.open_demo();
                    }
                    if ui.button("New project…").clicked() {
                        self.open_dialog(DialogKind::NewProject);
                    }
                    if ui.button("Open project…").clicked() {
                        self.open_dialog(DialogKind::OpenProject);
                    }
                    let recent = self.settings.recent.clone();
                    ui.menu_button("Recent", |ui| {
                        if recent.is_empty() {
                            ui.label("(none)");
                        }
                        for r in recent {
                            if ui.button(r.display().to_string()).clicked() {
                                self.open_project_at(&r);
                            }
                        }
                    });
                    ui.separator();
                    let has = self.project.is_some();
                    if ui
                        .add_enabled(has, egui::Button::new("Add images…"))
                        .clicked()
                    {
                        self.open_dialog(DialogKind::AddImages);
                    }
                    if ui
                        .add_enabled(has, egui::Button::new("Add folder…"))
                        .clicked()
                    {
                        self.open_dialog(DialogKind::AddFolder);
                    }
                    if ui.add_enabled(has, egui::Button::new("Export…")).clicked() {
                        self.tab = Tab::Export;
                    }
                    ui.separator();
                    if ui
                        .add_enabled(has, egui::Button::new("Close project"))
                        .clicked()
                    {
                        self.close_project();
                    }
                });
                ui.menu_button("Edit", |ui| {
                    for a in [Action::Undo, Action::Redo] {
                        self.action_button(ui, a);
                    }
                    ui.separator();
                    for a in [Action::Accept, Action::ClearPrompts, Action::DeleteSelected] {
                        self.action_button(ui, a);
                    }
                    ui.separator();
                    for a in [
                        Action::ProposeAll,
                        Action::AcceptAllProposals,
                        Action::RejectAllProposals,
                    ] {
                        self.action_button(ui, a);
                    }
                });
                ui.menu_button("View", |ui| {
                    self.action_button(ui, Action::Fit);
                    for a in [
                        Action::ToggleObjects,
                        Action::ToggleAb,
                        Action::ToggleDebug,
                        Action::ToggleHelp,
                    ] {
                        self.action_checkbox(ui, a);
                    }
                });
                ui.separator();
                self.model_selector(ui);
                ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                    if ui
                        .button("?")
                        .on_hover_text(Action::ToggleHelp.label_with_key())
                        .clicked()
                    {
                        self.perform(Action::ToggleHelp);
                    }
                    if let Some(p) = &self.project {
                        ui.label(
                            RichText::new(format!("{} — {}", p.project.name, p.root.display()))
                                .weak(),
                        );
                    }
                });
            });
        });
    }

    pub(crate) fn model_selector(&mut self, ui: &mut egui::Ui) {
        let Some(p) = &self.project else {
            return;
        };
        let adapters: Vec<(String, PathBuf)> = p
            .project
            .adapters
            .iter()
            .map(|a| (a.name.clone(), a.path.clone()))
            .collect();
        let active = p.project.active_adapter.clone();
        let current = match &active {
            None => "base model".to_string(),
            Some(a) => adapters
                .iter()
                .find(|(_, p)| p.to_string_lossy() == *a)
                .map(|(n, _)| n.clone())
                .unwrap_or_else(|| a.clone()),
        };
        ui.label("Model:");
        let mut choice: Option<Option<PathBuf>> = None;
        egui::ComboBox::from_id_salt("model-select")
            .selected_text(current)
            .width(220.0)
            .show_ui(ui, |ui| {
                if ui
                    .selectable_label(active.is_none(), "base model")
                    .clicked()
                {
                    choice = Some(None);
                }
                for (n, path) in &adapters {
                    let sel = active.as_deref() == Some(&*path.to_string_lossy());
                    if ui.selectable_label(sel, n).clicked() {
                        choice = Some(Some(path.clone()));
                    }
                }
            });
        if let Some(c) = choice {
            self.select_adapter(c);
        }
        if self.adapted.loading.is_some() {
            crate::app::ui::spinner(ui);
        }
        let mut ab = self.ab_view;
        if ui
            .add_enabled(
                self.adapted.summary.is_some(),
                egui::Checkbox::new(&mut ab, "A/B"),
            )
            .on_hover_text("Compare base and adapted model on the same prompts (C)")
            .changed()
        {
            self.toggle_ab();
        }
    }
}
