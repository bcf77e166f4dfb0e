//! Annotation state the UI edits: the draft object (prompts + SAM's answer + brush strokes),
//! tools, and the undo/redo history.

use std::sync::Arc;

use crate::project::project::ObjectEntry;
use crate::service::worker::Point;

use crate::service::worker::PredView;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    /// Left click: positive point, right click: negative point, drag: box.
    Prompt,
    Brush,
    Eraser,
    Pan,
}

impl Tool {
    pub fn name(&self) -> &'static str {
        match self {
            Tool::Prompt => "SAM prompts",
            Tool::Brush => "Brush",
            Tool::Eraser => "Eraser",
            Tool::Pan => "Pan",
        }
    }
}

/// One brush or eraser stroke in image pixels.
#[derive(Clone, Debug, PartialEq)]
pub struct Stroke {
    pub add: bool,
    pub radius: f32,
    pub points: Vec<[f32; 2]>,
}

impl Stroke {
    /// Paints the stroke into a row-major mask.
    pub fn apply(&self, mask: &mut [bool], width: usize, height: usize) {
        let r = self.radius.max(0.5);
        let mut stamp = |cx: f32, cy: f32| {
            let (x0, x1) = (
                ((cx - r).floor().max(0.0)) as usize,
                ((cx + r).ceil() as isize).min(width as isize - 1),
            );
            let (y0, y1) = (
                ((cy - r).floor().max(0.0)) as usize,
                ((cy + r).ceil() as isize).min(height as isize - 1),
            );
            if x1 < 0 || y1 < 0 {
                return;
            }
            for y in y0..=y1 as usize {
                for x in x0..=x1 as usize {
                    let (dx, dy) = (x as f32 + 0.5 - cx, y as f32 + 0.5 - cy);
                    if dx * dx + dy * dy <= r * r {
                        mask[y * width + x] = self.add;
                    }
                }
            }
        };
        let pts = &self.points;
        if pts.len() == 1 {
            stamp(pts[0][0], pts[0][1]);
        }
        for w in pts.windows(2) {
            let (a, b) = (w[0], w[1]);
            let len = ((b[0] - a[0]).powi(2) + (b[1] - a[1]).powi(2)).sqrt();
            let n = (len / (r * 0.5)).ceil().max(1.0) as usize;
            for i in 0..=n {
                let t = i as f32 / n as f32;
                stamp(a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t);
            }
        }
    }
}

/// The object being made: prompts, SAM's current answer and manual strokes on top.
#[derive(Clone, Debug, Default)]
pub struct Draft {
    pub points: Vec<Point>,
    pub bbox: Option<[f64; 4]>,
    /// Answer of the active model for these prompts.
    pub pred: Option<Arc<PredView>>,
    /// Answer of the other model (A/B view).
    pub pred_b: Option<Arc<PredView>>,
    /// Chosen candidate when SAM returned several.
    pub choice: usize,
    pub strokes: Vec<Arc<Stroke>>,
    /// "Segment without prompts": SAM answers with no point and no box.
    pub unprompted: bool,
    /// Prompt version the predictions must answer; older answers are dropped.
    pub seq: u64,
}

