//! The Adapt tab's view of a run: progress, stages, loss and validation curves.

use egui::{Color32, RichText, Sense, vec2};
use egui_plot::{Corner, HLine, Legend, Line, LineStyle, Plot, PlotPoints, VLine};

use crate::app::SegApp;
use crate::train::schedule::Stage;

use super::fmt_duration;

impl SegApp {
    pub(crate) fn train_progress(&mut self, ui: &mut egui::Ui) {
        let t = &self.train;
        if t.total_steps == 0 && t.loss.is_empty() {
            return;
        }
        ui.separator();
        let eta = if t.running() {
            format!(" · ETA {}", fmt_duration(t.eta_s))
        } else {
            String::new()
        };
        ui.add(egui::ProgressBar::new(t.progress()).text(format!(
            "step {}/{} · {}{eta}",
            t.step,
            t.total_steps,
            fmt_duration(t.elapsed_s)
        )));
        // stage strip
        let (s1, s2) = t.stage_steps;
        let total = t.total_steps.max(1) as f32;
        let (rect, _) = ui.allocate_exact_size(vec2(ui.available_width(), 16.0), Sense::hover());
        let p = ui.painter();
        let x = |s: usize| rect.left() + rect.width() * (s as f32 / total).min(1.0);
        use crate::train::schedule::Stage;
        let parts = if s1 < t.total_steps {
            vec![
                (0, s1, Stage::Warmup),
                (s1, s2, Stage::Search),
                (s2, t.total_steps, Stage::Consolidate),
            ]
        } else {
            vec![(0, t.total_steps, Stage::Warmup)]
        };
        for (a, b, st) in parts {
            if b > a {
                let r = egui::Rect::from_min_max(
                    egui::pos2(x(a), rect.top()),
                    egui::pos2(x(b), rect.bottom()),
                );
                let active = t.stage == Some(st);
                p.rect_filled(
                    r,
                    2.0,
                    stage_color(st).gamma_multiply(if active { 1.0 } else { 0.35 }),
                );
                // Short names when a stage is too narrow for its label; never drawn past it.
                let name = if r.width() < 6.5 * st.name().len() as f32 {
                    match st {
                        Stage::Warmup => "warm",
                        Stage::Search => "search",
                        Stage::Consolidate => "cons.",
                    }
                } else {
                    st.name()
                };
                p.with_clip_rect(r).text(
                    r.center(),
                    egui::Align2::CENTER_CENTER,
                    name,
                    egui::FontId::proportional(11.0),
                    Color32::BLACK,
                );
            }
        }
        p.line_segment(
            [
                egui::pos2(x(t.step), rect.top() - 2.0),
                egui::pos2(x(t.step), rect.bottom() + 2.0),
            ],
            egui::Stroke::new(2.0, Color32::WHITE),
        );
        ui.label(
            RichText::new(format!(
                "stage: {} · train {} / val {} objects · {} trainable of {} params · lr {:.1e}",
                t.stage.map(|s| s.name()).unwrap_or("–"),
                t.n_train,
                t.n_val,
                t.trainable_params,
                t.total_params,
                t.lr
            ))
            .small(),
        );
        let stage_lines = |pu: &mut egui_plot::PlotUi, t: &crate::app::train_view::TrainView| {
            for (s, st) in &t.stage_changes {
                if *s > 0 {
                    pu.vline(
                        VLine::new(st.name(), *s as f64)
                            .color(stage_color(*st))
                            .style(LineStyle::Dashed { length: 4.0 }),
                    );
                }
            }
        };
        ui.label(RichText::new("Loss").strong());
        Plot::new("loss-plot")
            .height(100.0)
            .legend(Legend::default().position(Corner::RightTop))
            .allow_scroll(false)
            .include_x(0.0)
            .include_x(t.total_steps as f64)
            .show(ui, |pu| {
                pu.line(
                    Line::new("loss", PlotPoints::from(t.loss.clone()))
                        .color(Color32::from_rgb(240, 120, 90)),
                );
                pu.line(
                    Line::new("mask loss", PlotPoints::from(t.mask_loss.clone()))
                        .color(Color32::from_rgb(120, 170, 240)),
                );
                stage_lines(pu, t);
            });
        ui.label(RichText::new("Validation (held-out objects)").strong());
        // Zoom on the data (Dice moves by hundredths), keeping the base line in view.
        let lo = t
            .val_iou
            .iter()
            .chain(&t.val_dice)
            .map(|p| p[1])
            .fold(1.0f64, f64::min)
            .min(t.base.map(|b| b.0).unwrap_or(1.0));
        let hi = t
            .val_dice
            .iter()
            .map(|p| p[1])
            .fold(0.0f64, f64::max)
            .max(t.base.map(|b| b.0).unwrap_or(0.0));
        let mut val_plot = Plot::new("val-plot")
            .height(100.0)
            .legend(Legend::default().position(Corner::RightBottom))
            .allow_scroll(false)
            .include_x(0.0)
            .include_x(t.total_steps as f64);
        if hi >= lo {
            val_plot = val_plot
                .include_y((lo - 0.02).max(0.0))
                .include_y((hi + 0.02).min(1.0));
        }
        val_plot.show(ui, |pu| {
            pu.line(
                Line::new("Dice", PlotPoints::from(t.val_dice.clone()))
                    .color(Color32::from_rgb(110, 210, 120)),
            );
            pu.line(
                Line::new("IoU", PlotPoints::from(t.val_iou.clone()))
                    .color(Color32::from_rgb(200, 160, 240)),
            );
            if let Some((d, _)) = t.base {
                pu.hline(
                    HLine::new("base Dice", d)
                        .color(Color32::GRAY)
                        .style(LineStyle::Dashed { length: 6.0 }),
                );
            }
        });
        if let Some((step, d)) = t.best {
            let base = t.base.map(|b| b.0).unwrap_or(f64::NAN);
            ui.label(format!("best Dice {d:.4} at step {step} (base {base:.4})"));
        }
        if !t.op_names.is_empty() && !t.cell_names.is_empty() {
            ui.separator();
            ui.label(RichText::new("Architecture weights softmax(α): cells × ops").strong());
            self.alpha_heatmap(ui);
            self.alpha_lines(ui);
        }
        let t = &self.train;
        if !t.chosen.is_empty() {
            let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
            for (_, o) in &t.chosen {
                *counts.entry(o.as_str()).or_default() += 1;
            }
            let s: Vec<String> = counts.iter().map(|(o, n)| format!("{o} ×{n}")).collect();
            ui.label(format!("chosen ops (discretised): {}", s.join(", ")));
        }
        if let Some(o) = &t.outcome {
            ui.separator();
            let col = if o.improved {
                Color32::LIGHT_GREEN
            } else {
                Color32::from_rgb(240, 200, 90)
            };
            ui.colored_label(col, &o.message);
        }
        if let Some(e) = &t.error {
            ui.colored_label(Color32::LIGHT_RED, e);
        }
    }
}

pub fn stage_color(s: Stage) -> egui::Color32 {
    match s {
        Stage::Warmup => egui::Color32::from_rgb(120, 160, 230),
        Stage::Search => egui::Color32::from_rgb(240, 170, 60),
        Stage::Consolidate => egui::Color32::from_rgb(110, 200, 120),
    }
}
