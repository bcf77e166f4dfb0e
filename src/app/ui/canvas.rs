//! The canvas: image, mask overlay, prompts; pan/zoom; point, box, brush and eraser input.
//! In A/B mode it shows the same view twice: the active model's answer on the left, the
//! other model's on the right, for the same prompts.

use egui::{
    Align2, Color32, CursorIcon, FontId, Pos2, Rect, Sense, Stroke as EStroke, StrokeKind, pos2,
    vec2,
};

use crate::app::state::{Stroke, Tool};
use crate::app::{SegApp, overlay};
use crate::service::worker::Slot;

impl SegApp {
    /// Image pixel (x, y) → screen position in the left (or only) canvas view.
    pub fn image_to_screen(&self, p: [f32; 2]) -> Option<Pos2> {
        let r = self.canvas.rect?;
        let half = self.view_rects(r)[0];
        Some(half.min + self.canvas.view.offset + vec2(p[0], p[1]) * self.canvas.view.zoom)
    }

    fn screen_to_image(&self, view_rect: Rect, s: Pos2) -> [f32; 2] {
        let v = (s - view_rect.min - self.canvas.view.offset) / self.canvas.view.zoom;
        [v.x, v.y]
    }

    fn view_rects(&self, r: Rect) -> Vec<Rect> {
        if self.other_slot().is_some() {
            let mid = r.center().x;
            vec![
                Rect::from_min_max(r.min, pos2(mid - 1.0, r.max.y)),
                Rect::from_min_max(pos2(mid + 1.0, r.min.y), r.max),
            ]
        } else {
            vec![r]
        }
    }

    pub fn fit(&mut self) {
        let (Some(r), Some(c)) = (self.canvas.rect, &self.current) else {
            return;
        };
        let vr = self.view_rects(r)[0];
        let (w, h) = (c.width as f32, c.height as f32);
        let z = ((vr.width() - 24.0) / w)
            .min((vr.height() - 24.0) / h)
            .max(0.01);
        self.canvas.view.zoom = z;
        self.canvas.view.offset = (vr.size() - vec2(w, h) * z) / 2.0;
        self.canvas.fit_pending = false;
        self.canvas.view_touched = false;
    }

    pub fn zoom_by(&mut self, factor: f32, anchor: Option<Pos2>) {
        let Some(r) = self.canvas.rect else { return };
        let vr = self.view_rects(r)[0];
        let a = anchor.map(|a| a - vr.min).unwrap_or(vr.size() / 2.0);
        let z = (self.canvas.view.zoom * factor).clamp(0.02, 64.0);
        let f = z / self.canvas.view.zoom;
        self.canvas.view_touched = true;
        self.canvas.view.offset = a - (a - self.canvas.view.offset) * f;
        self.canvas.view.zoom = z;
    }

    pub fn canvas_panel(&mut self, ui: &mut egui::Ui) {
        let rect = ui.available_rect_before_wrap();
        let rect_changed = self
            .canvas
            .rect
            .map(|r| (r.size() - rect.size()).length() > 1.0)
            .unwrap_or(true);
        self.canvas.rect = Some(rect);
        let painter = ui.painter_at(rect);
        painter.rect_filled(rect, 0.0, Color32::from_gray(24));
        let Some(cur) = &self.current else {
            painter.text(
                rect.center(),
                Align2::CENTER_CENTER,
                "Add images to the project (Project > Add images...)",
                FontId::proportional(16.0),
                Color32::GRAY,
            );
            ui.allocate_rect(rect, Sense::hover());
            return;
        };
        if let Some(e) = &cur.error {
            painter.text(
                rect.center(),
                Align2::CENTER_CENTER,
                format!("Cannot show this image:\n{e}"),
                FontId::proportional(15.0),
                Color32::LIGHT_RED,
            );
            ui.allocate_rect(rect, Sense::hover());
            return;
        }
        if (self.canvas.fit_pending || rect_changed && !self.canvas.view_touched)
            && cur.texture.is_some()
        {
            self.fit();
        }
        let response = ui.allocate_rect(rect, Sense::click_and_drag());
        let views = self.view_rects(rect);
        self.handle_input(ui, &response, &views);
        self.prepare_proposal_fill(ui.ctx());
        let slots: Vec<Slot> = std::iter::once(self.active_slot())
            .chain(self.other_slot())
            .collect();
        for (i, vr) in views.iter().enumerate() {
            self.paint_view(ui, *vr, i, slots.get(i).copied().unwrap_or(Slot::Base));
        }
        if views.len() == 2 {
            painter.line_segment(
                [
                    pos2(rect.center().x, rect.top()),
                    pos2(rect.center().x, rect.bottom()),
                ],
                EStroke::new(2.0, Color32::from_gray(90)),
            );
        }
    }

