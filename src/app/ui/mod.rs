//! The panels and windows, one file per tab or window; all of them only draw state and call
//! the app's actions.

pub mod adapt;
pub mod alpha;
pub mod annotate;
pub mod canvas;
pub mod export;
pub mod images;
pub mod menu;
pub mod model;
pub mod proposals;
pub mod status;
pub mod train_progress;
pub mod welcome;
pub mod windows;

use crate::app::{SegApp, Tab};

pub(crate) fn short_hash(s: &str) -> &str {
    &s[..12.min(s.len())]
}

pub fn fmt_duration(s: f64) -> String {
    if !s.is_finite() || s < 0.0 {
        return "–".into();
    }
    let s = s.round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

impl SegApp {
    pub(crate) fn right_panel(&mut self, ui: &mut egui::Ui) {
        let width = if self.tab == Tab::Adapt { 430.0 } else { 330.0 };
        egui::Panel::right("tools")
            .default_size(width)
            .resizable(true)
            .show(ui, |ui| {
                ui.horizontal(|ui| {
                    for (t, name) in [
                        (Tab::Annotate, "Annotate"),
                        (Tab::Model, "Model"),
                        (Tab::Adapt, "Adapt"),
                        (Tab::Export, "Export"),
                    ] {
                        ui.selectable_value(&mut self.tab, t, name);
                    }
                });
                ui.separator();
                egui::ScrollArea::vertical()
                    .id_salt("tab-scroll")
                    .show(ui, |ui| match self.tab {
                        Tab::Annotate => self.annotate_tab(ui),
                        Tab::Model => self.model_tab(ui),
                        Tab::Adapt => self.adapt_tab(ui),
                        Tab::Export => self.export_tab(ui),
                    });
            });
    }
}
