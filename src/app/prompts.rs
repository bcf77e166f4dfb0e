//! The draft object: SAM prompts, brush strokes and the requests they send to the worker.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crate::project::project::mask_stats;
use crate::service::io::WriteJob;
use crate::service::worker::Job;
use crate::service::worker::{Point, PromptInput};

use super::SegApp;
use super::state::{Draft, Edit, History, Stroke};

impl SegApp {
    pub(crate) fn history(&mut self) -> Option<&mut History> {
        let id = self.current.as_ref()?.id;
        Some(self.histories.entry(id).or_default())
    }

    /// Records a draft change as one undoable edit and asks SAM again if the prompts changed.
    pub(crate) fn edit_draft(&mut self, f: impl FnOnce(&mut Draft)) {
        if self.current.is_none() {
            return;
        }
        let before = self.draft.clone();
        f(&mut self.draft);
        if self.draft.same_input(&before) {
            return;
        }
        let prompts_changed = !self.draft.same_prompts(&before);
        if prompts_changed {
            self.seq += 1;
            self.draft.seq = self.seq;
        }
        let after = self.draft.clone();
        if let Some(h) = self.history() {
            h.push(Edit::Draft { before, after });
        }
        self.overlay.draft_dirty = true;
        if prompts_changed {
            self.request_predict();
        }
    }

    pub fn can_prompt(&self) -> bool {
        self.current.as_ref().is_some_and(|c| c.rgb.is_some())
    }

    pub fn add_point(&mut self, x: f64, y: f64, positive: bool) {
        if !self.can_prompt() {
            return;
        }
        self.selected = None;
        self.edit_draft(|d| d.points.push(Point { x, y, positive }));
        self.sam.click_at = Some((self.draft.seq, Instant::now()));
    }

    pub fn set_box(&mut self, b: [f64; 4]) {
        if !self.can_prompt() {
            return;
        }
        let b = [
            b[0].min(b[2]),
            b[1].min(b[3]),
            b[0].max(b[2]),
            b[1].max(b[3]),
        ];
        self.selected = None;
        self.edit_draft(|d| d.bbox = Some(b));
        self.sam.click_at = Some((self.draft.seq, Instant::now()));
    }

    pub fn clear_prompts(&mut self) {
        if !self.draft.is_empty() {
            self.edit_draft(|d| {
                *d = Draft {
                    seq: d.seq,
                    ..Default::default()
                }
            });
        }
        self.canvas.box_drag = None;
    }

    pub fn cycle_candidate(&mut self) {
        let n = self.draft.n_candidates();
        if n > 1 {
            self.edit_draft(|d| d.choice = (d.choice + 1) % n);
        }
    }

    pub fn choose_candidate(&mut self, i: usize) {
        if i < self.draft.n_candidates() {
            self.edit_draft(|d| d.choice = i);
        }
    }

    /// SAM with no prompt at all (for adapters trained with the no-prompt mix).
    pub fn segment_without_prompts(&mut self) {
        if !self.can_prompt() {
            return;
        }
        self.selected = None;
        self.edit_draft(|d| {
            *d = Draft {
                unprompted: true,
                seq: d.seq,
                ..Default::default()
            }
        });
        self.sam.click_at = Some((self.draft.seq, Instant::now()));
    }

    pub(crate) fn request_predict(&mut self) {
        if !self.draft.has_prompts() {
            self.draft.pred = None;
            self.draft.pred_b = None;
            self.overlay.draft_dirty = true;
            return;
        }
        let Some(cur) = &self.current else { return };
        if !self.model_ready() {
            return;
        }
        let key = cur.key.clone();
        let d = &self.draft;
        let multimask = d.points.len() == 1 && d.bbox.is_none();
        for slot in self.slots() {
            let prev = if slot == self.active_slot() {
                &d.pred
            } else {
                &d.pred_b
            };
            // Refine with the previous answer's logits once several points are given.
            let mask_input = (d.points.len() >= 2)
                .then(|| {
                    prev.as_ref().and_then(|p| {
                        p.low_res
                            .get(d.choice.min(p.low_res.len().saturating_sub(1)))
                            .map(|l| l.as_ref().clone())
                    })
                })
                .flatten();
            let prompt = if d.unprompted {
                PromptInput::default()
            } else {
                PromptInput {
                    points: d.points.clone(),
                    bbox: d.bbox,
                    mask_input,
                }
            };
            self.service.worker.send(Job::Predict {
                slot,
                key: key.clone(),
                prompt,
                multimask,
                seq: d.seq,
                tiles: self.settings.tiles,
            });
        }
    }

    pub(crate) fn commit_stroke(&mut self, s: Stroke) {
        let Some((cid, w, h)) = self.current.as_ref().map(|c| (c.id, c.width, c.height)) else {
            return;
        };
        if let Some(oid) = self.selected {
            // Paint on the selected accepted object.
            let entry = self
                .project
                .as_ref()
                .and_then(|p| p.project.image(cid))
                .and_then(|i| i.objects.iter().find(|o| o.id == oid))
                .cloned();
            let old = self
                .current
                .as_ref()
                .and_then(|c| c.masks.get(&oid).cloned());
            let (Some(entry), Some(old)) = (entry, old) else {
                return;
            };
            let mut m = old.as_ref().clone();
            s.apply(&mut m, w, h);
            let Some((area, bbox)) = mask_stats(&m, w) else {
                self.error("The eraser would leave the object empty; delete it instead (Del)");
                return;
            };
            let mut new = entry.clone();
            new.area = area;
            new.bbox = bbox;
            new.prompts.painted = true;
            new.mask = self.new_mask_rel(cid, oid);
            let m = Arc::new(m);
            self.write_mask(&new.mask, m.clone());
            let e = Edit::Replace {
                before: (entry, Some(old)),
                after: (new.clone(), Some(m.clone())),
            };
            self.apply_replace(new, Some(m));
            if let Some(h) = self.history() {
                h.push(e);
            }
        } else {
            self.edit_draft(|d| d.strokes.push(Arc::new(s)));
        }
    }

    pub(crate) fn new_mask_rel(&mut self, image: u64, object: u64) -> PathBuf {
        let Some(p) = &mut self.project else {
            return PathBuf::new();
        };
        let v = p.project.take_id();
        PathBuf::from(crate::project::project::ANNOTATIONS_DIR)
            .join(format!("img{image}"))
            .join(format!("obj{object}_{v}.png"))
    }

    pub(crate) fn write_mask(&mut self, rel: &Path, mask: Arc<Vec<bool>>) {
        let (Some(p), Some(cur)) = (&self.project, &self.current) else {
            return;
        };
        self.service.writer.send(WriteJob::Mask {
            path: p.resolve(rel),
            mask,
            width: cur.width,
            height: cur.height,
        });
    }
}
