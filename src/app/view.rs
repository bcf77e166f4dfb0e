//! The image on the canvas, the view transform and the overlay data built for it.

use std::collections::HashMap;
use std::sync::Arc;

use egui::TextureHandle;
use image::RgbImage;

use crate::project::project::ObjectEntry;
use crate::service::worker::ImageKey;

use super::SegApp;
use super::overlay::{self, CpuOverlay, OverlayData, OverlayParams};
use super::state::Stroke;

/// The image on the canvas.
pub struct ImageView {
    pub id: u64,
    pub key: ImageKey,
    pub width: usize,
    pub height: usize,
    pub rgb: Option<Arc<RgbImage>>,
    pub texture: Option<TextureHandle>,
    /// Object id → mask.
    pub masks: HashMap<u64, Arc<Vec<bool>>>,
    pub error: Option<String>,
}

/// Canvas view: screen points per image pixel and the image origin relative to the canvas.
#[derive(Clone, Copy, Debug)]
pub struct ViewXform {
    pub zoom: f32,
    pub offset: egui::Vec2,
}

/// How the canvas shows the image, and the gesture in progress.
pub struct CanvasView {
    pub view: ViewXform,
    pub fit_pending: bool,
    /// The user zoomed or panned since the last fit (no automatic refit on resize then).
    pub view_touched: bool,
    pub rect: Option<egui::Rect>,
    pub space_pan: bool,
    /// In-progress box drag (image coords) and brush stroke.
    pub box_drag: Option<([f32; 2], [f32; 2])>,
    pub stroke: Option<Stroke>,
    pub hover_image: Option<[f32; 2]>,
}

impl Default for CanvasView {
    fn default() -> Self {
        CanvasView {
            view: ViewXform {
                zoom: 1.0,
                offset: egui::Vec2::ZERO,
            },
            fit_pending: true,
            view_touched: false,
            rect: None,
            space_pan: false,
            box_drag: None,
            stroke: None,
            hover_image: None,
        }
    }
}

/// The mask overlay: its settings, the data built for the current image and what changed.
pub struct OverlayState {
    pub data: Option<OverlayData>,
    pub opacity: f32,
    pub outline_px: f32,
    pub show_objects: bool,
    /// The accepted objects changed: labels to rebuild.
    pub labels_dirty: bool,
    pub draft_dirty: bool,
    pub draft_b_mask: Option<Arc<Vec<bool>>>,
    labels_version: u64,
    draft_version: u64,
    /// Label index (1-based) of each visible object id in the overlay.
    pub label_of: HashMap<u64, u16>,
    pub object_at_label: Vec<u64>,
    pub cpu: [CpuOverlay; 2],
    /// Drawn by the WGSL shader (else on the CPU).
    pub wgpu: bool,
}

impl OverlayState {
    pub fn new(wgpu: bool) -> Self {
        OverlayState {
            data: None,
            opacity: 0.45,
            outline_px: 1.5,
            show_objects: true,
            labels_dirty: true,
            draft_dirty: true,
            draft_b_mask: None,
            labels_version: 0,
            draft_version: 0,
            label_of: HashMap::new(),
            object_at_label: Vec::new(),
            cpu: Default::default(),
            wgpu,
        }
    }
}

impl SegApp {
    pub(crate) fn refresh_overlay(&mut self) {
        let Some(cur) = &self.current else {
            self.overlay.data = None;
            return;
        };
        let (w, h) = (cur.width, cur.height);
        let objects: Vec<ObjectEntry> = self
            .project
            .as_ref()
            .and_then(|p| p.project.image(cur.id))
            .map(|i| i.objects.clone())
            .unwrap_or_default();
        if self.overlay.labels_dirty || self.overlay.data.is_none() {
            self.overlay.labels_dirty = false;
            self.overlay.labels_version += 1;
            self.overlay.label_of.clear();
            self.overlay.object_at_label = vec![0];
            let mut palette = vec![[0u8; 4]];
            let mut masks: Vec<(u16, &[bool])> = Vec::new();
            for o in objects.iter().filter(|o| !o.hidden) {
                if let Some(m) = cur.masks.get(&o.id) {
                    let k = palette.len() as u16;
                    if k == u16::MAX {
                        break;
                    }
                    palette.push([o.color[0], o.color[1], o.color[2], 255]);
                    self.overlay.label_of.insert(o.id, k);
                    self.overlay.object_at_label.push(o.id);
                    masks.push((k, m.as_slice()));
                }
            }
            let labels = overlay::build_labels(w, h, &masks);
            let prev = self.overlay.data.take();
            self.overlay.data = Some(OverlayData {
                width: w as u32,
                height: h as u32,
                labels: Arc::new(labels),
                labels_version: self.overlay.labels_version,
                palette: Arc::new(palette),
                draft: prev.as_ref().and_then(|p| p.draft.clone()),
                draft_version: prev.map(|p| p.draft_version).unwrap_or(0),
            });
        }
        if self.overlay.draft_dirty {
            self.overlay.draft_dirty = false;
            self.overlay.draft_version += 1;
            self.draft_mask = self.draft.mask(w, h).map(Arc::new);
            self.overlay.draft_b_mask = self.draft.mask_b(w, h);
            if let Some(o) = &mut self.overlay.data {
                o.draft = self.draft_mask.clone();
                o.draft_version = self.overlay.draft_version;
            }
        }
    }

    /// Overlay of the B side of the A/B view: same objects, the other model's draft.
    pub fn overlay_b(&self) -> Option<OverlayData> {
        let mut o = self.overlay.data.clone()?;
        o.draft = self.overlay.draft_b_mask.clone();
        o.draft_version = self.overlay.draft_version;
        Some(o)
    }

    pub fn overlay_params(&self) -> OverlayParams {
        OverlayParams {
            opacity: self.overlay.opacity,
            outline_px: self.overlay.outline_px,
            selected: self
                .selected
                .and_then(|s| self.overlay.label_of.get(&s).copied())
                .unwrap_or(0) as u32,
            show_objects: self.overlay.show_objects,
            show_draft: true,
            draft_color: [255, 220, 40],
        }
    }
}
