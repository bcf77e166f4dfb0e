//! Accepted objects: accept, delete, rename, repaint, and undo / redo of every edit.

use std::sync::Arc;

use crate::project::project::{
    ObjectEntry, PointEntry, PromptRecord, mask_stats, now_secs, palette_color,
};
use crate::service::worker::Slot;

use super::SegApp;
use super::proposals::Decision;
use super::state::{Draft, Edit};

/// An object taken out of its image: its index there, its entry and its mask.
type RemovedObject = (usize, ObjectEntry, Option<Arc<Vec<bool>>>);

impl SegApp {
    /// Accepts the draft as a new object.
    pub fn accept(&mut self) {
        let Some(cur) = &self.current else { return };
        let (w, h) = (cur.width, cur.height);
        let Some(mask) = self.draft.mask(w, h) else {
            self.error("Nothing to accept: click on an object first");
            return;
        };
        let d = &self.draft;
        let prompts = PromptRecord {
            points: d
                .points
                .iter()
                .map(|p| PointEntry {
                    x: p.x,
                    y: p.y,
                    positive: p.positive,
                })
                .collect(),
            bbox: d.bbox,
            candidate: d.choice,
            painted: !d.strokes.is_empty(),
            model: self.model_name(),
        };
        let source = if d.has_prompts() { "sam" } else { "brush" };
        let Some((n, entry)) = self.new_object(&mask, prompts, source, 0) else {
            self.error("The mask is empty; add a positive point on the object");
            return;
        };
        let mask = Arc::new(mask);
        self.write_mask(&entry.mask, mask.clone());
        let draft_before = std::mem::take(&mut self.draft);
        self.seq += 1;
        self.draft.seq = self.seq;
        self.insert_object(n, entry.clone(), mask.clone());
        if let Some(h) = self.history() {
            h.push(Edit::Accept {
                object: entry,
                mask,
                index: n,
                draft_before,
            });
        }
    }

    /// The model answering prompts now, as the object's record names it.
    pub(crate) fn model_name(&self) -> Option<String> {
        let name = |s: &super::ModelState| s.summary.as_ref().map(|s| s.name.clone());
        match self.active_slot() {
            Slot::Base => name(&self.base),
            Slot::Adapted => Some(format!(
                "{} + {}",
                name(&self.base).unwrap_or_default(),
                name(&self.adapted).unwrap_or_default()
            )),
        }
    }

    /// A new object entry for `mask` on the current image, numbered as if `pending` more
    /// objects were added before it; with its index in the image's list (the end). None for
    /// an empty mask. Its mask file is still to be written.
    pub(crate) fn new_object(
        &mut self,
        mask: &[bool],
        prompts: PromptRecord,
        source: &str,
        pending: usize,
    ) -> Option<(usize, ObjectEntry)> {
        let (id, w) = self.current.as_ref().map(|c| (c.id, c.width))?;
        let (area, bbox) = mask_stats(mask, w)?;
        let p = self.project.as_mut()?;
        let oid = p.project.take_id();
        let class = p
            .project
            .classes
            .first()
            .map(|c| c.name.clone())
            .unwrap_or_else(|| "object".into());
        let n = p.project.image(id).map(|i| i.objects.len()).unwrap_or(0) + pending;
        let rel = self.new_mask_rel(id, oid);
        let entry = ObjectEntry {
            id: oid,
            label: format!("{class} {}", n + 1),
            class,
            color: palette_color(oid),
            mask: rel,
            area,
            bbox,
            prompts,
            source: source.into(),
            hidden: false,
            created: now_secs(),
        };
        Some((n, entry))
    }

    pub(crate) fn insert_object(&mut self, index: usize, entry: ObjectEntry, mask: Arc<Vec<bool>>) {
        self.insert_objects(vec![(index, entry, mask)]);
    }

    /// Inserts objects in order (each index as of after the ones before it), saving once.
    pub(crate) fn insert_objects(&mut self, objects: Vec<(usize, ObjectEntry, Arc<Vec<bool>>)>) {
        let Some(cur) = &mut self.current else { return };
        let id = cur.id;
        for (index, entry, mask) in objects {
            cur.masks.insert(entry.id, mask);
            if let Some(p) = &mut self.project
                && let Some(img) = p.project.image_mut(id)
            {
                let i = index.min(img.objects.len());
                img.objects.insert(i, entry);
            }
        }
        self.overlay.labels_dirty = true;
        self.overlay.draft_dirty = true;
        self.save_project();
    }

    pub(crate) fn remove_object(&mut self, oid: u64) -> Option<RemovedObject> {
        self.remove_objects(&[oid]).pop()
    }

    /// Removes objects, saving once; returns the ones found, in the order given.
    pub(crate) fn remove_objects(&mut self, oids: &[u64]) -> Vec<RemovedObject> {
        let mut removed = Vec::new();
        let (Some(cur), Some(p)) = (self.current.as_mut(), self.project.as_mut()) else {
            return removed;
        };
        let Some(img) = p.project.image_mut(cur.id) else {
            return removed;
        };
        for &oid in oids {
            let mask = cur.masks.remove(&oid);
            if let Some(i) = img.objects.iter().position(|o| o.id == oid) {
                removed.push((i, img.objects.remove(i), mask));
            }
            if self.selected == Some(oid) {
                self.selected = None;
            }
        }
        self.overlay.labels_dirty = true;
        self.save_project();
        removed
    }

