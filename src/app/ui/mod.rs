//! The panels and windows, one file per tab or window; all of them only draw state and call
//! the app's actions.

pub mod adapt;
pub mod alpha;
pub mod annotate;
pub mod canvas;
pub mod export;
pub mod fonts;
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

/// A busy indicator that, unlike `egui::Spinner`, does not ask for the next frame at once. egui's
/// spinner repaints at the display rate while it is visible; with a software renderer (no GPU)
/// that is a core's worth of rendering taken from the embedding or training it waits for. This
/// one moves at the app's own busy repaint rate ([`crate::app::BUSY_REPAINT`]).
pub(crate) fn spinner(ui: &mut egui::Ui) -> egui::Response {
    use egui::{Pos2, Sense, Shape, Stroke, vec2};
    let size = ui.style().spacing.interact_size.y;
    let (rect, response) = ui.allocate_exact_size(vec2(size, size), Sense::hover());
    if ui.is_rect_visible(rect) {
        let color = ui.visuals().strong_text_color();
        let radius = rect.height().min(rect.width()) * 0.5 - 2.0;
        let n = (radius.round() as u32).clamp(8, 128);
        let time = ui.input(|i| i.time);
        let start = time * std::f64::consts::TAU;
        let end = start + 240f64.to_radians() * time.sin();
        let points: Vec<Pos2> = (0..n)
            .map(|i| {
                let a = start + (end - start) * i as f64 / n as f64;
                rect.center() + radius * vec2(a.cos() as f32, a.sin() as f32)
            })
            .collect();
        ui.painter()
            .add(Shape::line(points, Stroke::new(3.0, color)));
    }
    response
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
