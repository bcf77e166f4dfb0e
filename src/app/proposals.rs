//! "Propose all objects": the app's side of SAM's automatic mask generator. The worker runs
//! it on the open image with the model that answers clicks; its masks come back as
//! proposals, drawn as outlines over the image, that the user accepts (they become ordinary
//! objects) or rejects, one by one or all at once. Every decision is undoable.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::project::project::{PointEntry, PromptRecord};
use crate::service::worker::{AmgParams, Event, Job, Proposal};

use super::state::{Edit, TakenProposal};
use super::{SegApp, ToastKind};

/// What the user made of a proposal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Pending,
    Accepted,
    Rejected,
}

/// The generator's run in flight.
pub struct ProposalRun {
    pub run: u64,
    pub image: u64,
    pub started: Instant,
    /// Steps done of `total` (the embedding, then one per point batch); 0/0 until the first.
    pub done: usize,
    pub total: usize,
    pub cancel: Arc<AtomicBool>,
    pub points_per_side: usize,
    /// The model asked (objects record it; the user may switch models meanwhile).
    pub model: Option<String>,
}

/// The proposals of one finished run, on one image.
pub struct ProposalSet {
    /// The run that made them (undo entries name it).
    pub id: u64,
    pub image: u64,
    pub items: Vec<Proposal>,
    pub decided: Vec<Decision>,
    /// The proposal the keys act on.
    pub focus: Option<usize>,
    pub model: Option<String>,
    pub points_per_side: usize,
    /// From the action to the proposals on the canvas.
    pub shown_ms: f64,
    /// Masks left out because an object of the image already covers them.
    pub duplicates: usize,
}

impl ProposalSet {
    pub fn pending(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.items.len()).filter(|&i| self.decided[i] == Decision::Pending)
    }

    pub fn count(&self, d: Decision) -> usize {
        self.decided.iter().filter(|&&x| x == d).count()
    }

    /// The next pending proposal after `from` (or the first), going `step` (±1), wrapping.
    fn next_pending(&self, from: Option<usize>, step: isize) -> Option<usize> {
        let n = self.items.len() as isize;
        let start = from
            .map(|f| f as isize)
            .unwrap_or(if step > 0 { -1 } else { n });
        (1..=n)
            .map(|k| (start + k * step).rem_euclid(n) as usize)
            .find(|&i| self.decided[i] == Decision::Pending)
    }
}

/// Settings, the run in flight and the proposals shown.
pub struct Proposals {
    pub params: AmgParams,
    pub running: Option<ProposalRun>,
    pub set: Option<ProposalSet>,
    /// The pending proposal under the pointer.
    pub hover: Option<usize>,
    /// The fill drawn for the highlighted proposal: (set, index) and its texture.
    pub fill: Option<((u64, usize), egui::TextureHandle)>,
    next_run: u64,
}

impl Proposals {
    /// The official thresholds on a 16×16 grid: a quarter of the default grid's decoder work,
    /// which is what keeps it interactive on a CPU. Batches of 16 points on a CPU give a
    /// progress step and a cancel point every few seconds; a GPU takes the official 64.
    pub fn new(gpu: bool) -> Self {
        Proposals {
            params: Self::defaults(gpu),
            running: None,
            set: None,
            hover: None,
            fill: None,
            next_run: 0,
        }
    }

    pub fn defaults(gpu: bool) -> AmgParams {
        AmgParams {
            points_per_side: 16,
            points_per_batch: if gpu { 64 } else { 16 },
            ..AmgParams::default()
        }
    }
}

impl SegApp {
    /// The proposals of the image on the canvas, if any.
    pub fn shown_proposals(&self) -> Option<&ProposalSet> {
        let id = self.current.as_ref()?.id;
        self.proposals.set.as_ref().filter(|s| s.image == id)
    }

    pub fn pending_proposals(&self) -> usize {
        self.shown_proposals()
            .map(|s| s.count(Decision::Pending))
            .unwrap_or(0)
    }

    pub fn can_propose(&self) -> bool {
        self.model_ready() && self.can_prompt() && self.proposals.running.is_none()
    }