    pub(crate) fn apply_replace(&mut self, entry: ObjectEntry, mask: Option<Arc<Vec<bool>>>) {
        let Some(cur) = &mut self.current else { return };
        let id = cur.id;
        if let Some(m) = mask {
            cur.masks.insert(entry.id, m);
        }
        if let Some(p) = &mut self.project
            && let Some(img) = p.project.image_mut(id)
            && let Some(o) = img.objects.iter_mut().find(|o| o.id == entry.id)
        {
            *o = entry;
        }
        self.overlay.labels_dirty = true;
        self.save_project();
    }

    pub fn delete_object(&mut self, oid: u64) {
        if let Some((index, object, mask)) = self.remove_object(oid)
            && let Some(h) = self.history()
        {
            h.push(Edit::Delete {
                object,
                mask,
                index,
            });
        }
    }

    pub fn delete_selected(&mut self) {
        if let Some(oid) = self.selected {
            self.delete_object(oid);
        }
    }

    /// Changes an object's metadata (label, visibility) as an undoable edit.
    pub fn update_object(&mut self, oid: u64, f: impl FnOnce(&mut ObjectEntry)) {
        let Some(cur) = &self.current else { return };
        let Some(p) = &self.project else { return };
        let Some(before) = p
            .project
            .image(cur.id)
            .and_then(|i| i.objects.iter().find(|o| o.id == oid))
            .cloned()
        else {
            return;
        };
        let mask = cur.masks.get(&oid).cloned();
        let mut after = before.clone();
        f(&mut after);
        if after == before {
            return;
        }
        self.apply_replace(after.clone(), None);
        if let Some(h) = self.history() {
            h.push(Edit::Replace {
                before: (before, mask.clone()),
                after: (after, mask),
            });
        }
    }

    pub(crate) fn restore_draft(&mut self, mut d: Draft) {
        self.seq += 1;
        let had_pred = d.pred.is_some();
        // In-flight answers for other prompts must not land on the restored draft.
        d.seq = self.seq;
        self.draft = d;
        self.overlay.draft_dirty = true;
        if !had_pred && self.draft.has_prompts() {
            self.request_predict();
        }
    }

    pub fn undo(&mut self) {
        let Some(e) = self.history().and_then(|h| h.undo.pop()) else {
            return;
        };
        match &e {
            Edit::Draft { before, .. } => self.restore_draft(before.clone()),
            Edit::Accept {
                object,
                draft_before,
                ..
            } => {
                self.remove_object(object.id);
                self.restore_draft(draft_before.clone());
            }
            Edit::Delete {
                object,
                mask,
                index,
            } => {
                if let Some(m) = mask.clone() {
                    self.insert_object(*index, object.clone(), m);
                }
            }
            Edit::Replace { before, .. } => self.apply_replace(before.0.clone(), before.1.clone()),
            Edit::AcceptProposals { set, taken } => {
                // Later objects first, so each earlier index is as it was.
                let oids: Vec<u64> = taken.iter().rev().map(|t| t.object.id).collect();
                self.remove_objects(&oids);
                let idx: Vec<usize> = taken.iter().map(|t| t.proposal).collect();
                self.mark_proposals(*set, &idx, Decision::Pending);
            }
            Edit::RejectProposals { set, proposals } => {
                self.mark_proposals(*set, proposals, Decision::Pending)
            }
        }
        if let Some(h) = self.history() {
            h.redo.push(e);
        }
    }

    pub fn redo(&mut self) {
        let Some(e) = self.history().and_then(|h| h.redo.pop()) else {
            return;
        };
        match &e {
            Edit::Draft { after, .. } => self.restore_draft(after.clone()),
            Edit::Accept {
                object,
                mask,
                index,
                ..
            } => {
                self.insert_object(*index, object.clone(), mask.clone());
                self.seq += 1;
                self.draft = Draft {
                    seq: self.seq,
                    ..Default::default()
                };
                self.overlay.draft_dirty = true;
            }
            Edit::Delete { object, .. } => {
                self.remove_object(object.id);
            }
            Edit::Replace { after, .. } => self.apply_replace(after.0.clone(), after.1.clone()),
            Edit::AcceptProposals { set, taken } => {
                let objects = taken
                    .iter()
                    .map(|t| (t.index, t.object.clone(), t.mask.clone()))
                    .collect();
                self.insert_objects(objects);
                let idx: Vec<usize> = taken.iter().map(|t| t.proposal).collect();
                self.mark_proposals(*set, &idx, Decision::Accepted);
            }
            Edit::RejectProposals { set, proposals } => {
                self.mark_proposals(*set, proposals, Decision::Rejected)
            }
        }
        if let Some(h) = self.history() {
            h.undo.push(e);
        }
    }

    pub fn can_undo(&self) -> bool {
        self.current
            .as_ref()
            .and_then(|c| self.histories.get(&c.id))
            .is_some_and(|h| !h.undo.is_empty())
    }
    pub fn can_redo(&self) -> bool {
        self.current
            .as_ref()
            .and_then(|c| self.histories.get(&c.id))
            .is_some_and(|h| !h.redo.is_empty())
    }
}