    fn paint_view(&mut self, ui: &mut egui::Ui, vr: Rect, index: usize, slot: Slot) {
        let painter = ui.painter_at(vr);
        let Some(cur) = &self.current else { return };
        let (w, h) = (cur.width as f32, cur.height as f32);
        let img_rect = Rect::from_min_size(
            vr.min + self.canvas.view.offset,
            vec2(w, h) * self.canvas.view.zoom,
        );
        match &cur.texture {
            Some(t) => {
                painter.image(
                    t.id(),
                    img_rect,
                    Rect::from_min_max(pos2(0.0, 0.0), pos2(1.0, 1.0)),
                    Color32::WHITE,
                );
            }
            None => {
                painter.text(
                    vr.center(),
                    Align2::CENTER_CENTER,
                    "loading image…",
                    FontId::proportional(15.0),
                    Color32::GRAY,
                );
                return;
            }
        }
        let data = if index == 0 {
            self.overlay.data.clone()
        } else {
            self.overlay_b()
        };
        if let Some(d) = data {
            let params = self.overlay_params();
            if self.overlay.wgpu {
                overlay::paint_wgpu(&painter, vr, img_rect, index as u64, &d, params);
            } else {
                let ctx = ui.ctx().clone();
                self.overlay.cpu[index.min(1)].paint(&ctx, &painter, img_rect, &d, params);
            }
        }
        // Proposals come from the model of the main view.
        if index == 0 {
            self.paint_proposals(&painter, img_rect);
        }
        let to_screen =
            |x: f64, y: f64| img_rect.min + vec2(x as f32, y as f32) * self.canvas.view.zoom;
        // On a tiled image, the tile cores' edges: where a click moves to another tile.
        let t = self.settings.tiles;
        if t.applies(w as usize, h as usize) {
            let stroke = EStroke::new(1.0, Color32::from_white_alpha(60));
            for x in (t.tile..w as usize).step_by(t.tile) {
                let x = x as f64;
                painter.line_segment([to_screen(x, 0.0), to_screen(x, h as f64)], stroke);
            }
            for y in (t.tile..h as usize).step_by(t.tile) {
                let y = y as f64;
                painter.line_segment([to_screen(0.0, y), to_screen(w as f64, y)], stroke);
            }
        }
        // prompts
        if let Some(b) = self.draft.bbox {
            let r = Rect::from_two_pos(to_screen(b[0], b[1]), to_screen(b[2], b[3]));
            painter.rect_stroke(
                r,
                0.0,
                EStroke::new(2.0, Color32::from_rgb(80, 200, 255)),
                StrokeKind::Middle,
            );
        }
        if let Some((a, b)) = self.canvas.box_drag {
            let r = Rect::from_two_pos(
                to_screen(a[0] as f64, a[1] as f64),
                to_screen(b[0] as f64, b[1] as f64),
            );
            painter.rect_stroke(
                r,
                0.0,
                EStroke::new(1.5, Color32::from_rgb(80, 200, 255)),
                StrokeKind::Middle,
            );
        }
        for p in &self.draft.points {
            let c = to_screen(p.x, p.y);
            let col = if p.positive {
                Color32::from_rgb(40, 210, 80)
            } else {
                Color32::from_rgb(235, 60, 60)
            };
            painter.circle(c, 5.5, col, EStroke::new(1.5, Color32::WHITE));
        }
        if let Some(s) = &self.canvas.stroke {
            let col = if s.add {
                Color32::from_rgba_unmultiplied(255, 220, 40, 140)
            } else {
                Color32::from_rgba_unmultiplied(255, 80, 80, 140)
            };
            for p in &s.points {
                painter.circle_filled(
                    to_screen(p[0] as f64, p[1] as f64),
                    s.radius * self.canvas.view.zoom,
                    col,
                );
            }
        }
        if matches!(self.tool, Tool::Brush | Tool::Eraser)
            && let Some(hp) = ui.ctx().pointer_hover_pos().filter(|p| vr.contains(*p))
        {
            painter.circle_stroke(
                hp,
                self.brush_radius * self.canvas.view.zoom,
                EStroke::new(1.0, Color32::WHITE),
            );
        }
        // labels and progress
        let title = if self.other_slot().is_some() {
            format!(
                "{} {}",
                if index == 0 { "A" } else { "B" },
                self.slot_name(slot)
            )
        } else {
            self.slot_name(slot)
        };
        let mut title = title;
        if let Some(p) = if index == 0 {
            self.draft.pred.as_ref()
        } else {
            self.draft.pred_b.as_ref()
        } {
            let c = self.draft.choice.min(p.iou.len().saturating_sub(1));
            if let Some(s) = p.iou.get(c) {
                title.push_str(&format!("   predicted IoU {s:.3}"));
                if p.masks.len() > 1 {
                    title.push_str(&format!("   candidate {}/{} (M)", c + 1, p.masks.len()));
                }
            }
        }
        let galley_pos = vr.min + vec2(8.0, 6.0);
        let bg = painter.layout_no_wrap(title.clone(), FontId::proportional(13.0), Color32::WHITE);
        painter.rect_filled(
            Rect::from_min_size(galley_pos - vec2(4.0, 2.0), bg.size() + vec2(8.0, 4.0)),
            4.0,
            Color32::from_black_alpha(160),
        );
        painter.galley(galley_pos, bg, Color32::WHITE);
        if let Some(e) = self.sam.embedding.get(&slot).filter(|e| e.image == cur.id) {
            let el = e.started.elapsed().as_secs_f64();
            let text = match e.expected_ms {
                Some(x) => format!(
                    "Computing the image embedding… {el:.1} s of ~{:.1} s",
                    x / 1e3
                ),
                None => format!("Computing the image embedding… {el:.1} s"),
            };
            let frac = e.expected_ms.map(|x| (el * 1e3 / x).min(0.97) as f32);
            let r = Rect::from_center_size(
                pos2(vr.center().x, vr.top() + 46.0),
                vec2(360.0_f32.min(vr.width() - 20.0), 34.0),
            );
            painter.rect_filled(r, 6.0, Color32::from_black_alpha(190));
            painter.text(
                r.center() - vec2(0.0, 6.0),
                Align2::CENTER_CENTER,
                text,
                FontId::proportional(13.0),
                Color32::WHITE,
            );
            let bar = Rect::from_min_size(
                pos2(r.left() + 10.0, r.bottom() - 9.0),
                vec2(r.width() - 20.0, 4.0),
            );
            painter.rect_filled(bar, 2.0, Color32::from_gray(70));
            let f = frac.unwrap_or(((el * 2.0).sin() * 0.5 + 0.5) as f32 * 0.9);
            painter.rect_filled(
                Rect::from_min_size(bar.min, vec2(bar.width() * f, 4.0)),
                2.0,
                Color32::from_rgb(90, 170, 255),
            );
        } else if !self.model_ready() && index == 0 {
            let msg = match (&self.base.loading, &self.base.error) {
                (Some(m), _) => format!("Loading model {m}…"),
                (None, Some(_)) => "No model: choose a SAM checkpoint in the Model tab".into(),
                _ => "No model loaded: open the Model tab".into(),
            };
            painter.text(
                pos2(vr.center().x, vr.top() + 46.0),
                Align2::CENTER_CENTER,
                msg,
                FontId::proportional(14.0),
                Color32::YELLOW,
            );
        }
        if index == 0 {
            self.paint_proposal_progress(&painter, vr);
        }
    }

