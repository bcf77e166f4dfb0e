//! Panels and windows: menu bar, image and object lists, the Annotate / Model / Adapt / Export
//! tabs, the status bar, the welcome screen, help, the debug overlay and toasts.

use std::path::PathBuf;
use std::time::Duration;

use egui::{Color32, Key, KeyboardShortcut, Modifiers, RichText, Sense, Vec2, vec2};
use egui_plot::{Corner, HLine, Legend, Line, LineStyle, Plot, PlotPoints, VLine};

use super::state::Tool;
use super::train_view::{fmt_duration, heat, stage_color};
use super::{SegApp, Tab, ToastKind};
use crate::adapt::config::Method;
use crate::service::dialogs::DialogKind;
use crate::service::worker::ModelSpec;
use crate::service::{JobKind, find_checkpoints};

/// (keys, action) for the help overlay.
pub const SHORTCUTS: &[(&str, &str)] = &[
    ("Left click", "positive point (SAM prompt tool)"),
    ("Right click / Shift+click", "negative point"),
    ("Left drag", "box prompt"),
    ("Enter or A", "accept the mask as a new object"),
    ("Esc", "clear the prompts"),
    ("M, 1 / 2 / 3", "cycle / pick SAM's candidate masks"),
    ("Ctrl+Z / Ctrl+Shift+Z, Ctrl+Y", "undo / redo"),
    ("Del / Backspace", "delete the selected object"),
    ("Ctrl+click", "select the object under the cursor"),
    ("P / B / E / H", "tools: prompts, brush, eraser, pan"),
    ("[ / ]", "brush size"),
    ("Space+drag, middle drag", "pan"),
    ("Wheel, + / -", "zoom"),
    ("F", "fit the image"),
    ("N / Shift+N, PgDn / PgUp", "next / previous image"),
    ("O", "show / hide objects"),
    ("C", "A/B compare base and adapted model"),
    ("U", "segment without prompts"),
    ("Ctrl+S", "save now"),
    ("F1 or ?", "this help"),
    ("F12", "frame-time overlay"),
];

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

fn short_hash(s: &str) -> &str {
    &s[..12.min(s.len())]
}

impl SegApp {
    pub(super) fn shortcuts(&mut self, ctx: &egui::Context) {
        if ctx.egui_wants_keyboard_input() {
            return;
        }
        let cmd = |k| KeyboardShortcut::new(Modifiers::COMMAND, k);
        let cmd_shift = |k| KeyboardShortcut::new(Modifiers::COMMAND | Modifiers::SHIFT, k);
        let (redo, undo, redo_y, save) = ctx.input_mut(|i| {
            (
                i.consume_shortcut(&cmd_shift(Key::Z)),
                i.consume_shortcut(&cmd(Key::Z)),
                i.consume_shortcut(&cmd(Key::Y)),
                i.consume_shortcut(&cmd(Key::S)),
            )
        });
        if undo {
            self.undo();
        }
        if redo || redo_y {
            self.redo();
        }
        if save {
            self.save_project();
            self.toast(ToastKind::Info, "Saved");
        }
        let (mods, pressed): (Modifiers, Vec<Key>) = ctx.input(|i| {
            let keys = i
                .events
                .iter()
                .filter_map(|e| match e {
                    egui::Event::Key {
                        key,
                        pressed: true,
                        repeat: false,
                        modifiers,
                        ..
                    } if !modifiers.command => Some(*key),
                    _ => None,
                })
                .collect();
            (i.modifiers, keys)
        });
        for k in pressed {
            match k {
                Key::Enter | Key::A => self.accept(),
                Key::Escape => {
                    if self.show_help {
                        self.show_help = false;
                    } else {
                        self.clear_prompts();
                        self.selected = None;
                    }
                }
                Key::M => self.cycle_candidate(),
                Key::Num1 => self.choose_candidate(0),
                Key::Num2 => self.choose_candidate(1),
                Key::Num3 => self.choose_candidate(2),
                Key::Delete | Key::Backspace => self.delete_selected(),
                Key::P => self.tool = Tool::Prompt,
                Key::B => self.tool = Tool::Brush,
                Key::E => self.tool = Tool::Eraser,
                Key::H => self.tool = Tool::Pan,
                Key::OpenBracket => self.brush_radius = (self.brush_radius / 1.25).max(0.5),
                Key::CloseBracket => self.brush_radius = (self.brush_radius * 1.25).min(200.0),
                Key::F => self.fit(),
                Key::Plus | Key::Equals => self.zoom_by(1.25, None),
                Key::Minus => self.zoom_by(0.8, None),
                Key::N => self.next_image(if mods.shift { -1 } else { 1 }),
                Key::PageDown => self.next_image(1),
                Key::PageUp => self.next_image(-1),
                Key::O => self.show_objects = !self.show_objects,
                Key::C => self.toggle_ab(),
                Key::U => self.segment_without_prompts(),
                Key::F1 | Key::Questionmark => self.show_help = !self.show_help,
                Key::F12 => self.show_debug = !self.show_debug,
                _ => {}
            }
        }
    }

