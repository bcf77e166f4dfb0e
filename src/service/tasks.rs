//! The task registry: every finite background job (training, export, a download, the demo
//! project, an image import, a file dialog) runs on its own thread under one id, reports typed
//! events and progress while it runs, can be cancelled, and ends with one typed result. A job
//! that panics ends with an error result; the UI keeps running.

use crate::predict::run::RunSummary;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::Instant;

use crate::project::project::{ImageEntry, OpenProject};
use crate::train::TrainOutcome;

use super::context::{JobContext, JobEvent, Update};
use super::dialogs::{DialogKind, Picked};
use super::export::ExportReport;
use super::jobs::Downloaded;
use super::thread::{Waker, guarded, lower_thread_priority};

pub type TaskId = u64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JobKind {
    Train,
    Export,
    Predict,
    Download,
    Demo,
    Import,
    Dialog,
}

impl JobKind {
    fn thread_name(self) -> &'static str {
        match self {
            JobKind::Train => "trainer",
            JobKind::Export => "export",
            JobKind::Predict => "predict",
            JobKind::Download => "download",
            JobKind::Demo => "demo",
            JobKind::Import => "import",
            JobKind::Dialog => "dialog",
        }
    }
}

/// What a job hands back when it ends.
pub enum JobOutput {
    /// None: cancelled (a resumable state is on disk).
    Trained(Option<TrainOutcome>),
    Exported(ExportReport),
    Predicted(RunSummary),
    Downloaded(PathBuf),
    Demo(OpenProject),
    Imported(Vec<Result<ImageEntry, String>>),
    Picked(DialogKind, Vec<PathBuf>),
}

impl From<Option<TrainOutcome>> for JobOutput {
    fn from(o: Option<TrainOutcome>) -> Self {
        JobOutput::Trained(o)
    }
}

impl From<ExportReport> for JobOutput {
    fn from(r: ExportReport) -> Self {
        JobOutput::Exported(r)
    }
}

impl From<RunSummary> for JobOutput {
    fn from(s: RunSummary) -> Self {
        JobOutput::Predicted(s)
    }
}

impl From<Downloaded> for JobOutput {
    fn from(d: Downloaded) -> Self {
        JobOutput::Downloaded(d.0)
    }
}

impl From<OpenProject> for JobOutput {
    fn from(p: OpenProject) -> Self {
        JobOutput::Demo(p)
    }
}

impl From<Vec<Result<ImageEntry, String>>> for JobOutput {
    fn from(list: Vec<Result<ImageEntry, String>>) -> Self {
        JobOutput::Imported(list)
    }
}

impl From<Picked> for JobOutput {
    fn from(p: Picked) -> Self {
        JobOutput::Picked(p.kind, p.paths)
    }
}

/// One message of the registry to the UI.
pub enum TaskReport {
    Event {
        id: TaskId,
        kind: JobKind,
        event: JobEvent,
    },
    Finished {
        id: TaskId,
        kind: JobKind,
        result: Result<JobOutput, String>,
    },
}

/// A running job as the UI sees it.
pub struct Task {
    pub id: TaskId,
    pub kind: JobKind,
    pub label: String,
    pub started: Instant,
    pub status: String,
    pub progress: Option<f32>,
    cancel: Arc<AtomicBool>,
    updates: Receiver<Update>,
    done: Receiver<Result<JobOutput, String>>,
}

impl Task {
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}

pub struct Tasks {
    next: TaskId,
    tasks: Vec<Task>,
    waker: Waker,
}

impl Tasks {
    pub fn new(waker: Waker) -> Self {
        Tasks {
            next: 1,
            tasks: Vec::new(),
            waker,
        }
    }

