//! Floating windows: keyboard help, the frame-time overlay and toasts.

use std::time::Duration;

use egui::{Color32, RichText, Sense, Vec2, vec2};

use crate::app::actions::HELP;
use crate::app::{SegApp, ToastKind};

impl SegApp {
    pub(crate) fn windows(&mut self, ctx: &egui::Context) {
        if self.show_help {
            let mut open = true;
            egui::Window::new("Keyboard shortcuts")
                .open(&mut open)
                .collapsible(false)
                .resizable(false)
                .anchor(egui::Align2::CENTER_CENTER, Vec2::ZERO)
                .show(ctx, |ui| {
                    egui::Grid::new("keys")
                        .num_columns(2)
                        .striped(true)
                        .show(ui, |ui| {
                            for row in HELP {
                                ui.label(RichText::new(row.keys).monospace().strong());
                                ui.label(row.what);
                                ui.end_row();
                            }
                        });
                });
            self.show_help = open && self.show_help;
        }
        if self.show_debug {
            egui::Area::new(egui::Id::unique("debug-overlay"))
                .anchor(egui::Align2::RIGHT_TOP, vec2(-340.0, 40.0))
                .show(ctx, |ui| {
                    egui::Frame::popup(ui.style()).show(ui, |ui| {
                        let (mean, max) = self.frame_numbers();
                        let iv: Vec<f32> = self.frame.recent.iter().map(|r| r.0).collect();
                        let max_iv = iv.iter().copied().fold(0.0, f32::max);
                        ui.label(
                            RichText::new(format!("UI build: mean {mean:.2} ms, max {max:.1} ms"))
                                .monospace(),
                        );
                        ui.label(
                            RichText::new(format!(
                                "frame interval: max {max_iv:.0} ms (last {})",
                                iv.len()
                            ))
                            .monospace(),
                        );
                        ui.label(
                            RichText::new(format!(
                                "while busy: build max {:.1} ms, interval max {:.0} ms, > 100 ms: {}",
                                self.frame.max_build_busy_ms,
                                self.frame.max_interval_busy_ms,
                                self.frame.slow_busy_frames
                            ))
                            .monospace(),
                        );
                        ui.label(
                            RichText::new(format!(
                                "frames {} · overlay {}",
                                self.frame.frames,
                                if self.overlay.wgpu { "wgpu" } else { "cpu" }
                            ))
                            .monospace(),
                        );
                        let (r, _) = ui.allocate_exact_size(vec2(300.0, 50.0), Sense::hover());
                        let p = ui.painter_at(r);
                        p.rect_filled(r, 2.0, Color32::from_black_alpha(120));
                        let y100 = r.bottom() - 50.0 * 0.5;
                        p.line_segment(
                            [egui::pos2(r.left(), y100), egui::pos2(r.right(), y100)],
                            egui::Stroke::new(1.0, Color32::DARK_RED),
                        );
                        for (i, (dt, b)) in self.frame.recent.iter().enumerate() {
                            let x = r.left() + i as f32 * r.width() / 240.0;
                            let h = (dt * 0.25).min(50.0);
                            p.line_segment(
                                [egui::pos2(x, r.bottom()), egui::pos2(x, r.bottom() - h)],
                                egui::Stroke::new(1.0, Color32::from_rgb(90, 160, 240)),
                            );
                            let hb = (b * 0.25 * 4.0).min(50.0);
                            p.line_segment(
                                [egui::pos2(x, r.bottom()), egui::pos2(x, r.bottom() - hb)],
                                egui::Stroke::new(1.0, Color32::from_rgb(240, 160, 60)),
                            );
                        }
                        ui.label(
                            RichText::new("blue: interval (red line 100 ms) · orange: build ×4")
                                .weak()
                                .small(),
                        );
                    });
                });
        }
    }

    pub(crate) fn toasts_ui(&mut self, ctx: &egui::Context) {
        self.toasts.retain(|t| {
            t.at.elapsed() < Duration::from_secs(if t.kind == ToastKind::Error { 10 } else { 4 })
        });
        if self.toasts.is_empty() {
            return;
        }
        let mut dismiss = None;
        egui::Area::new(egui::Id::unique("toasts"))
            .anchor(egui::Align2::RIGHT_BOTTOM, vec2(-12.0, -36.0))
            .order(egui::Order::Foreground)
            .show(ctx, |ui| {
                for (i, t) in self.toasts.iter().enumerate() {
                    let (bg, fg) = match t.kind {
                        ToastKind::Info => (Color32::from_rgb(40, 60, 80), Color32::WHITE),
                        ToastKind::Error => (Color32::from_rgb(110, 30, 30), Color32::WHITE),
                    };
                    egui::Frame::new()
                        .fill(bg)
                        .corner_radius(6.0)
                        .inner_margin(8.0)
                        .show(ui, |ui| {
                            ui.set_max_width(420.0);
                            ui.horizontal(|ui| {
                                ui.label(RichText::new(&t.text).color(fg));
                                if ui.small_button("x").clicked() {
                                    dismiss = Some(i);
                                }
                            });
                        });
                    ui.add_space(4.0);
                }
            });
        if let Some(i) = dismiss {
            self.toasts.remove(i);
        }
    }
}