    pub fn toggle_ab(&mut self) {
        if self.adapted.summary.is_none() {
            self.error("A/B needs an adapter: select one in the Model tab (or train one in Adapt)");
            return;
        }
        self.ab_view = !self.ab_view;
        self.fit_pending = true;
        // Ask the other model too.
        self.draft.pred_b = None;
        self.ensure_embedded();
        self.request_predict();
    }

    pub(super) fn top_bar(&mut self, ui: &mut egui::Ui) {
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
                    if ui
                        .add_enabled(
                            self.can_undo(),
                            egui::Button::new("Undo").shortcut_text("Ctrl+Z"),
                        )
                        .clicked()
                    {
                        self.undo();
                    }
                    if ui
                        .add_enabled(
                            self.can_redo(),
                            egui::Button::new("Redo").shortcut_text("Ctrl+Shift+Z"),
                        )
                        .clicked()
                    {
                        self.redo();
                    }
                    ui.separator();
                    if ui
                        .add(egui::Button::new("Accept object").shortcut_text("Enter"))
                        .clicked()
                    {
                        self.accept();
                    }
                    if ui
                        .add(egui::Button::new("Clear prompts").shortcut_text("Esc"))
                        .clicked()
                    {
                        self.clear_prompts();
                    }
                    if ui
                        .add_enabled(
                            self.selected.is_some(),
                            egui::Button::new("Delete object").shortcut_text("Del"),
                        )
                        .clicked()
                    {
                        self.delete_selected();
                    }
                });
                ui.menu_button("View", |ui| {
                    if ui
                        .add(egui::Button::new("Fit image").shortcut_text("F"))
                        .clicked()
                    {
                        self.fit();
                    }
                    ui.checkbox(&mut self.show_objects, "Show objects (O)");
                    let mut ab = self.ab_view;
                    if ui.checkbox(&mut ab, "A/B compare (C)").changed() {
                        self.toggle_ab();
                    }
                    ui.checkbox(&mut self.show_debug, "Frame-time overlay (F12)");
                    ui.checkbox(&mut self.show_help, "Keyboard shortcuts (F1)");
                });
                ui.separator();
                self.model_selector(ui);
                ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                    if ui
                        .button("?")
                        .on_hover_text("Keyboard shortcuts (F1)")
                        .clicked()
                    {
                        self.show_help = !self.show_help;
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

    fn model_selector(&mut self, ui: &mut egui::Ui) {
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
            ui.spinner();
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

    pub(super) fn status_bar(&mut self, ui: &mut egui::Ui) {
        egui::Panel::bottom("status").show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.label(RichText::new(&self.config.device.description).weak());
                ui.separator();
                match (&self.base.summary, &self.base.loading) {
                    (_, Some(m)) => {
                        ui.spinner();
                        ui.label(format!("loading {m}"));
                    }
                    (Some(s), None) => {
                        ui.label(format!("{} ({})", s.name, s.model_type));
                    }
                    (None, None) => {
                        ui.colored_label(Color32::YELLOW, "no model");
                    }
                }
                if let Some(t) = self.warming_since {
                    ui.separator();
                    ui.spinner();
                    ui.label(format!(
                        "compiling GPU kernels {:.0} s (first use after start)",
                        t.elapsed().as_secs_f64()
                    ))
                    .on_hover_text(
                        "wgpu compiles each kernel the first time it runs; this happens once per start, \
                         in the background, so the first embedding and the first click are fast",
                    );
                }
                if let Some(e) = self.embedding.values().next() {
                    ui.separator();
                    ui.spinner();
                    ui.label(format!(
                        "embedding {:.1} s",
                        e.started.elapsed().as_secs_f64()
                    ));
                }
                if let Some(ms) = self.last_embed_ms {
                    ui.separator();
                    ui.label(format!("embed {:.2} s", ms / 1e3));
                }
                if let Some(ms) = self.last_decode_ms {
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
                ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                    let (mean, max) = self.frame_numbers();
                    ui.label(
                        RichText::new(format!("frame {mean:.1} ms (max {max:.0})"))
                            .weak()
                            .monospace(),
                    );
                    if let Some(hp) = self.hover_image {
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

    /// (mean, max) UI build time over the recent frames, in ms.
    pub fn frame_numbers(&self) -> (f32, f32) {
        let v: Vec<f32> = self.frame.recent.iter().map(|r| r.1).collect();
        if v.is_empty() {
            return (0.0, 0.0);
        }
        (
            v.iter().sum::<f32>() / v.len() as f32,
            v.iter().copied().fold(0.0, f32::max),
        )
    }

    pub(super) fn left_panel(&mut self, ui: &mut egui::Ui) {
        egui::Panel::left("images")
            .default_size(230.0)
            .resizable(true)
            .show(ui, |ui| {
                let Some(p) = &self.project else { return };
                let images: Vec<(u64, String, usize, u32, u32)> = p
                    .project
                    .images
                    .iter()
                    .map(|i| (i.id, i.name.clone(), i.objects.len(), i.width, i.height))
                    .collect();
                let cur = self.current.as_ref().map(|c| c.id);
                ui.horizontal(|ui| {
                    ui.heading("Images");
                    ui.label(RichText::new(format!("{}", images.len())).weak());
                    ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                        if ui.small_button("+").on_hover_text("Add images…").clicked() {
                            self.open_dialog(DialogKind::AddImages);
                        }
                    });
                });
                let mut open = None;
                egui::ScrollArea::vertical()
                    .id_salt("image-list")
                    .max_height(ui.available_height() * 0.45)
                    .show(ui, |ui| {
                        for (id, name, n, w, h) in &images {
                            let selected = cur == Some(*id);
                            let r = ui
                                .horizontal(|ui| {
                                    match self.thumbs.get(id) {
                                        Some(t) => {
                                            let s = t.size_vec2();
                                            let k = 44.0 / s.x.max(s.y);
                                            ui.add(egui::Image::from_texture((t.id(), s * k)));
                                        }
                                        None => {
                                            ui.allocate_exact_size(
                                                vec2(44.0, 44.0),
                                                Sense::hover(),
                                            );
                                        }
                                    }
                                    ui.vertical(|ui| {
                                        let text = if selected {
                                            RichText::new(name).strong()
                                        } else {
                                            RichText::new(name)
                                        };
                                        ui.add(egui::Label::new(text).truncate());
                                        ui.label(
                                            RichText::new(format!("{w}×{h} · {n} objects"))
                                                .small()
                                                .weak(),
                                        );
                                    });
                                })
                                .response;
                            let r = ui.interact(
                                r.rect,
                                ui.scope_id().with(("img", id)),
                                Sense::click(),
                            );
                            if selected {
                                ui.painter().rect_stroke(
                                    r.rect.expand(1.0),
                                    3.0,
                                    egui::Stroke::new(1.5, ui.visuals().selection.stroke.color),
                                    egui::StrokeKind::Outside,
                                );
                            }
                            if r.clicked() && !selected {
                                open = Some(*id);
                            }
                        }
                    });
                if let Some(id) = open {
                    self.open_image(id);
                }
                ui.separator();
                self.object_list(ui);
            });
    }

    fn object_list(&mut self, ui: &mut egui::Ui) {
        let Some(cur) = &self.current else { return };
        let Some(p) = &self.project else { return };
        let objects: Vec<(u64, String, [u8; 3], bool, u64)> = p
            .project
            .image(cur.id)
            .map(|i| {
                i.objects
                    .iter()
                    .map(|o| (o.id, o.label.clone(), o.color, o.hidden, o.area))
                    .collect()
            })
            .unwrap_or_default();
        ui.horizontal(|ui| {
            ui.heading("Objects");
            ui.label(RichText::new(format!("{}", objects.len())).weak());
        });
        let mut toggle = None;
        let mut delete = None;
        let mut select = None;
        let mut rename_done = None;
        egui::ScrollArea::vertical()
            .id_salt("object-list")
            .show(ui, |ui| {
                for (id, label, color, hidden, area) in &objects {
                    ui.horizontal(|ui| {
                        let (r, _) = ui.allocate_exact_size(vec2(14.0, 14.0), Sense::hover());
                        ui.painter().rect_filled(
                            r,
                            3.0,
                            Color32::from_rgb(color[0], color[1], color[2]),
                        );
                        let mut vis = !hidden;
                        if ui.checkbox(&mut vis, "").on_hover_text("visible").changed() {
                            toggle = Some(*id);
                        }
                        let sel = self.selected == Some(*id);
                        if let Some((rid, text)) = &mut self.renaming
                            && *rid == *id
                        {
                            let resp =
                                ui.add(egui::TextEdit::singleline(text).desired_width(110.0));
                            if resp.lost_focus() {
                                rename_done = Some((*id, text.clone()));
                            } else {
                                resp.request_focus();
                            }
                        } else {
                            let resp = ui
                                .selectable_label(sel, label)
                                .on_hover_text(format!("{area} px — double-click to rename"));
                            if resp.clicked() {
                                select = Some(if sel { None } else { Some(*id) });
                            }
                            if resp.double_clicked() {
                                self.renaming = Some((*id, label.clone()));
                            }
                        }
                        ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                            if ui.small_button("x").on_hover_text("delete (Del)").clicked() {
                                delete = Some(*id);
                            }
                        });
                    });
                }
                if objects.is_empty() {
                    ui.label(RichText::new("Click on an object, then Enter to accept.").weak());
                }
            });
        if let Some(id) = toggle {
            self.update_object(id, |o| o.hidden = !o.hidden);
        }
        if let Some(s) = select {
            self.selected = s;
        }
        if let Some((id, text)) = rename_done {
            self.renaming = None;
            let t = text.trim().to_string();
            if !t.is_empty() {
                self.update_object(id, |o| o.label = t);
            }
        }
        if let Some(id) = delete {
            self.delete_object(id);
        }
    }

    pub(super) fn right_panel(&mut self, ui: &mut egui::Ui) {
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

    fn annotate_tab(&mut self, ui: &mut egui::Ui) {
        ui.label(RichText::new("Tool").strong());
        ui.horizontal_wrapped(|ui| {
            for (t, key) in [
                (Tool::Prompt, "P"),
                (Tool::Brush, "B"),
                (Tool::Eraser, "E"),
                (Tool::Pan, "H"),
            ] {
                ui.selectable_value(&mut self.tool, t, format!("{} ({key})", t.name()));
            }
        });
        match self.tool {
            Tool::Prompt => {
                ui.label(
                    RichText::new("Left click: object · right click: background · drag: box")
                        .weak(),
                );
            }
            Tool::Brush | Tool::Eraser => {
                ui.add(
                    egui::Slider::new(&mut self.brush_radius, 0.5..=100.0)
                        .logarithmic(true)
                        .text("brush radius (px)"),
                );
                ui.label(
                    RichText::new(if self.selected.is_some() {
                        "Paints on the selected object"
                    } else {
                        "Paints on the new object (draft)"
                    })
                    .weak(),
                );
            }
            Tool::Pan => {}
        }
        ui.separator();
        ui.label(RichText::new("Current object").strong());
        let d = &self.draft;
        ui.label(format!(
            "{} positive, {} negative points{}{}",
            d.points.iter().filter(|p| p.positive).count(),
            d.points.iter().filter(|p| !p.positive).count(),
            if d.bbox.is_some() { ", box" } else { "" },
            if d.strokes.is_empty() {
                String::new()
            } else {
                format!(", {} strokes", d.strokes.len())
            }
        ));
        if let Some(p) = self.draft.pred.clone() {
            if p.masks.len() > 1 {
                ui.label("SAM's candidates (M cycles, 1-3 picks):");
                ui.horizontal(|ui| {
                    for i in 0..p.masks.len() {
                        let area = p.masks[i].iter().filter(|&&v| v).count();
                        if ui
                            .selectable_label(
                                self.draft.choice == i,
                                format!("{} · IoU {:.2}", i + 1, p.iou[i]),
                            )
                            .on_hover_text(format!("{area} px"))
                            .clicked()
                        {
                            self.choose_candidate(i);
                        }
                    }
                });
            } else if let Some(s) = p.iou.first() {
                ui.label(format!("predicted IoU {s:.3} · decoder {:.0} ms", p.ms));
            }
        } else if self.draft.has_prompts() {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("waiting for SAM…");
            });
        }
        ui.horizontal(|ui| {
            let can_accept = self
                .draft_mask
                .as_ref()
                .is_some_and(|m| m.iter().any(|&v| v));
            if ui
                .add_enabled(
                    can_accept,
                    egui::Button::new(RichText::new("Accept (Enter)").strong()),
                )
                .clicked()
            {
                self.accept();
            }
            if ui
                .add_enabled(!self.draft.is_empty(), egui::Button::new("Clear (Esc)"))
                .clicked()
            {
                self.clear_prompts();
            }
        });
        ui.horizontal(|ui| {
            if ui
                .add_enabled(self.can_undo(), egui::Button::new("Undo"))
                .clicked()
            {
                self.undo();
            }
            if ui
                .add_enabled(self.can_redo(), egui::Button::new("Redo"))
                .clicked()
            {
                self.redo();
            }
            if ui
                .add_enabled(
                    self.selected.is_some(),
                    egui::Button::new("Delete selected"),
                )
                .clicked()
            {
                self.delete_selected();
            }
        });
        if ui
            .add_enabled(
                self.model_ready() && self.can_prompt(),
                egui::Button::new("Segment without prompts (U)"),
            )
            .on_hover_text("For adapters trained with a share of no-prompt samples")
            .clicked()
        {
            self.segment_without_prompts();
        }
        ui.separator();
        ui.label(RichText::new("Overlay").strong());
        ui.add(egui::Slider::new(&mut self.opacity, 0.0..=1.0).text("opacity"));
        ui.add(egui::Slider::new(&mut self.outline_px, 0.0..=5.0).text("outline (px)"));
        ui.checkbox(&mut self.show_objects, "show objects (O)");
        ui.label(
            RichText::new(if self.wgpu_overlay {
                "drawn by shaders/mask_overlay.wgsl"
            } else {
                "drawn on the CPU (no wgpu render state)"
            })
            .weak()
            .small(),
        );
    }

    fn model_tab(&mut self, ui: &mut egui::Ui) {
        ui.label(RichText::new("Base model").strong());
        match (&self.base.summary, &self.base.loading, &self.base.error) {
            (_, Some(m), _) => {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label(format!("loading {m}…"));
                });
            }
            (Some(s), None, _) => {
                egui::Grid::new("model-info").num_columns(2).show(ui, |ui| {
                    ui.label("file");
                    ui.label(&s.name)
                        .on_hover_text(s.path.display().to_string());
                    ui.end_row();
                    ui.label("type");
                    ui.label(&s.model_type);
                    ui.end_row();
                    ui.label("sha256");
                    ui.label(RichText::new(format!("{}…", short_hash(&s.sha256))).monospace());
                    ui.end_row();
                    ui.label("device");
                    ui.label(&s.device);
                    ui.end_row();
                    ui.label("loaded in");
                    ui.label(format!("{:.1} s", s.load_ms / 1e3));
                    ui.end_row();
                });
            }
            (None, None, e) => {
                if let Some(e) = e {
                    ui.colored_label(Color32::LIGHT_RED, e);
                }
                ui.label(format!(
                    "No SAM checkpoint loaded. segadapt looks in {}.",
                    self.config.model_dir.display()
                ));
                ui.label(
                    RichText::new(
                        "Download MobileSAM (hash-checked), or choose an official sam_vit_*.pth.",
                    )
                    .weak(),
                );
                self.download_ui(ui);
            }
        }
        let found = find_checkpoints(&self.config.model_dir);
        if !found.is_empty() {
            ui.label(format!("In {}:", self.config.model_dir.display()));
            for f in found {
                ui.horizontal(|ui| {
                    ui.label(
                        f.file_name()
                            .map(|n| n.to_string_lossy().to_string())
                            .unwrap_or_default(),
                    );
                    if ui.small_button("Load").clicked() {
                        self.load_model(ModelSpec {
                            path: f.clone(),
                            config: None,
                        });
                    }
                });
            }
        }
        ui.horizontal(|ui| {
            if ui.button("Choose file…").clicked() {
                self.open_dialog(DialogKind::PickModel);
            }
        });
        ui.horizontal(|ui| {
            ui.add(
                egui::TextEdit::singleline(&mut self.model_input)
                    .hint_text("or type a checkpoint path")
                    .desired_width(200.0),
            );
            if ui.button("Load").clicked() && !self.model_input.trim().is_empty() {
                let p = PathBuf::from(self.model_input.trim());
                if p.is_file() {
                    self.load_model(ModelSpec {
                        path: p,
                        config: None,
                    });
                } else {
                    self.error(format!("{} is not a file", p.display()));
                }
            }
        });
        ui.separator();
        ui.label(RichText::new("Adapters of this project").strong());
        let adapters: Vec<(String, PathBuf, String, Option<f64>, Option<f64>, bool)> = self
            .project
            .as_ref()
            .map(|p| {
                p.project
                    .adapters
                    .iter()
                    .map(|a| {
                        (
                            a.name.clone(),
                            a.path.clone(),
                            a.method.clone(),
                            a.base_dice,
                            a.best_dice,
                            a.improved,
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let active = self
            .project
            .as_ref()
            .and_then(|p| p.project.active_adapter.clone());
        if ui.radio(active.is_none(), "base model only").clicked() {
            self.select_adapter(None);
        }
        for (name, path, method, base, best, improved) in adapters {
            let sel = active.as_deref() == Some(&*path.to_string_lossy());
            let mut text = format!("{name} ({method})");
            if let (Some(b), Some(x)) = (base, best) {
                text.push_str(&format!(" Dice {b:.3} -> {x:.3}"));
            }
            let r = ui.radio(sel, text);
            let r = if improved {
                r
            } else {
                r.on_hover_text("not validated as better than the base model")
            };
            if r.clicked() && !sel {
                self.select_adapter(Some(path));
            }
        }
        if let Some(e) = &self.adapted.error {
            ui.colored_label(Color32::LIGHT_RED, e);
        }
        if let Some(s) = &self.adapted.summary
            && let Some(card) = &s.card
        {
            ui.collapsing("Model card", |ui| {
                ui.label(format!(
                    "method {} · rank {} · placement {:?}",
                    card.adapter.method.name(),
                    card.adapter.rank,
                    card.adapter.placement
                ));
                ui.label(format!(
                    "trainable {} / {} params",
                    card.params.adapter, card.params.total
                ));
                let chosen: Vec<String> = card
                    .cells
                    .iter()
                    .filter_map(|c| c.chosen.as_ref().map(|o| format!("{}: {o}", c.name)))
                    .collect();
                if !chosen.is_empty() {
                    ui.label(format!("chosen ops: {}", chosen.join(", ")));
                }
            });
        }
        let mut ab = self.ab_view;
        if ui
            .add_enabled(
                self.adapted.summary.is_some(),
                egui::Checkbox::new(&mut ab, "A/B view: base and adapted side by side (C)"),
            )
            .changed()
        {
            self.toggle_ab();
        }
    }

    fn adapt_tab(&mut self, ui: &mut egui::Ui) {
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
            match &self.plan {
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

    fn train_progress(&mut self, ui: &mut egui::Ui) {
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
        let stage_lines = |pu: &mut egui_plot::PlotUi, t: &super::train_view::TrainView| {
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

    fn alpha_heatmap(&mut self, ui: &mut egui::Ui) {
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
            for j in 0..n_ops {
                let v = row.and_then(|r| r.get(j)).copied().unwrap_or(0.0);
                let r = egui::Rect::from_min_size(
                    egui::pos2(rect.left() + label_w + j as f32 * cw, y),
                    vec2(cw - 1.0, ch - 1.0),
                );
                // scale: uniform (1/n) sits mid-range so drift is visible
                p.rect_filled(r, 1.0, heat(0.5 + 0.5 * (v * nf - 1.0) / maxdev));
                if chosen.get(name.as_str()) == Some(&ops[j].as_str()) {
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

    fn alpha_lines(&mut self, ui: &mut egui::Ui) {
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

    fn export_tab(&mut self, ui: &mut egui::Ui) {
        ui.label(RichText::new("Export").strong());
        let o = &mut self.export_options;
        ui.checkbox(&mut o.masks, "binary mask PNG per object");
        ui.checkbox(&mut o.labels, "label image per image (16-bit PNG)");
        ui.checkbox(&mut o.coco, "COCO JSON (RLE)");
        ui.checkbox(&mut o.adapter, "adapter file + model card (active adapter)");
        ui.checkbox(
            &mut o.merged,
            "merged model (safetensors, official key names)",
        );
        ui.horizontal(|ui| {
            ui.label("to");
            ui.add(egui::TextEdit::singleline(&mut self.export_dir).desired_width(200.0));
            if ui.small_button("…").clicked() {
                self.open_dialog(DialogKind::ExportDir);
            }
        });
        let busy = self.export_rx.is_some();
        ui.horizontal(|ui| {
            if ui
                .add_enabled(
                    !busy && self.project.is_some(),
                    egui::Button::new("Export now"),
                )
                .clicked()
            {
                self.start_export();
            }
            if busy {
                ui.spinner();
                ui.label("exporting…");
            }
        });
        if let Some(r) = &self.export_report {
            ui.separator();
            ui.label(format!(
                "{} files written to {}",
                r.files.len(),
                r.out.display()
            ));
            for n in &r.notes {
                ui.label(RichText::new(n).weak());
            }
            egui::CollapsingHeader::new("files")
                .default_open(false)
                .show(ui, |ui| {
                    for f in r.files.iter().take(200) {
                        ui.label(
                            RichText::new(
                                f.strip_prefix(&r.out).unwrap_or(f).display().to_string(),
                            )
                            .monospace()
                            .small(),
                        );
                    }
                });
        }
    }

    /// Download button for the default checkpoint, or the running download's progress.
    fn download_ui(&mut self, ui: &mut egui::Ui) {
        let spec = crate::models::default_model();
        match self
            .tasks
            .running(JobKind::Download)
            .then_some(self.download_progress)
        {
            Some(p) => {
                let (done, total) = p
                    .map(|p| (p.done, p.total.unwrap_or(spec.size)))
                    .unwrap_or((0, spec.size));
                let phase = p
                    .map(|p| format!("{:?}", p.phase))
                    .unwrap_or_else(|| "Connecting".into());
                ui.add(
                    egui::ProgressBar::new(done as f32 / total.max(1) as f32)
                        .desired_width(320.0)
                        .text(format!(
                            "{phase}: {:.1} / {:.1} MB",
                            done as f64 / 1e6,
                            total as f64 / 1e6
                        )),
                );
                if ui.button("Cancel download").clicked() {
                    self.cancel_download();
                }
            }
            None => {
                if ui
                    .button(format!(
                        "Download {} ({:.1} MB, sha256-checked)",
                        spec.name,
                        spec.size as f64 / 1e6
                    ))
                    .on_hover_text(spec.url)
                    .clicked()
                {
                    self.download_default_model();
                }
            }
        }
    }

    pub(super) fn welcome(&mut self, ui: &mut egui::Ui) {
        ui.vertical_centered(|ui| {
            ui.add_space(40.0);
            ui.heading(RichText::new("segadapt").size(30.0));
            ui.label("Adapt Segment Anything to your images with NAS-LoRA, on your own machine.");
            ui.add_space(24.0);
            if ui
                .add_enabled(
                    !self.tasks.running(JobKind::Demo),
                    egui::Button::new(RichText::new("Open the demo project (nuclei)").size(17.0))
                        .min_size(vec2(320.0, 40.0)),
                )
                .clicked()
            {
                self.open_demo();
            }
            if self.tasks.running(JobKind::Demo) {
                ui.horizontal(|ui| {
                    ui.add_space((ui.available_width() - 220.0).max(0.0) / 2.0);
                    ui.spinner();
                    ui.label("preparing the demo project...");
                });
            }
            ui.add_space(8.0);
            ui.horizontal(|ui| {
                ui.add_space((ui.available_width() - 330.0).max(0.0) / 2.0);
                if ui
                    .add(egui::Button::new("New project…").min_size(vec2(160.0, 30.0)))
                    .clicked()
                {
                    self.open_dialog(DialogKind::NewProject);
                }
                if ui
                    .add(egui::Button::new("Open project…").min_size(vec2(160.0, 30.0)))
                    .clicked()
                {
                    self.open_dialog(DialogKind::OpenProject);
                }
            });
            ui.add_space(8.0);
            ui.horizontal(|ui| {
                ui.add_space((ui.available_width() - 480.0).max(0.0) / 2.0);
                ui.add(
                    egui::TextEdit::singleline(&mut self.path_input)
                        .hint_text("or type a project folder")
                        .desired_width(300.0),
                );
                let p = PathBuf::from(self.path_input.trim());
                let has = !self.path_input.trim().is_empty();
                if ui.add_enabled(has, egui::Button::new("Open")).clicked() {
                    self.open_project_at(&p);
                }
                if ui.add_enabled(has, egui::Button::new("Create")).clicked() {
                    self.create_project_at(&p);
                }
            });
            if !self.settings.recent.is_empty() {
                ui.add_space(20.0);
                ui.label(RichText::new("Recent projects").strong());
                for r in self.settings.recent.clone() {
                    if ui.link(r.display().to_string()).clicked() {
                        self.open_project_at(&r);
                    }
                }
            }
            ui.add_space(24.0);
            ui.separator();
            ui.label(RichText::new("Model").strong());
            match (&self.base.summary, &self.base.loading, &self.base.error) {
                (Some(s), _, _) => {
                    ui.label(format!("{} loaded on {}", s.name, s.device));
                }
                (None, Some(m), _) => {
                    ui.horizontal(|ui| {
                        ui.add_space((ui.available_width() - 200.0).max(0.0) / 2.0);
                        ui.spinner();
                        ui.label(format!("loading {m}…"));
                    });
                }
                (None, None, err) => {
                    if let Some(e) = err {
                        ui.colored_label(Color32::LIGHT_RED, e);
                    }
                    ui.label(format!(
                        "No SAM checkpoint found in {}.",
                        self.config.model_dir.display()
                    ));
                    self.download_ui(ui);
                    ui.label(RichText::new("or choose a checkpoint:").weak());
                    if ui.button("Choose a checkpoint…").clicked() {
                        self.open_dialog(DialogKind::PickModel);
                    }
                    ui.horizontal(|ui| {
                        ui.add_space((ui.available_width() - 360.0).max(0.0) / 2.0);
                        ui.add(
                            egui::TextEdit::singleline(&mut self.model_input)
                                .hint_text("checkpoint path")
                                .desired_width(280.0),
                        );
                        if ui.button("Load").clicked() {
                            let p = PathBuf::from(self.model_input.trim());
                            if p.is_file() {
                                self.load_model(ModelSpec {
                                    path: p,
                                    config: None,
                                });
                            } else {
                                self.error(format!("{} is not a file", p.display()));
                            }
                        }
                    });
                }
            }
        });
    }

    pub(super) fn windows(&mut self, ctx: &egui::Context) {
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
                            for (k, a) in SHORTCUTS {
                                ui.label(RichText::new(*k).monospace().strong());
                                ui.label(*a);
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
                                if self.wgpu_overlay { "wgpu" } else { "cpu" }
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

    pub(super) fn toasts_ui(&mut self, ctx: &egui::Context) {
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
