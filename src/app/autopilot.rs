//! Scripted sessions for reproducible screenshots (`SEGADAPT_AUTOPILOT=annotate|train|ab|large`,
//! used by `assets/screenshots/take_screenshots.sh`). The autopilot only calls the same
//! methods the buttons and clicks call.

use std::time::{Duration, Instant};

use super::{SegApp, Tab};
use crate::adapt::config::Method;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scene {
    /// Demo project, a few clicks on the unannotated image, one accepted, one in progress.
    Annotate,
    /// Demo project, NAS-LoRA training running (Adapt panel with the α heatmap).
    Train,
    /// Demo project, the newest adapter selected, A/B view on the same prompts.
    Ab,
    /// A new project under the cache with one large image (`SEGADAPT_AUTOPILOT_IMAGE`), boxes
    /// (`SEGADAPT_AUTOPILOT_BOXES`: `x0,y0,x1,y1;…`) decoded in their tiles, all but the
    /// last accepted; 5 s after that `SEGADAPT_AUTOPILOT_ZOOM=x,y,zoom` centres the view on x, y,
    /// then `SEGADAPT_AUTOPILOT_PROPOSE=n` proposes all objects with n points per side.
    Large,
}

impl Scene {
    pub fn parse(s: &str) -> Option<Scene> {
        match s.trim() {
            "annotate" => Some(Scene::Annotate),
            "train" => Some(Scene::Train),
            "ab" => Some(Scene::Ab),
            "large" => Some(Scene::Large),
            _ => None,
        }
    }
}

pub struct Autopilot {
    pub scene: Scene,
    stage: usize,
    at: Instant,
    /// Training steps for the Train scene (`SEGADAPT_AUTOPILOT_STEPS`, default 40).
    pub steps: usize,
    /// Frame statistics go to stderr every few seconds (the responsiveness report).
    last_log: Instant,
}

impl Autopilot {
    pub fn new(scene: Scene) -> Self {
        let steps = std::env::var("SEGADAPT_AUTOPILOT_STEPS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(40);
        Autopilot {
            scene,
            stage: 0,
            at: Instant::now(),
            steps,
            last_log: Instant::now(),
        }
    }
}

impl SegApp {
    fn ready(&self) -> bool {
        self.current_embedded() && self.draft.pred.is_none() != self.draft.has_prompts()
    }

