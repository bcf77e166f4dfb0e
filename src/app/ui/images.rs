//! The left panel: the project's images and the current image's objects.

use egui::{Color32, RichText, Sense, vec2};

use crate::app::SegApp;
use crate::service::dialogs::DialogKind;

impl SegApp {
    pub(crate) fn left_panel(&mut self, ui: &mut egui::Ui) {
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

    pub(crate) fn object_list(&mut self, ui: &mut egui::Ui) {
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
}
