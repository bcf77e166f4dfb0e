//! "Propose all objects" on screen: the Annotate panel's section (action, settings, progress,
//! review buttons) and the canvas layer (outlines of the pending proposals, the highlighted
//! one filled, the run's progress).

use egui::{
    Align2, Color32, ColorImage, FontId, Painter, Rect, RichText, Shape, Stroke as EStroke,
    TextureOptions, pos2, vec2,
};

use crate::app::SegApp;
use crate::app::actions::Action;
use crate::app::proposals::{Decision, Proposals};

/// Proposals are cyan outlines without fill, unlike accepted objects (filled in their colour).
const OUTLINE: Color32 = Color32::from_rgb(0, 229, 255);
const HIGHLIGHT: Color32 = Color32::WHITE;
const FILL: [u8; 4] = [0, 229, 255, 80];

/// "step 3/17": the generator's steps, one per image embedding (the cached one, or one per tile
/// of a large image) and one per batch of points.
fn batches(done: usize, total: usize) -> String {
    format!("step {done}/{total}")
}

impl SegApp {
    pub(crate) fn proposals_section(&mut self, ui: &mut egui::Ui) {
        ui.label(RichText::new("Propose all objects").strong());
        ui.horizontal(|ui| {
            let label = format!(
                "{} ({})",
                Action::ProposeAll.label(),
                Action::ProposeAll.shortcut_text().unwrap_or_default()
            );
            if ui
                .add_enabled(self.can_propose(), egui::Button::new(label))
                .on_hover_text(
                    "SAM's automatic mask generator on this image, with the model that answers \
                     clicks; you then accept or reject each proposal",
                )
                .clicked()
            {
                self.propose_all();
            }
            ui.menu_button("Settings…", |ui| self.proposal_settings(ui))
                .response
                .on_hover_text("Grid density and the thresholds that keep a mask");
        });
        if let Some(r) = &self.proposals.running {
            let el = r.started.elapsed().as_secs_f64();
            let (frac, text) = if r.total > 0 {
                (
                    r.done as f32 / r.total as f32,
                    format!("{} · {el:.0} s", batches(r.done, r.total)),
                )
            } else {
                (0.0, format!("waiting for the embedding · {el:.0} s"))
            };
            ui.add(egui::ProgressBar::new(frac).text(text));
            let cancelling = r.cancel.load(std::sync::atomic::Ordering::Relaxed);
            if ui
                .add_enabled(!cancelling, egui::Button::new("Cancel proposing (Esc)"))
                .clicked()
            {
                self.cancel_proposals();
            }
            if cancelling {
                ui.label(RichText::new("stopping after the current batch…").weak());
            }
        }
        let Some(s) = self.shown_proposals() else {
            return;
        };
        let (pending, accepted, rejected) = (
            s.count(Decision::Pending),
            s.count(Decision::Accepted),
            s.count(Decision::Rejected),
        );
        ui.label(format!(
            "{} proposals ({}² points, {:.1} s): {pending} to review, {accepted} accepted, \
             {rejected} rejected",
            s.items.len(),
            s.points_per_side,
            s.shown_ms / 1e3
        ));
        if s.duplicates > 0 {
            ui.label(
                RichText::new(format!(
                    "{} more match existing objects (not shown)",
                    s.duplicates
                ))
                .weak(),
            );
        }
        if let Some(f) = s.focus.filter(|&f| s.decided[f] == Decision::Pending) {
            let p = &s.items[f];
            let rank = s.pending().position(|i| i == f).unwrap_or(0) + 1;
            ui.label(
                RichText::new(format!(
                    "highlighted {rank}/{pending}: {} px · IoU {:.3} · stability {:.3}",
                    p.area, p.predicted_iou, p.stability_score
                ))
                .weak(),
            );
        }
        if pending == 0 {
            return;
        }
        ui.horizontal(|ui| {
            for a in [Action::AcceptProposal, Action::RejectProposal] {
                let text = format!("{} ({})", a.label(), a.shortcut_text().unwrap_or_default());
                if ui.button(text).clicked() {
                    self.perform(a);
                }
            }
        });
        ui.horizontal(|ui| {
            for a in [Action::AcceptAllProposals, Action::RejectAllProposals] {
                if ui.button(a.label()).clicked() {
                    self.perform(a);
                }
            }
        });
        ui.label(
            RichText::new("Click a proposal to accept it, right click to reject · J/K step").weak(),
        );
    }

    fn proposal_settings(&mut self, ui: &mut egui::Ui) {
        let p = &mut self.proposals.params;
        ui.add(egui::Slider::new(&mut p.points_per_side, 4..=64).text("points per side"))
            .on_hover_text("n² single-point prompts; time grows with n²");
        ui.add(egui::Slider::new(&mut p.pred_iou_thresh, 0.0..=1.0).text("predicted IoU ≥"))
            .on_hover_text("Keep masks SAM itself rates above this (official 0.88)");
        ui.add(egui::Slider::new(&mut p.stability_score_thresh, 0.0..=1.0).text("stability ≥"))
            .on_hover_text("Keep masks that barely change when the cut moves (official 0.95)");
        ui.add(egui::Slider::new(&mut p.box_nms_thresh, 0.0..=1.0).text("duplicate box IoU"))
            .on_hover_text("Of two masks whose boxes overlap more than this, keep the better");
        ui.add(
            egui::Slider::new(&mut p.min_mask_region_area, 0..=1000)
                .text("min region (px)")
                .logarithmic(true),
        )
        .on_hover_text("Fill holes and remove islands smaller than this (0 = off)");
        if ui.button("Defaults").clicked() {
            *p = Proposals::defaults(self.config.device.is_gpu);
        }
    }