    /// Advances the scripted session by at most one action per frame.
    pub(super) fn autopilot_step(&mut self) {
        let Some(mut ap) = self.autopilot.take() else {
            return;
        };
        if ap.last_log.elapsed() >= Duration::from_secs(5) {
            ap.last_log = Instant::now();
            let f = &self.frame;
            let mut iv: Vec<f32> = f.recent.iter().map(|r| r.0).collect();
            iv.sort_by(f32::total_cmp);
            let pct = |q: f64| {
                iv.get(((iv.len() as f64 - 1.0) * q) as usize)
                    .copied()
                    .unwrap_or(0.0)
            };
            eprintln!(
                "frames: {} total, busy now: {}; last {} intervals p50 {:.0} ms p99 {:.0} ms max {:.0} ms; \
                 while busy: max interval {:.0} ms, max UI build {:.1} ms, intervals > 100 ms: {}",
                f.frames,
                self.busy(),
                iv.len(),
                pct(0.5),
                pct(0.99),
                pct(1.0),
                f.max_interval_busy_ms,
                f.max_build_busy_ms,
                f.slow_busy_frames
            );
        }
        let wait = |ap: &Autopilot, ms: u64| ap.at.elapsed() >= Duration::from_millis(ms);
        let mut next = false;
        match (ap.scene, ap.stage) {
            (Scene::Large, _) => next = self.large_step(ap.stage, wait(&ap, 500), wait(&ap, 5000)),
            (_, 0) => {
                self.open_demo();
                next = true;
            }
            (Scene::Annotate, 1) if self.ready() => {
                let last = self.image_ids().last().copied();
                if let Some(id) = last {
                    self.open_image(id);
                }
                next = true;
            }
            (Scene::Annotate, 2) if self.ready() && wait(&ap, 500) => {
                self.add_point(208.0, 55.0, true);
                next = true;
            }
            (Scene::Annotate, 3) if self.ready() && wait(&ap, 300) => {
                self.accept();
                self.add_point(117.0, 190.0, true);
                next = true;
            }
            (Scene::Annotate, 4) if self.ready() && wait(&ap, 300) => {
                self.accept();
                self.set_box([190.0, 88.0, 224.0, 125.0]);
                next = true;
            }
            (Scene::Annotate, 5) if self.ready() && wait(&ap, 300) => {
                self.accept();
                self.add_point(61.0, 139.0, true);
                self.show_debug = true;
                next = true;
            }
            // The model may be ready before the demo project is: wait for both.
            (Scene::Train, 1) if self.project.is_some() && self.model_ready() && wait(&ap, 500) => {
                self.train_cfg.adapter.method = Method::NasLora;
                self.train_cfg.schedule.steps = ap.steps;
                self.train_cfg.val_every = (ap.steps / 8).max(1);
                self.start_training(false);
                self.tab = Tab::Adapt;
                next = true;
            }
            (Scene::Ab, 1)
                if self.model_ready()
                    && self.can_prompt()
                    && !self.train.running()
                    && wait(&ap, 300) =>
            {
                let rel = self.project.as_ref().and_then(|p| {
                    p.project
                        .adapters
                        .iter()
                        .rev()
                        .find(|a| a.improved)
                        .or(p.project.adapters.last())
                        .map(|a| a.path.clone())
                });
                match rel {
                    Some(r) => {
                        self.select_adapter(Some(r));
                        next = true;
                    }
                    None if self.train.outcome.is_none() && self.train.error.is_none() => {
                        // No adapter yet: train one first (the Adapt panel shows meanwhile).
                        self.train_cfg.schedule.steps = ap.steps;
                        self.train_cfg.val_every = (ap.steps / 8).max(1);
                        self.start_training(false);
                    }
                    None => {
                        self.error("Training produced no adapter");
                        next = true;
                    }
                }
            }
            (Scene::Ab, 2) if self.adapted.summary.is_some() && self.sam.embedding.is_empty() => {
                self.tab = Tab::Model;
                self.ab_view = true;
                self.canvas.fit_pending = true;
                self.ensure_embedded();
                next = true;
            }
            (Scene::Ab, 3) if self.current_embedded() && wait(&ap, 500) => {
                self.set_box([176.0, 212.0, 212.0, 240.0]);
                next = true;
            }
            _ => {}
        }
        if next {
            ap.stage += 1;
            ap.at = Instant::now();
        }
        self.autopilot = Some(ap);
    }
}

/// `SEGADAPT_AUTOPILOT_<name>` as numbers: groups split at ';', numbers at ','.
fn env_numbers(name: &str) -> Vec<Vec<f64>> {
    let v = std::env::var(format!("SEGADAPT_AUTOPILOT_{name}")).unwrap_or_default();
    v.split(';')
        .map(|g| g.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .filter(|g: &Vec<f64>| !g.is_empty())
        .collect()
}

impl SegApp {
    /// One stage of [`Scene::Large`]; true when it is done.
    /// `waited`, `waited_long`: 0.5 s, 5 s since the last stage.
    fn large_step(&mut self, stage: usize, waited: bool, waited_long: bool) -> bool {
        let boxes: Vec<[f64; 4]> = env_numbers("BOXES")
            .into_iter()
            .filter_map(|b| b.try_into().ok())
            .collect();
        match stage {
            0 => {
                let dir = self.config.demo_dir.with_file_name("large-image-demo");
                let _ = std::fs::remove_dir_all(&dir);
                self.create_project_at(&dir);
                true
            }
            1 if self.project.is_some() => {
                let img = std::env::var_os("SEGADAPT_AUTOPILOT_IMAGE").map(Into::into);
                self.import_images(img.into_iter().collect(), false);
                true
            }
            2 => match self.image_ids().first().copied() {
                Some(id) => {
                    self.open_image(id);
                    true
                }
                None => false,
            },
            k if k >= 3 && k < 3 + boxes.len() => {
                if !(self.ready() && self.model_ready() && waited) {
                    return false;
                }
                if k > 3 {
                    self.accept();
                }
                self.set_box(boxes[k - 3]);
                true
            }
            // Announced on stderr so that the screenshot script knows when to shoot.
            k if k == 3 + boxes.len() && self.ready() && waited => {
                eprintln!("autopilot: large ready");
                true
            }
            k if k == 4 + boxes.len() && waited_long => {
                if let (Some(z), Some(rect)) = (env_numbers("ZOOM").first(), self.canvas.rect)
                    && z.len() == 3
                {
                    let zoom = z[2] as f32;
                    self.canvas.view.zoom = zoom;
                    self.canvas.view.offset =
                        rect.size() / 2.0 - egui::vec2(z[0] as f32, z[1] as f32) * zoom;
                    self.canvas.view_touched = true;
                }
                eprintln!("autopilot: large zoomed");
                true
            }
            // `SEGADAPT_AUTOPILOT_PROPOSE=n`: Propose all objects with n points per side.
            k if k == 5 + boxes.len() => {
                if let Some(n) = env_numbers("PROPOSE").first().and_then(|g| g.first()) {
                    self.proposals.params.points_per_side = *n as usize;
                    self.propose_all();
                    eprintln!("autopilot: large proposing");
                }
                true
            }
            _ => false,
        }
    }
}