impl Draft {
    pub fn has_prompts(&self) -> bool {
        !self.points.is_empty() || self.bbox.is_some() || self.unprompted
    }
    pub fn is_empty(&self) -> bool {
        !self.has_prompts() && self.strokes.is_empty() && self.pred.is_none()
    }
    /// Several candidates to cycle through.
    pub fn n_candidates(&self) -> usize {
        self.pred.as_ref().map(|p| p.masks.len()).unwrap_or(0)
    }
    /// The mask this draft stands for: SAM's chosen candidate, then the strokes.
    pub fn mask(&self, width: usize, height: usize) -> Option<Vec<bool>> {
        let mut m = match &self.pred {
            Some(p) if self.has_prompts() && !p.masks.is_empty() && p.size == [height, width] => {
                p.masks[self.choice.min(p.masks.len() - 1)].as_ref().clone()
            }
            _ => {
                if self.strokes.is_empty() {
                    return None;
                }
                vec![false; width * height]
            }
        };
        for s in &self.strokes {
            s.apply(&mut m, width, height);
        }
        Some(m)
    }
    /// The B-side mask (no strokes: A/B compares models).
    pub fn mask_b(&self, width: usize, height: usize) -> Option<Arc<Vec<bool>>> {
        match &self.pred_b {
            Some(p) if self.has_prompts() && !p.masks.is_empty() && p.size == [height, width] => {
                Some(p.masks[self.choice.min(p.masks.len() - 1)].clone())
            }
            _ => None,
        }
    }
    pub fn same_prompts(&self, o: &Draft) -> bool {
        self.points == o.points && self.bbox == o.bbox && self.unprompted == o.unprompted
    }
    /// Same prompts and strokes (predictions aside).
    pub fn same_input(&self, o: &Draft) -> bool {
        self.points == o.points
            && self.bbox == o.bbox
            && self.strokes == o.strokes
            && self.choice == o.choice
            && self.unprompted == o.unprompted
    }
}

/// An undoable edit of one image's annotations.
#[derive(Clone, Debug)]
pub enum Edit {
    Draft {
        before: Draft,
        after: Draft,
    },
    Accept {
        object: ObjectEntry,
        mask: Arc<Vec<bool>>,
        index: usize,
        draft_before: Draft,
    },
    Delete {
        object: ObjectEntry,
        mask: Option<Arc<Vec<bool>>>,
        index: usize,
    },
    /// Mask replaced (brush on an accepted object) or metadata changed (label, visibility).
    Replace {
        before: (ObjectEntry, Option<Arc<Vec<bool>>>),
        after: (ObjectEntry, Option<Arc<Vec<bool>>>),
    },
    /// Proposals of the run `set` accepted as objects (one, or all at once).
    AcceptProposals {
        set: u64,
        taken: Vec<TakenProposal>,
    },
    /// Proposals of the run `set` rejected (undo offers them again).
    RejectProposals {
        set: u64,
        proposals: Vec<usize>,
    },
}

/// A proposal that became an object: its index in its run, the object and where it sits.
#[derive(Clone, Debug)]
pub struct TakenProposal {
    pub proposal: usize,
    pub object: ObjectEntry,
    pub mask: Arc<Vec<bool>>,
    pub index: usize,
}

impl Edit {
    pub fn describe(&self) -> String {
        match self {
            Edit::Draft { .. } => "prompt edit".into(),
            Edit::Accept { object, .. } => format!("accept '{}'", object.label),
            Edit::Delete { object, .. } => format!("delete '{}'", object.label),
            Edit::Replace { after, .. } => format!("edit '{}'", after.0.label),
            Edit::AcceptProposals { taken, .. } => format!("accept {} proposals", taken.len()),
            Edit::RejectProposals { proposals, .. } => {
                format!("reject {} proposals", proposals.len())
            }
        }
    }
}

#[derive(Default, Debug)]
pub struct History {
    pub undo: Vec<Edit>,
    pub redo: Vec<Edit>,
}

const MAX_HISTORY: usize = 500;

impl History {
    pub fn push(&mut self, e: Edit) {
        self.undo.push(e);
        self.redo.clear();
        if self.undo.len() > MAX_HISTORY {
            self.undo.remove(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stroke_paints_a_disc_and_a_line() {
        let (w, h) = (20, 10);
        let mut m = vec![false; w * h];
        Stroke {
            add: true,
            radius: 2.0,
            points: vec![[5.0, 5.0]],
        }
        .apply(&mut m, w, h);
        assert!(m[5 * w + 5] && !m[0]);
        Stroke {
            add: true,
            radius: 1.0,
            points: vec![[2.0, 2.0], [18.0, 2.0]],
        }
        .apply(&mut m, w, h);
        assert!(m[2 * w + 10] && m[2 * w + 17]);
        Stroke {
            add: false,
            radius: 3.0,
            points: vec![[5.0, 5.0]],
        }
        .apply(&mut m, w, h);
        assert!(!m[5 * w + 5]);
    }
}
