//! The status bar: device, model, background work, timings.

use egui::{Color32, RichText};

use crate::app::SegApp;
use crate::service::JobKind;

impl SegApp {
    pub(crate) fn status_bar(&mut self, ui: &mut egui::Ui) {
        egui::Panel::bottom("status").show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.label(RichText::new(&self.config.device.description).weak());
                ui.separator();
                match (&self.base.summary, &self.base.loading) {
                    (_, Some(m)) => {
                        crate::app::ui::spinner(ui);
                        ui.label(format!("loading {m}"));
                    }
                    (Some(s), None) => {
                        ui.label(format!("{} ({})", s.name, s.model_type));
                    }
                    (None, None) => {
                        ui.colored_label(Color32::YELLOW, "no model");
                    }
                }
                if let Some(t) = self.sam.warming_since {
                    ui.separator();
                    crate::app::ui::spinner(ui);
                    ui.label(format!(
                        "compiling GPU kernels {:.0} s (first use after start)",
                        t.elapsed().as_secs_f64()
                    ))
                    .on_hover_text(
                        "wgpu compiles each kernel the first time it runs; this happens once per start, \
                         in the background, so the first embedding and the first click are fast",
                    );
                }
                if let Some(e) = self.sam.embedding.values().next() {
                    ui.separator();
                    crate::app::ui::spinner(ui);
                    ui.label(format!(
                        "embedding {:.1} s",
                        e.started.elapsed().as_secs_f64()
                    ));
                }
                if let Some(ms) = self.sam.last_embed_ms {
                    ui.separator();
                    ui.label(format!("embed {:.2} s", ms / 1e3));
                }
                if let Some(ms) = self.sam.last_decode_ms {
                    ui.label(format!("decode {ms:.0} ms"));
                }
                if let Some(ms) = self.click_latency_ms {
                    ui.label(format!("click-to-mask {ms:.0} ms"));
                }
                if self.train.running() {
                    ui.separator();
                    ui.add(
                        egui::ProgressBar::new(self.train.progress())
                            .desired_width(120.0)
                            .text(format!(
                                "training {}/{}",
                                self.train.step, self.train.total_steps
                            )),
                    );
                }
                // The other jobs (training shows its steps above; dialogs are windows).
                for t in self
                    .service
                    .tasks
                    .iter()
                    .filter(|t| !matches!(t.kind, JobKind::Train | JobKind::Dialog))
                {
                    ui.separator();
                    match t.progress {
                        Some(f) => {
                            ui.add(
                                egui::ProgressBar::new(f)
                                    .desired_width(100.0)
                                    .text(t.label.as_str()),
                            );
                        }
                        None => {
                            crate::app::ui::spinner(ui);
                            ui.label(&t.label);
                        }
                    }
                }
                ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                    let (mean, max) = self.frame_numbers();
                    ui.label(
                        RichText::new(format!("frame {mean:.1} ms (max {max:.0})"))
                            .weak()
                            .monospace(),
                    );
                    if let Some(hp) = self.canvas.hover_image {
                        ui.label(
                            RichText::new(format!("x {:.0} y {:.0}", hp[0], hp[1]))
                                .weak()
                                .monospace(),
                        );
                    }
                });
            });
        });
    }
}
