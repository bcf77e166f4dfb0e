//! The Export tab.

use egui::RichText;

use crate::app::SegApp;
use crate::service::dialogs::DialogKind;

impl SegApp {
    pub(crate) fn export_tab(&mut self, ui: &mut egui::Ui) {
        ui.label(RichText::new("Export").strong());
        let o = &mut self.export_options;
        ui.checkbox(&mut o.masks, "binary mask PNG per object");
        ui.checkbox(&mut o.labels, "label image per image (16-bit PNG)");
        ui.checkbox(&mut o.coco, "COCO JSON");
        ui.add_enabled_ui(o.coco, |ui| {
            ui.checkbox(
                &mut o.coco_polygons,
                "   as polygons (holes filled) instead of RLE",
            );
        });
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
                crate::app::ui::spinner(ui);
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
        self.predict_all_section(ui);
    }

    /// "Predict all images": segment everything on every image with the active model.
    fn predict_all_section(&mut self, ui: &mut egui::Ui) {
        ui.separator();
        ui.label(RichText::new("Batch prediction").strong());
        ui.label(
            RichText::new(
                "Segment everything on every image with the model that answers clicks \
                 (base or adapted): label PNG, COCO JSON (and object PNGs if ticked above) \
                 in <folder>/predict, as `segadapt predict` writes them. Images already done \
                 with the same settings are skipped.",
            )
            .weak()
            .small(),
        );
        let busy = self.predict_rx.is_some();
        ui.horizontal(|ui| {
            let ready = !busy && self.project.is_some() && self.base.spec.is_some();
            if ui
                .add_enabled(ready, egui::Button::new("Predict all images"))
                .clicked()
            {
                self.start_predict_all();
            }
            if busy {
                crate::app::ui::spinner(ui);
                ui.label("predicting…");
                if ui.button("Stop").clicked() {
                    self.service
                        .tasks
                        .cancel(crate::service::tasks::JobKind::Predict);
                }
            }
        });
        if let Some(s) = &self.predict_summary {
            ui.label(s.line());
            ui.label(
                RichText::new(format!("COCO file: {}", s.coco_path.display()))
                    .monospace()
                    .small(),
            );
            for (name, why) in s.failed.iter().take(20) {
                ui.label(RichText::new(format!("{name}: {why}")).weak().small());
            }
        }
    }
}
