//! The Adapt tab: training settings, the planner's estimate, start / cancel / resume.

use egui::{Color32, RichText};

use crate::adapt::config::Method;
use crate::app::SegApp;

use super::fmt_duration;

impl SegApp {
    pub(crate) fn adapt_tab(&mut self, ui: &mut egui::Ui) {
        let running = self.train.running();
        let n_obj = self
            .project
            .as_ref()
            .map(|p| p.project.n_objects())
            .unwrap_or(0);
        ui.label(RichText::new("Adapt SAM to this project").strong());
        ui.label(RichText::new(format!("Trains on the project's {n_obj} accepted objects; part of them is held out to validate.")).weak());
        if running {
            if let Some((c, out)) = &self.train.last {
                let m = &c.prompt_mix;
                ui.label(
                    RichText::new(format!(
                        "{} · rank {} · {} steps · lr {:.1e} · prompts box {:.1} / points {:.1} / box+points {:.1} / none {:.1}",
                        c.adapter.method.name(),
                        c.adapter.rank,
                        c.schedule.steps,
                        c.schedule.lr,
                        m.r#box,
                        m.points,
                        m.box_points,
                        m.none
                    ))
                    .small(),
                )
                .on_hover_text(out.display().to_string());
            }
        } else {
            ui.vertical(|ui| {
                egui::Grid::new("train-settings")
                    .num_columns(2)
                    .show(ui, |ui| {
                        let cfg = &mut self.train_cfg;
                        ui.label("method");
                        egui::ComboBox::from_id_salt("method")
                            .selected_text(cfg.adapter.method.name())
                            .show_ui(ui, |ui| {
                                for m in [
                                    Method::NasLora,
                                    Method::NasPcLora,
                                    Method::Lora,
                                    Method::ConvLora,
                                    Method::DecoderOnly,
                                ] {
                                    ui.selectable_value(&mut cfg.adapter.method, m, m.name());
                                }
                            });
                        ui.end_row();
                        ui.label("rank");
                        ui.add(egui::Slider::new(&mut cfg.adapter.rank, 1..=32));
                        ui.end_row();
                        ui.label("steps");
                        ui.add(
                            egui::Slider::new(&mut cfg.schedule.steps, 4..=3000).logarithmic(true),
                        );
                        ui.end_row();
                        ui.label("learning rate");
                        ui.add(
                            egui::DragValue::new(&mut cfg.schedule.lr)
                                .speed(1e-6)
                                .range(1e-6..=1e-2)
                                .custom_formatter(|v, _| format!("{v:.1e}")),
                        );
                        ui.end_row();
                        ui.label("validation share");
                        ui.add(egui::Slider::new(&mut cfg.val_split, 0.05..=0.5));
                        ui.end_row();
                        ui.label("objects / step");
                        ui.add(egui::Slider::new(&mut cfg.objects_per_step, 1..=16));
                        ui.end_row();
                    });
                ui.collapsing("Prompt mix (how training prompts are sampled)", |ui| {
                    let m = &mut self.train_cfg.prompt_mix;
                    ui.add(egui::Slider::new(&mut m.r#box, 0.0..=1.0).text("box"));
                    ui.add(egui::Slider::new(&mut m.points, 0.0..=1.0).text("points"));
                    ui.add(egui::Slider::new(&mut m.box_points, 0.0..=1.0).text("box + points"));
                    ui.add(egui::Slider::new(&mut m.none, 0.0..=1.0).text("no prompt"));
                });
                ui.checkbox(
                    &mut self.train_cfg.save_final,
                    "also keep the last step's adapter",
                );
            });
        }
        if !running {
            self.request_plan();
            let steps = self.train_cfg.schedule.steps;
            match &self.planner.estimate {
                Some(p) => {
                    ui.label(
                        RichText::new(format!(
                            "Planner: ~{:.1} s/step, ~{} for {steps} steps; ~{:.0} MiB of activations; this device {:.1} GFLOP/s",
                            p.step_seconds,
                            fmt_duration(p.step_seconds * steps as f64),
                            p.activation_mib,
                            p.measured_gflops
                        ))
                        .weak()
                        .small(),
                    );
                    for s in &p.suggestions {
                        ui.colored_label(Color32::from_rgb(240, 200, 90), RichText::new(s).small());
                    }
                }
                None => {
                    ui.label(
                        RichText::new("Time and memory estimate once a model is loaded.")
                            .weak()
                            .small(),
                    );
                }
            }
        }
        ui.horizontal(|ui| {
            if !running {
                let ok = self.model_ready() && n_obj >= 2;
                if ui
                    .add_enabled(ok, egui::Button::new(RichText::new("Start Adapt").strong()))
                    .on_hover_text("Train in the background; keep annotating meanwhile")
                    .clicked()
                {
                    self.start_training(false);
                }
                if self.can_resume() && ui.button("Resume").clicked() {
                    self.start_training(true);
                }
            } else if ui.button("Cancel training").clicked() {
                self.cancel_training();
            }
        });
        if !self.train.status.is_empty() {
            ui.label(RichText::new(&self.train.status).italics());
        }
        self.train_progress(ui);
    }
}
