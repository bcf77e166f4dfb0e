//! The Annotate tab: tools, the current object and SAM's candidates, overlay settings.

use egui::RichText;

use crate::app::SegApp;
use crate::app::actions::Action;
use crate::app::state::Tool;

impl SegApp {
    pub(crate) fn annotate_tab(&mut self, ui: &mut egui::Ui) {
        ui.label(RichText::new("Tool").strong());
        ui.horizontal_wrapped(|ui| {
            for t in [Tool::Prompt, Tool::Brush, Tool::Eraser, Tool::Pan] {
                ui.selectable_value(&mut self.tool, t, Action::Tool(t).label_with_key());
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
                crate::app::ui::spinner(ui);
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
        self.proposals_section(ui);
        ui.separator();
        ui.label(RichText::new("Overlay").strong());
        ui.add(egui::Slider::new(&mut self.overlay.opacity, 0.0..=1.0).text("opacity"));
        ui.add(egui::Slider::new(&mut self.overlay.outline_px, 0.0..=5.0).text("outline (px)"));
        ui.checkbox(&mut self.overlay.show_objects, "show objects (O)");
        ui.label(
            RichText::new(if self.overlay.wgpu {
                "drawn by shaders/mask_overlay.wgsl"
            } else {
                "drawn on the CPU (no wgpu render state)"
            })
            .weak()
            .small(),
        );
    }
}