    /// Starts the automatic mask generator on the open image with the model that answers
    /// clicks. Undecided proposals of an earlier run go.
    pub fn propose_all(&mut self) {
        if self.proposals.running.is_some() {
            return;
        }
        if !self.model_ready() {
            self.error("Load a model first (Model tab)");
            return;
        }
        let Some(cur) = self.current.as_ref() else {
            return;
        };
        let Some(image) = cur.rgb.clone() else {
            self.error("The image is still loading");
            return;
        };
        if let Err(e) = self.proposals.params.validate() {
            self.error(format!("Proposal settings: {e}"));
            return;
        }
        let (id, key) = (cur.id, cur.key.clone());
        self.proposals.next_run += 1;
        let run = self.proposals.next_run;
        let cancel = Arc::new(AtomicBool::new(false));
        self.service.worker.send(Job::Propose {
            slot: self.active_slot(),
            key,
            image,
            cache_dir: self.project.as_ref().map(|p| p.cache_dir()),
            params: self.proposals.params.clone(),
            tiles: self.settings.tiles,
            run,
            cancel: cancel.clone(),
        });
        self.proposals.set = None;
        self.proposals.hover = None;
        self.proposals.running = Some(ProposalRun {
            run,
            image: id,
            started: Instant::now(),
            done: 0,
            total: 0,
            cancel,
            points_per_side: self.proposals.params.points_per_side,
            model: self.model_name(),
        });
    }

    /// Stops the run in flight after its current point batch.
    pub fn cancel_proposals(&mut self) {
        if let Some(r) = &self.proposals.running {
            r.cancel.store(true, Ordering::Relaxed);
        }
    }

    /// Leaving the image: its run stops and its undecided proposals go.
    pub(crate) fn drop_proposals(&mut self) {
        self.cancel_proposals();
        self.proposals.running = None;
        self.proposals.set = None;
        self.proposals.hover = None;
    }

    pub(crate) fn on_proposal_event(&mut self, e: Event) {
        let is_run =
            |app: &SegApp, run: u64| app.proposals.running.as_ref().is_some_and(|r| r.run == run);
        match e {
            Event::ProposeProgress { run, done, total } => {
                if let Some(r) = self.proposals.running.as_mut().filter(|r| r.run == run) {
                    (r.done, r.total) = (done, total);
                }
            }
            Event::Proposed {
                run,
                key,
                proposals,
                ms,
            } if is_run(self, run) => {
                let r = self.proposals.running.take().expect("checked");
                let shown_ms = r.started.elapsed().as_secs_f64() * 1e3;
                tracing::info!(
                    "proposals: {} from {}² points, generator {ms:.0} ms, action to shown {shown_ms:.0} ms",
                    proposals.len(),
                    r.points_per_side
                );
                // Re-running on a partly annotated image proposes only what is new.
                let total = proposals.len();
                let items: Vec<Proposal> = proposals
                    .into_iter()
                    .filter(|p| !self.covered_by_an_object(p))
                    .collect();
                let n = items.len();
                let mut set = ProposalSet {
                    id: run,
                    image: key.id,
                    decided: vec![Decision::Pending; n],
                    duplicates: total - n,
                    items,
                    focus: None,
                    model: r.model,
                    points_per_side: r.points_per_side,
                    shown_ms,
                };
                set.focus = set.next_pending(None, 1);
                if total == 0 {
                    self.toast(
                        ToastKind::Info,
                        "No proposals passed the thresholds; lower them in Settings…",
                    );
                }
                self.proposals.set = Some(set);
            }
            Event::ProposeCancelled { run } if is_run(self, run) => {
                self.proposals.running = None;
                self.toast(ToastKind::Info, "Proposing cancelled");
            }
            Event::ProposeError { run, error } if is_run(self, run) => {
                self.proposals.running = None;
                self.error(format!("Propose all objects failed: {error}"));
            }
            _ => {}
        }
    }

    /// Sets the decision of proposals of the run `set` (from undo/redo too).
    pub(crate) fn mark_proposals(&mut self, set: u64, idx: &[usize], d: Decision) {
        if let Some(s) = self.proposals.set.as_mut().filter(|s| s.id == set) {
            for &i in idx {
                if let Some(x) = s.decided.get_mut(i) {
                    *x = d;
                }
            }
            if d == Decision::Pending {
                s.focus = idx.first().copied().or(s.focus);
            } else if s.focus.is_none_or(|f| s.decided[f] != Decision::Pending) {
                s.focus = s.next_pending(s.focus, 1);
            }
        }
        self.proposals.hover = None;
    }