    /// The proposal drawn filled: the one under the pointer, else the one the keys act on.
    fn highlighted_proposal(&self) -> Option<usize> {
        self.proposals.hover.or_else(|| {
            self.shown_proposals()
                .and_then(|s| s.focus.filter(|&f| s.decided[f] == Decision::Pending))
        })
    }

    /// Makes the highlighted proposal's fill texture when the highlight changed.
    pub(crate) fn prepare_proposal_fill(&mut self, ctx: &egui::Context) {
        let Some(i) = self.highlighted_proposal() else {
            return;
        };
        let Some(s) = self.shown_proposals() else {
            return;
        };
        let key = (s.id, i);
        if self.proposals.fill.as_ref().is_some_and(|f| f.0 == key) {
            return;
        }
        let on = Color32::from_rgba_unmultiplied(FILL[0], FILL[1], FILL[2], FILL[3]);
        // Only the proposal's box: a texture of the whole image would not fit a large one.
        let m = &s.items[i].mask;
        let px = m
            .bits
            .iter()
            .map(|&v| if v { on } else { Color32::TRANSPARENT })
            .collect();
        let img = ColorImage::new([m.width(), m.height()], px);
        let t = ctx.load_texture("proposal-fill", img, TextureOptions::NEAREST);
        self.proposals.fill = Some((key, t));
    }

    /// The pending proposals over the image in the main view (`img_rect` on screen).
    pub(crate) fn paint_proposals(&self, painter: &Painter, img_rect: Rect) {
        let Some(s) = self.shown_proposals() else {
            return;
        };
        let highlight = self.highlighted_proposal();
        if let Some(((set, i), t)) = &self.proposals.fill
            && *set == s.id
            && Some(*i) == highlight
        {
            let b = s.items[*i].mask.bbox.map(|v| v as f32);
            let zoom = self.canvas.view.zoom;
            let at = Rect::from_min_max(
                img_rect.min + vec2(b[0], b[1]) * zoom,
                img_rect.min + vec2(b[2] + 1.0, b[3] + 1.0) * zoom,
            );
            painter.image(
                t.id(),
                at,
                Rect::from_min_max(pos2(0.0, 0.0), pos2(1.0, 1.0)),
                Color32::WHITE,
            );
        }
        let zoom = self.canvas.view.zoom;
        let to_screen = |p: &[f32; 2]| img_rect.min + vec2(p[0], p[1]) * zoom;
        let mut shapes = Vec::new();
        // The highlighted one last, so outlines of proposals it overlaps do not hide it.
        let order = s
            .pending()
            .filter(|&i| Some(i) != highlight)
            .chain(highlight.filter(|&h| s.decided.get(h) == Some(&Decision::Pending)));
        for i in order {
            let hl = Some(i) == highlight;
            let (width, color) = if hl { (2.5, HIGHLIGHT) } else { (1.5, OUTLINE) };
            for l in &s.items[i].outline {
                let pts: Vec<egui::Pos2> = l.iter().map(to_screen).collect();
                // A dark edge under the line keeps it visible on bright and dark images.
                shapes.push(Shape::closed_line(
                    pts.clone(),
                    EStroke::new(width + 1.5, Color32::from_black_alpha(140)),
                ));
                shapes.push(Shape::closed_line(pts, EStroke::new(width, color)));
            }
        }
        painter.extend(shapes);
    }

    /// The run's progress box on the canvas (below the embedding's, if both show).
    pub(crate) fn paint_proposal_progress(&self, painter: &Painter, vr: Rect) {
        let Some(r) = &self.proposals.running else {
            return;
        };
        if self.current.as_ref().map(|c| c.id) != Some(r.image) {
            return;
        }
        let el = r.started.elapsed().as_secs_f64();
        let text = if r.total > 0 {
            format!(
                "Proposing objects… {} · {el:.0} s (Esc cancels)",
                batches(r.done, r.total)
            )
        } else {
            format!("Proposing objects… {el:.0} s (Esc cancels)")
        };
        let y = if self.sam.embedding.is_empty() {
            46.0
        } else {
            88.0
        };
        let rect = Rect::from_center_size(
            pos2(vr.center().x, vr.top() + y),
            vec2(380.0_f32.min(vr.width() - 20.0), 34.0),
        );
        painter.rect_filled(rect, 6.0, Color32::from_black_alpha(190));
        painter.text(
            rect.center() - vec2(0.0, 6.0),
            Align2::CENTER_CENTER,
            text,
            FontId::proportional(13.0),
            Color32::WHITE,
        );
        let bar = Rect::from_min_size(
            pos2(rect.left() + 10.0, rect.bottom() - 9.0),
            vec2(rect.width() - 20.0, 4.0),
        );
        painter.rect_filled(bar, 2.0, Color32::from_gray(70));
        let f = if r.total > 0 {
            r.done as f32 / r.total as f32
        } else {
            0.0
        };
        painter.rect_filled(
            Rect::from_min_size(bar.min, vec2(bar.width() * f, 4.0)),
            2.0,
            OUTLINE,
        );
    }
}
