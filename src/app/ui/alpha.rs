//! The architecture weights of a NAS run: the α heatmap and the per-op lines.

use egui::{Color32, RichText, Sense, vec2};
use egui_plot::{Line, LineStyle, Plot, PlotPoints};

use crate::app::SegApp;

/// Colour of each candidate op in the α lines and the heatmap's column titles.
const OP_COLORS: [Color32; 8] = [
    Color32::from_rgb(230, 230, 230),
    Color32::from_rgb(240, 120, 90),
    Color32::from_rgb(250, 200, 70),
    Color32::from_rgb(120, 200, 120),
    Color32::from_rgb(110, 170, 240),
    Color32::from_rgb(200, 140, 240),
    Color32::from_rgb(120, 220, 220),
    Color32::from_rgb(240, 140, 200),
];
impl SegApp {
    pub(crate) fn alpha_heatmap(&mut self, ui: &mut egui::Ui) {
        let t = &self.train;
        let ops = &t.op_names;
        let n_ops = ops.len();
        let cells = &t.cell_names;
        let weights: Vec<Vec<f32>> = t
            .alpha
            .as_ref()
            .map(|(_, w)| w.clone())
            .unwrap_or_else(|| vec![vec![1.0 / n_ops as f32; n_ops]; cells.len()]);
        let label_w = 92.0;
        let avail = ui.available_width() - label_w - 4.0;
        let cw = (avail / n_ops as f32).clamp(20.0, 60.0);
        let ch = (150.0 / cells.len().max(1) as f32).clamp(4.0, 12.0);
        let (rect, resp) = ui.allocate_exact_size(
            vec2(label_w + cw * n_ops as f32, ch * cells.len() as f32 + 40.0),
            Sense::hover(),
        );
        let p = ui.painter_at(rect);
        let top = rect.top() + 36.0;
        for (j, o) in ops.iter().enumerate() {
            let c = egui::pos2(
                rect.left() + label_w + (j as f32 + 0.5) * cw,
                rect.top() + 18.0,
            );
            let short: String = o
                .replace("_pool", "")
                .replace("conv", "c")
                .replace("dil_", "d")
                .replace("identity", "id");
            p.text(
                c,
                egui::Align2::CENTER_CENTER,
                short,
                egui::FontId::proportional(10.0),
                OP_COLORS[j % OP_COLORS.len()],
            );
        }
        let chosen: std::collections::HashMap<&str, &str> = t
            .chosen
            .iter()
            .map(|(c, o)| (c.as_str(), o.as_str()))
            .collect();
        // Colour = deviation from the uniform start (1/n), scaled to the largest deviation so
        // that early drift is visible; the caption gives the scale.
        let nf = n_ops as f32;
        let maxdev = weights
            .iter()
            .flatten()
            .map(|v| (v * nf - 1.0).abs())
            .fold(0.0f32, f32::max)
            .max(0.005);
        let show_every = (12.0 / ch).ceil() as usize;
        for (i, name) in cells.iter().enumerate() {
            let y = top + i as f32 * ch;
            if i % show_every.max(1) == 0 {
                let short = name.replace("image_encoder.", "").replace(".attn.qkv", "");
                p.text(
                    egui::pos2(rect.left() + label_w - 4.0, y + ch / 2.0),
                    egui::Align2::RIGHT_CENTER,
                    short,
                    egui::FontId::proportional(9.0),
                    ui.visuals().weak_text_color(),
                );
            }
            let row = weights.get(i);
            for (j, op) in ops.iter().enumerate() {
                let v = row.and_then(|r| r.get(j)).copied().unwrap_or(0.0);
                let r = egui::Rect::from_min_size(
                    egui::pos2(rect.left() + label_w + j as f32 * cw, y),
                    vec2(cw - 1.0, ch - 1.0),
                );
                // scale: uniform (1/n) sits mid-range so drift is visible
                p.rect_filled(r, 1.0, heat(0.5 + 0.5 * (v * nf - 1.0) / maxdev));
                if chosen.get(name.as_str()) == Some(&op.as_str()) {
                    p.rect_stroke(
                        r,
                        1.0,
                        egui::Stroke::new(1.5, Color32::WHITE),
                        egui::StrokeKind::Inside,
                    );
                }
            }
        }
        if let Some(hp) = resp.hover_pos() {
            let j = ((hp.x - rect.left() - label_w) / cw).floor();
            let i = ((hp.y - top) / ch).floor();
            if j >= 0.0 && i >= 0.0 && (j as usize) < n_ops && (i as usize) < cells.len() {
                let v = weights
                    .get(i as usize)
                    .and_then(|r| r.get(j as usize))
                    .copied()
                    .unwrap_or(0.0);
                let text = format!("{} · {} = {v:.3}", cells[i as usize], ops[j as usize]);
                resp.on_hover_text(text);
                self.train.alpha_cell = i as usize;
            }
        }
        ui.label(
            RichText::new(format!(
                "colour: weight relative to uniform 1/{n_ops} (mid), full scale ±{:.1}%; white frame = chosen op; step {}",
                maxdev * 100.0,
                self.train.alpha.as_ref().map(|a| a.0).unwrap_or(0)
            ))
            .weak()
            .small(),
        );
    }