    fn handle_input(&mut self, ui: &mut egui::Ui, response: &egui::Response, views: &[Rect]) {
        let Some(cur) = &self.current else { return };
        if cur.texture.is_none() {
            return;
        }
        let (w, h) = (cur.width as f32, cur.height as f32);
        let view_of = |p: Pos2| {
            views
                .iter()
                .copied()
                .find(|r| r.contains(p))
                .unwrap_or(views[0])
        };
        let (scroll, zoom_delta, space, modifiers) = ui.input(|i| {
            (
                i.smooth_scroll_delta,
                i.zoom_delta(),
                i.key_down(egui::Key::Space),
                i.modifiers,
            )
        });
        self.canvas.space_pan = space && !ui.ctx().egui_wants_keyboard_input();
        let hover = response.hover_pos();
        self.canvas.hover_image = hover.map(|p| self.screen_to_image(view_of(p), p));
        // zoom: wheel or pinch around the cursor
        if let Some(hp) = hover {
            let vr = view_of(hp);
            let anchor = views[0].min + (hp - vr.min);
            if scroll.y != 0.0 {
                self.zoom_by((scroll.y * 0.0025).exp(), Some(anchor));
            }
            if zoom_delta != 1.0 {
                self.zoom_by(zoom_delta, Some(anchor));
            }
        }
        let panning = self.tool == Tool::Pan
            || self.canvas.space_pan
            || response.dragged_by(egui::PointerButton::Middle);
        if panning {
            response.clone().on_hover_cursor(CursorIcon::Grab);
            if response.dragged() {
                self.canvas.view.offset += response.drag_delta();
                self.canvas.view_touched = true;
            }
            return;
        }
        let inside = |p: [f32; 2]| p[0] >= 0.0 && p[1] >= 0.0 && p[0] < w && p[1] < h;
        let clamp = |p: [f32; 2]| [p[0].clamp(0.0, w - 1.0), p[1].clamp(0.0, h - 1.0)];
        // Ctrl+click selects the object under the cursor (any tool).
        if modifiers.command && response.clicked() {
            if let Some(p) = response.interact_pointer_pos() {
                let ip = self.screen_to_image(view_of(p), p);
                self.select_at(ip);
            }
            return;
        }
        // Pending proposals take clicks: left accepts, right (or Shift+left) rejects.
        self.proposals.hover = None;
        if self.tool == Tool::Prompt
            && let Some(p) = response.hover_pos().or(response.interact_pointer_pos())
            && let Some(i) = self.proposal_at(self.screen_to_image(view_of(p), p))
        {
            self.proposals.hover = Some(i);
            response.clone().on_hover_cursor(CursorIcon::PointingHand);
            if response.clicked() && !modifiers.shift {
                self.accept_proposals(&[i]);
                return;
            }
            if response.secondary_clicked() || response.clicked() && modifiers.shift {
                self.reject_proposals(&[i]);
                return;
            }
        }
        match self.tool {
            Tool::Prompt => {
                if response.drag_started_by(egui::PointerButton::Primary)
                    && let Some(p) = response.interact_pointer_pos()
                {
                    let origin = ui.input(|i| i.pointer.press_origin()).unwrap_or(p);
                    let a = clamp(self.screen_to_image(view_of(origin), origin));
                    self.canvas.box_drag = Some((a, a));
                }
                if response.dragged_by(egui::PointerButton::Primary)
                    && let (Some(p), Some((a, _))) =
                        (response.interact_pointer_pos(), self.canvas.box_drag)
                {
                    self.canvas.box_drag = Some((a, clamp(self.screen_to_image(view_of(p), p))));
                }
                if response.drag_stopped()
                    && let Some((a, b)) = self.canvas.box_drag.take()
                    && (a[0] - b[0]).abs() >= 2.0
                    && (a[1] - b[1]).abs() >= 2.0
                {
                    self.set_box([a[0] as f64, a[1] as f64, b[0] as f64, b[1] as f64]);
                }
                if let Some(p) = response.interact_pointer_pos() {
                    let ip = self.screen_to_image(view_of(p), p);
                    if inside(ip) {
                        if response.clicked() {
                            self.add_point(ip[0] as f64, ip[1] as f64, !modifiers.shift);
                        } else if response.secondary_clicked() {
                            self.add_point(ip[0] as f64, ip[1] as f64, false);
                        }
                    }
                }
            }
            Tool::Brush | Tool::Eraser => {
                let add = self.tool == Tool::Brush;
                if let Some(p) = response.interact_pointer_pos() {
                    let ip = self.screen_to_image(view_of(p), p);
                    if response.drag_started()
                        || (response.clicked() && self.canvas.stroke.is_none())
                    {
                        self.canvas.stroke = Some(Stroke {
                            add,
                            radius: self.brush_radius,
                            points: vec![ip],
                        });
                    } else if response.dragged()
                        && let Some(s) = &mut self.canvas.stroke
                    {
                        let last = *s.points.last().expect("non-empty");
                        if (last[0] - ip[0]).hypot(last[1] - ip[1]) >= 0.5 {
                            s.points.push(ip);
                        }
                    }
                }
                if (response.drag_stopped() || response.clicked())
                    && let Some(s) = self.canvas.stroke.take()
                {
                    self.commit_stroke(s);
                }
            }
            Tool::Pan => {}
        }
    }

    fn select_at(&mut self, ip: [f32; 2]) {
        let Some(o) = &self.overlay.data else { return };
        let (x, y) = (ip[0].floor() as i64, ip[1].floor() as i64);
        if x < 0 || y < 0 || x >= o.width as i64 || y >= o.height as i64 {
            self.selected = None;
            return;
        }
        let l = o.labels[(y as usize) * o.width as usize + x as usize] as usize;
        self.selected = self
            .overlay
            .object_at_label
            .get(l)
            .copied()
            .filter(|&id| id != 0);
    }
}
