//! What every background thread of the service shares: waking the UI, a lower priority than
//! the UI thread, and one panic guard that turns a panic inside the engine into an error.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};

/// Wakes the UI from a background thread (a repaint request on the egui context, once known).
#[derive(Clone, Default)]
pub struct Waker(Arc<Mutex<Option<egui::Context>>>);

impl Waker {
    pub fn wake(&self) {
        if let Ok(g) = self.0.lock()
            && let Some(ctx) = g.as_ref()
        {
            ctx.request_repaint();
        }
    }
    pub fn set(&self, ctx: &egui::Context) {
        if let Ok(mut g) = self.0.lock()
            && g.is_none()
        {
            *g = Some(ctx.clone());
        }
    }
}

/// The nice value of compute threads (the UI thread keeps the default, 0).
pub const COMPUTE_NICENESS: i32 = 10;

/// Runs the calling thread (and the threads it spawns later) at nice [`COMPUTE_NICENESS`] or
/// lower, below the UI thread, so that
/// drawing stays smooth while the encoder or the trainer keeps every core busy. Idempotent.
/// Linux only (it keeps nice values per thread; elsewhere a no-op).
pub fn lower_thread_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: get/setpriority with PRIO_PROCESS and who = 0 read and change only the calling
    // thread's nice value.
    unsafe {
        let now = libc::getpriority(libc::PRIO_PROCESS, 0);
        let target = now.max(COMPUTE_NICENESS);
        if target != now {
            libc::setpriority(libc::PRIO_PROCESS, 0, target);
        }
    }
}

pub fn panic_message(e: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = e.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = e.downcast_ref::<String>() {
        s.clone()
    } else {
        "internal error".to_string()
    }
}

/// Runs `f`, turning an error into its message and a panic inside the engine into an error.
pub fn guarded<T>(f: impl FnOnce() -> anyhow::Result<T>) -> Result<T, String> {
    match std::panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{e:#}")),
        Err(p) => Err(format!("the engine failed: {}", panic_message(p))),
    }
}