    pub(crate) fn alpha_lines(&mut self, ui: &mut egui::Ui) {
        let t = &self.train;
        if t.alpha_mean.is_empty() {
            return;
        }
        let n_ops = t.op_names.len();
        let cell = t.alpha_cell.min(t.cell_names.len().saturating_sub(1));
        ui.label(
            RichText::new(format!(
                "α over steps: mean of all cells (solid), {} (dashed)",
                t.cell_names.get(cell).map(|s| s.as_str()).unwrap_or("")
            ))
            .small(),
        );
        let colors = OP_COLORS;
        // No legend: the heatmap's column titles above carry the same colours.
        Plot::new("alpha-plot")
            .height(110.0)
            .include_y(0.0)
            .include_x(0.0)
            .include_x(t.total_steps as f64)
            .allow_scroll(false)
            .show(ui, |pu| {
                for j in 0..n_ops {
                    let pts: Vec<[f64; 2]> = t
                        .alpha_mean
                        .iter()
                        .map(|(s, w)| [*s as f64, w.get(j).copied().unwrap_or(0.0) as f64])
                        .collect();
                    pu.line(
                        Line::new(t.op_names[j].clone(), PlotPoints::from(pts))
                            .color(colors[j % colors.len()])
                            .width(1.8),
                    );
                    let pts: Vec<[f64; 2]> = t
                        .alpha_hist
                        .iter()
                        .map(|(s, w)| {
                            [
                                *s as f64,
                                w.get(cell).and_then(|r| r.get(j)).copied().unwrap_or(0.0) as f64,
                            ]
                        })
                        .collect();
                    pu.line(
                        Line::new(t.op_names[j].clone(), PlotPoints::from(pts))
                            .color(colors[j % colors.len()].gamma_multiply(0.7))
                            .style(LineStyle::Dashed { length: 4.0 }),
                    );
                }
            });
    }
}

/// Colour map for α heatmaps (0 → dark blue, 1 → yellow).
pub fn heat(v: f32) -> egui::Color32 {
    let v = v.clamp(0.0, 1.0);
    let stops = [
        (0.0, [30, 30, 80]),
        (0.35, [40, 110, 160]),
        (0.65, [90, 190, 110]),
        (1.0, [250, 230, 60]),
    ];
    for w in stops.windows(2) {
        let ((a, ca), (b, cb)) = (w[0], w[1]);
        if v <= b {
            let t = (v - a) / (b - a);
            let mix = |i: usize| (ca[i] as f32 + (cb[i] as f32 - ca[i] as f32) * t).round() as u8;
            return egui::Color32::from_rgb(mix(0), mix(1), mix(2));
        }
    }
    egui::Color32::from_rgb(250, 230, 60)
}
