//! A job's side of the task registry: report progress and events, see whether it was cancelled.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::Sender;

use crate::models::Progress;
use crate::train::TrainEvent;

use super::thread::Waker;

/// What a running job reports before it ends.
pub enum JobEvent {
    Status(String),
    Train(TrainEvent),
    Download(Progress),
}

pub(super) enum Update {
    Progress(f32),
    Event(JobEvent),
}

pub struct JobContext {
    updates: Sender<Update>,
    cancel: Arc<AtomicBool>,
    waker: Waker,
}

impl JobContext {
    pub(super) fn new(updates: Sender<Update>, cancel: Arc<AtomicBool>, waker: Waker) -> Self {
        JobContext {
            updates,
            cancel,
            waker,
        }
    }

    fn send(&self, u: Update) {
        let _ = self.updates.send(u);
        self.waker.wake();
    }

    pub fn emit(&self, e: JobEvent) {
        self.send(Update::Event(e));
    }

    pub fn status(&self, s: impl Into<String>) {
        self.emit(JobEvent::Status(s.into()));
    }

    /// Fraction done, 0..=1.
    pub fn progress(&self, fraction: f32) {
        self.send(Update::Progress(fraction));
    }

    /// The flag the engine polls to stop early.
    pub fn cancel_flag(&self) -> &AtomicBool {
        &self.cancel
    }
}