    /// Makes objects of pending proposals (one undoable edit).
    pub fn accept_proposals(&mut self, idx: &[usize]) {
        let Some(s) = self.shown_proposals() else {
            return;
        };
        let (set, model) = (s.id, s.model.clone());
        let Some((w, h)) = self.current.as_ref().map(|c| (c.width, c.height)) else {
            return;
        };
        let picked: Vec<(usize, Proposal)> = idx
            .iter()
            .filter(|&&i| s.decided.get(i) == Some(&Decision::Pending))
            .map(|&i| (i, s.items[i].clone()))
            .collect();
        let mut taken = Vec::new();
        for (i, p) in picked {
            let prompts = PromptRecord {
                points: vec![PointEntry {
                    x: p.point[0],
                    y: p.point[1],
                    positive: true,
                }],
                bbox: None,
                candidate: 0,
                painted: false,
                model: model.clone(),
            };
            let mask = Arc::new(p.mask.to_full(w, h));
            if let Some((index, object)) = self.new_object(&mask, prompts, "sam-auto", taken.len())
            {
                self.write_mask(&object.mask, mask.clone());
                taken.push(TakenProposal {
                    proposal: i,
                    object,
                    mask,
                    index,
                });
            }
        }
        if taken.is_empty() {
            return;
        }
        let objects = taken
            .iter()
            .map(|t| (t.index, t.object.clone(), t.mask.clone()))
            .collect();
        self.insert_objects(objects);
        let idx: Vec<usize> = taken.iter().map(|t| t.proposal).collect();
        self.mark_proposals(set, &idx, Decision::Accepted);
        if let Some(h) = self.history() {
            h.push(Edit::AcceptProposals { set, taken });
        }
    }

    pub fn reject_proposals(&mut self, idx: &[usize]) {
        let Some(s) = self.shown_proposals() else {
            return;
        };
        let set = s.id;
        let idx: Vec<usize> = idx
            .iter()
            .copied()
            .filter(|&i| s.decided.get(i) == Some(&Decision::Pending))
            .collect();
        if idx.is_empty() {
            return;
        }
        self.mark_proposals(set, &idx, Decision::Rejected);
        if let Some(h) = self.history() {
            h.push(Edit::RejectProposals {
                set,
                proposals: idx,
            });
        }
    }

    fn all_pending(&self) -> Vec<usize> {
        self.shown_proposals()
            .map(|s| s.pending().collect())
            .unwrap_or_default()
    }

    pub fn accept_all_proposals(&mut self) {
        let all = self.all_pending();
        self.accept_proposals(&all);
    }

    pub fn reject_all_proposals(&mut self) {
        let all = self.all_pending();
        self.reject_proposals(&all);
    }

    fn focused_proposal(&self) -> Option<usize> {
        let s = self.shown_proposals()?;
        s.focus.filter(|&f| s.decided[f] == Decision::Pending)
    }

    pub fn accept_focused_proposal(&mut self) {
        if let Some(f) = self.focused_proposal() {
            self.accept_proposals(&[f]);
        }
    }

    pub fn reject_focused_proposal(&mut self) {
        if let Some(f) = self.focused_proposal() {
            self.reject_proposals(&[f]);
        }
    }

    /// Moves the focus to the next (`step` = 1) or previous (-1) pending proposal.
    pub fn focus_proposal(&mut self, step: isize) {
        let Some(cur) = self.current.as_ref().map(|c| c.id) else {
            return;
        };
        if let Some(s) = self.proposals.set.as_mut().filter(|s| s.image == cur) {
            s.focus = s.next_pending(s.focus, step);
        }
    }

    /// Whether an object of the open image matches `p` (mask IoU ≥ [`DUPLICATE_IOU`]).
    fn covered_by_an_object(&self, p: &Proposal) -> bool {
        let (Some(cur), Some(img)) = (&self.current, self.current_entry()) else {
            return false;
        };
        img.objects.iter().any(|o| {
            cur.masks
                .get(&o.id)
                .is_some_and(|m| p.mask.iou_with(m, o.bbox, cur.width) >= DUPLICATE_IOU)
        })
    }

    /// The smallest pending proposal containing image pixel `p` (masks nest: the smallest is
    /// the most specific one under the pointer).
    pub fn proposal_at(&self, p: [f32; 2]) -> Option<usize> {
        let s = self.shown_proposals()?;
        let cur = self.current.as_ref()?;
        let (x, y) = (p[0].floor(), p[1].floor());
        if x < 0.0 || y < 0.0 || x >= cur.width as f32 || y >= cur.height as f32 {
            return None;
        }
        s.pending()
            .filter(|&i| s.items[i].mask.get(x as usize, y as usize))
            .min_by_key(|&i| s.items[i].area)
    }
}

/// A proposal this close to an existing object is that object again.
const DUPLICATE_IOU: f32 = 0.8;