    /// Starts `job` on its own thread (below the UI's priority).
    pub fn spawn<T: Into<JobOutput>>(
        &mut self,
        kind: JobKind,
        label: impl Into<String>,
        job: impl FnOnce(&JobContext) -> anyhow::Result<T> + Send + 'static,
    ) -> TaskId {
        let id = self.next;
        self.next += 1;
        let (updates_tx, updates) = std::sync::mpsc::channel();
        let (done_tx, done) = std::sync::mpsc::channel();
        let cancel = Arc::new(AtomicBool::new(false));
        let ctx = JobContext::new(updates_tx, cancel.clone(), self.waker.clone());
        let waker = self.waker.clone();
        let result_tx = done_tx.clone();
        let spawned = std::thread::Builder::new()
            .name(kind.thread_name().into())
            .spawn(move || {
                lower_thread_priority();
                let result = guarded(|| job(&ctx).map(Into::into));
                let _ = result_tx.send(result);
                waker.wake();
            });
        if let Err(e) = spawned {
            let _ = done_tx.send(Err(format!("cannot start a thread: {e}")));
        }
        self.tasks.push(Task {
            id,
            kind,
            label: label.into(),
            started: Instant::now(),
            status: String::new(),
            progress: None,
            cancel,
            updates,
            done,
        });
        id
    }

    /// Everything the jobs reported since the last call, in order; finished jobs leave.
    pub fn poll(&mut self) -> Vec<TaskReport> {
        let mut out = Vec::new();
        self.tasks.retain_mut(|t| {
            // A job's updates are all sent before its result: read the result first, then
            // the updates, and none is missed.
            let done = t.done.try_recv();
            while let Ok(u) = t.updates.try_recv() {
                match u {
                    Update::Progress(f) => t.progress = Some(f.clamp(0.0, 1.0)),
                    Update::Event(event) => {
                        if let JobEvent::Status(s) = &event {
                            t.status = s.clone();
                        }
                        out.push(TaskReport::Event {
                            id: t.id,
                            kind: t.kind,
                            event,
                        });
                    }
                }
            }
            let result = match done {
                Ok(result) => result,
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => Err("the job ended without a result".into()),
            };
            out.push(TaskReport::Finished {
                id: t.id,
                kind: t.kind,
                result,
            });
            false
        });
        out
    }

    /// The running job of this kind, if any.
    pub fn get(&self, kind: JobKind) -> Option<&Task> {
        self.tasks.iter().find(|t| t.kind == kind)
    }

    pub fn running(&self, kind: JobKind) -> bool {
        self.get(kind).is_some()
    }

    pub fn cancel(&self, kind: JobKind) {
        self.tasks
            .iter()
            .filter(|t| t.kind == kind)
            .for_each(Task::cancel);
    }

    pub fn iter(&self) -> impl Iterator<Item = &Task> {
        self.tasks.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait(tasks: &mut Tasks) -> Vec<TaskReport> {
        let mut all = Vec::new();
        let t = Instant::now();
        while !tasks.is_empty() && t.elapsed().as_secs() < 10 {
            all.extend(tasks.poll());
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        all
    }

    #[test]
    fn a_panicking_job_ends_with_an_error_and_others_go_on() {
        let mut tasks = Tasks::new(Waker::default());
        tasks.spawn(JobKind::Demo, "boom", |_| -> anyhow::Result<Downloaded> {
            panic!("boom")
        });
        tasks.spawn(JobKind::Download, "ok", |ctx| {
            ctx.status("half");
            ctx.progress(0.5);
            Ok(Downloaded(PathBuf::from("x")))
        });
        let reports = wait(&mut tasks);
        let mut errors = Vec::new();
        let mut done = Vec::new();
        for r in reports {
            if let TaskReport::Finished { kind, result, .. } = r {
                match result {
                    Err(e) => errors.push((kind, e)),
                    Ok(JobOutput::Downloaded(p)) => done.push(p),
                    Ok(_) => panic!("unexpected output"),
                }
            }
        }
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].0, JobKind::Demo);
        assert!(errors[0].1.contains("boom"), "{}", errors[0].1);
        assert_eq!(done, vec![PathBuf::from("x")]);
    }

    #[test]
    fn cancel_reaches_the_job() {
        let mut tasks = Tasks::new(Waker::default());
        tasks.spawn(JobKind::Train, "loop", |ctx| {
            while !ctx.cancel_flag().load(Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            Ok(None::<TrainOutcome>)
        });
        assert!(tasks.running(JobKind::Train));
        tasks.cancel(JobKind::Train);
        let reports = wait(&mut tasks);
        assert!(matches!(
            reports.last(),
            Some(TaskReport::Finished {
                result: Ok(JobOutput::Trained(None)),
                ..
            })
        ));
    }
}
