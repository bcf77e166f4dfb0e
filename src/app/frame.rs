//! Frame timing for the debug overlay and the responsiveness report.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::SegApp;

/// Frame timing for the debug overlay and the responsiveness report.
#[derive(Default)]
pub struct FrameStats {
    pub last_start: Option<Instant>,
    /// (interval between frames, time to build the UI) in ms.
    pub recent: VecDeque<(f32, f32)>,
    pub max_build_busy_ms: f32,
    pub max_interval_busy_ms: f32,
    /// Frame intervals over 100 ms while background work ran.
    pub slow_busy_frames: u64,
    pub frames: u64,
}

impl SegApp {
    /// Is background work running (for the responsiveness numbers)?
    pub fn busy(&self) -> bool {
        !self.sam.embedding.is_empty() || self.train.running() || self.base.loading.is_some()
    }

    pub(crate) fn frame_begin(&mut self) {
        let now = Instant::now();
        if let Some(last) = self.frame.last_start {
            let dt = now.duration_since(last).as_secs_f32() * 1e3;
            self.frame.recent.push_back((dt, 0.0));
            if self.busy() {
                self.frame.max_interval_busy_ms = self.frame.max_interval_busy_ms.max(dt);
                if dt > 100.0 {
                    self.frame.slow_busy_frames += 1;
                }
            }
        }
        self.frame.last_start = Some(now);
        while self.frame.recent.len() > 240 {
            self.frame.recent.pop_front();
        }
    }

    pub(crate) fn frame_end(&mut self, build: Duration) {
        let ms = build.as_secs_f32() * 1e3;
        if let Some(l) = self.frame.recent.back_mut() {
            l.1 = ms;
        }
        self.frame.frames += 1;
        if self.busy() {
            self.frame.max_build_busy_ms = self.frame.max_build_busy_ms.max(ms);
        }
    }

    /// (mean, max) UI build time over the recent frames, in ms.
    pub fn frame_numbers(&self) -> (f32, f32) {
        let v: Vec<f32> = self.frame.recent.iter().map(|r| r.1).collect();
        if v.is_empty() {
            return (0.0, 0.0);
        }
        (
            v.iter().sum::<f32>() / v.len() as f32,
            v.iter().copied().fold(0.0, f32::max),
        )
    }
}
