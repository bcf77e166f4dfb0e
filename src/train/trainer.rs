//! The NAS-LoRA trainer: stage-wise schedule, per-group optimisers, validation-driven
//! checkpointing, cancel and resume. `train()` sets up a `TrainRun` (fresh or resumed) and
//! runs it step by step; the optimiser step itself is `Stepper::step`, the choice of the
//! written adapter lives in `selection`.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Result, bail};
use burn::module::{ModuleMapper, Param, ParamId};
use burn::optim::ModuleOptimizer;
use burn::prelude::*;

pub use super::best::{MIN_GAIN, final_path};
use super::best::{Selection, chosen_ops};
pub use super::config::TrainConfig;
use super::dataset::TrainData;
use super::events::{TrainEvent, TrainOutcome};
use super::resume::{self, ResumeState, resume_dir};
use super::schedule::Stage;
use super::step::StepInputs;
use super::stepper::{Stepper, enter_stage, make_optimizer, trainable};
pub use super::validation::{ValScores, gain_interval, validate, validate_objects};
use crate::adapt::select::{OpSelect, discretise_cells_to};
use crate::adapt::{CellState, apply_adapters, cells, for_each_branch, param_counts};
use crate::sam::{CheckpointInfo, Sam};

/// Parameter ids derived from module paths, so optimizer state saved by one process maps onto
/// the same parameters in another (resume).
struct StableIds {
    path: Vec<String>,
}

impl ModuleMapper for StableIds {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.path.join(".").hash(&mut h);
        let (_, t, _) = param.consume();
        Param::initialized(ParamId::from(h.finish()), t)
    }
}

/// Runs training. `emit` receives every event; `cancel` stops at the next step boundary and
/// leaves a resume folder. Returns `Ok(None)` when cancelled.
///
/// For the NAS methods only consolidated states (every cell one op) are candidates for the
/// written adapter, so what the user gets computes one op per cell, and patience counts only
/// validations of the consolidate stage.
#[allow(clippy::too_many_arguments)]
pub fn train(
    base: &Sam,
    info: &CheckpointInfo,
    data: &TrainData,
    cfg: &TrainConfig,
    device: &Device,
    out: &Path,
    resume: bool,
    emit: &mut dyn FnMut(TrainEvent),
    cancel: &AtomicBool,
) -> Result<Option<TrainOutcome>> {
    let t0 = Instant::now();
    check_inputs(cfg, data, out)?;
    let ad = device.clone().autodiff();
    let inputs = StepInputs {
        base,
        data,
        cfg,
        device,
        ad: &ad,
    };
    TrainRun::setup(inputs, info, out, resume, emit, t0)?.run(cancel)
}

fn check_inputs(cfg: &TrainConfig, data: &TrainData, out: &Path) -> Result<()> {
    cfg.validate()?;
    if data.train.is_empty() || data.val.is_empty() {
        bail!(
            "need at least one training and one validation object (have {} and {})",
            data.train.len(),
            data.val.len()
        );
    }
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.is_dir()
    {
        bail!("output folder {} does not exist", dir.display());
    }
    Ok(())
}

/// A training run between its steps: the model being trained, the step machinery and the
/// scores that pick the written adapter.
pub(super) struct TrainRun<'a> {
    pub(super) info: &'a CheckpointInfo,
    pub(super) data: &'a TrainData,
    pub(super) cfg: &'a TrainConfig,
    pub(super) device: &'a Device,
    pub(super) out: &'a Path,
    /// The resume folder, also where the best candidate is staged.
    pub(super) rdir: PathBuf,
    emit: &'a mut dyn FnMut(TrainEvent),
    /// Taken out only while a step runs (the optimiser consumes it).
    model: Option<Sam>,
    stepper: Stepper<'a>,
    pub(super) sel: Selection,
    /// The step this process started at (0, or where a resumed run left off).
    start: usize,
    /// Steps done so far.
    pub(super) step: usize,
    pub(super) stage: Stage,
    pub(super) stopped_early: bool,
    pub(super) t0: Instant,
    step_t0: Instant,
}

impl<'a> TrainRun<'a> {
    /// The adapted model, its optimiser and the scores so far (restored from the resume
    /// folder when `resume`); announces the run and, on a fresh one, scores the base model.
    fn setup(
        inputs: StepInputs<'a>,
        info: &'a CheckpointInfo,
        out: &'a Path,
        resume: bool,
        emit: &'a mut dyn FnMut(TrainEvent),
        t0: Instant,
    ) -> Result<Self> {
        let cfg = inputs.cfg;
        let rdir = resume_dir(out);
        let state = if resume {
            Some(resume::read_state(&rdir, info, cfg)?)
        } else {
            None
        };
        let (model, optim) = adapted_model(inputs.base, cfg, inputs.device, &rdir, &state)?;
        let model = trainable(model.fork(inputs.ad), cfg.train_decoder);
        let start = state.as_ref().map_or(0, |s| s.next_step);
        let stage = if cfg.adapter.method.has_cell() {
            cfg.schedule.stage(start.saturating_sub(1))
        } else {
            Stage::Warmup
        };
        let mut run = Self {
            info,
            data: inputs.data,
            cfg,
            device: inputs.device,
            out,
            rdir,
            emit,
            stepper: Stepper::new(inputs, &model, optim),
            model: Some(model),
            sel: state
                .as_ref()
                .map_or_else(Selection::new, Selection::from_resume),
            start,
            step: start,
            stage,
            stopped_early: false,
            t0,
            step_t0: t0,
        };
        run.announce();
        if state.is_none() {
            run.validate_base();
        }
        Ok(run)
    }

    pub(super) fn model(&self) -> &Sam {
        self.model.as_ref().expect("a model between steps")
    }

    fn model_mut(&mut self) -> &mut Sam {
        self.model.as_mut().expect("a model between steps")
    }

    pub(super) fn emit(&mut self, ev: TrainEvent) {
        (self.emit)(ev)
    }

    fn announce(&mut self) {
        let (cfg, sched) = (self.cfg, &self.cfg.schedule);
        let counts = param_counts(self.model());
        let decoder = if cfg.train_decoder {
            counts.mask_decoder
        } else {
            0
        };
        let (s1, s2) = sched.boundaries();
        let ev = TrainEvent::Started {
            total_steps: sched.steps,
            start_step: self.start,
            n_train: self.data.train.len(),
            n_val: self.data.val.len(),
            trainable_params: counts.adapter + decoder,
            total_params: counts.total,
            stage_steps: if cfg.adapter.method.has_cell() {
                (s1, s2)
            } else {
                (sched.steps, sched.steps)
            },
            op_names: cfg
                .adapter
                .ops
                .iter()
                .map(|o| o.name().to_string())
                .collect(),
            cell_names: cells(self.model()).iter().map(|(n, _)| n.clone()).collect(),
        };
        self.emit(ev);
    }

    /// Steps until the schedule ends, patience runs out or `cancel` is set.
    fn run(mut self, cancel: &AtomicBool) -> Result<Option<TrainOutcome>> {
        self.step_t0 = Instant::now();
        while self.step < self.cfg.schedule.steps {
            if cancel.load(Ordering::Relaxed) {
                self.save_for_resume()?;
                return Ok(None);
            }
            self.prepare_step()?;
            self.step()?;
            if self.validate_and_checkpoint()? {
                self.stopped_early = true;
                break;
            }
        }
        self.finish().map(Some)
    }

    /// The stage of the coming step (cell states, α's temperature) and patience's reset.
    fn prepare_step(&mut self) -> Result<()> {
        let (cfg, sched, step) = (self.cfg, &self.cfg.schedule, self.step);
        if cfg.adapter.method.has_cell() {
            let s = sched.stage(step);
            if s != self.stage || step == self.start {
                let mixed = cells(self.model())
                    .iter()
                    .any(|(_, c)| !matches!(c.state, CellState::Discrete(_)));
                if s == Stage::Consolidate && sched.select == OpSelect::Perturbation && mixed {
                    self.select_by_perturbation()?;
                }
                enter_stage(self.model_mut(), s, sched);
                if s != self.stage {
                    let chosen = chosen_ops(self.model());
                    self.emit(TrainEvent::StageChanged {
                        step,
                        stage: s,
                        chosen,
                    });
                }
                self.stage = s;
            }
            let t = sched.temperature_at(cfg.adapter.alpha_temperature, step);
            for_each_branch(self.model_mut(), |b| {
                if let Some(c) = &mut b.cell {
                    c.temperature = t;
                }
            });
        }
        if step == sched.boundaries().1 && step > self.start {
            // Patience counts validations of the final quarter only, for every method, so a
            // slow start never stops a run and methods are compared under one rule.
            self.sel.since_best = 0;
        }
        Ok(())
    }

    /// Discretises every cell to the op DARTS-PT picks (see [`crate::adapt::select`]).
    fn select_by_perturbation(&mut self) -> Result<()> {
        let model = self.model.as_ref().expect("a model between steps");
        let scores = self.stepper.perturbation_scores(model)?;
        for c in &scores.cells {
            let removed: Vec<String> = c
                .ops
                .iter()
                .zip(&c.removed_loss)
                .map(|(o, l)| format!("{}={l:.5}", o.name()))
                .collect();
            tracing::info!(
                "perturbation selection {}: loss {:.5}, without each op: {} → {}",
                c.name,
                scores.full_loss,
                removed.join(" "),
                c.ops[c.chosen].name()
            );
        }
        let choices: Vec<usize> = scores.cells.iter().map(|c| c.chosen).collect();
        let mode = self.cfg.schedule.discretize;
        discretise_cells_to(self.model_mut(), &choices, mode)
    }

    /// One optimiser step, announced with its losses (and α for the NAS methods).
    fn step(&mut self) -> Result<()> {
        let model = self.model.take().expect("a model between steps");
        let (model, l) = self.stepper.step(model, self.step, self.stage)?;
        self.model = Some(model);
        self.step += 1;
        let (step, total) = (self.step, self.cfg.schedule.steps);
        let elapsed = self.step_t0.elapsed().as_secs_f64();
        let done = (step - self.start) as f64;
        self.emit(TrainEvent::Step {
            step,
            loss: l.loss,
            mask_loss: l.mask,
            iou_loss: l.iou,
            aux_loss: l.aux,
            lr: l.lr,
            stage: self.stage,
            elapsed_s: self.t0.elapsed().as_secs_f64(),
            eta_s: elapsed / done * (total - step) as f64,
        });
        if self.cfg.adapter.method.has_cell() {
            let weights = cells(self.model())
                .iter()
                .map(|(_, c)| c.weights())
                .collect();
            self.emit(TrainEvent::Alpha { step, weights });
        }
        Ok(())
    }

    /// Writes the resume folder at this step boundary and says where it is.
    fn save_for_resume(&mut self) -> Result<()> {
        let st = self.sel.resume_state(self.cfg, self.info, self.step);
        resume::save(
            &self.model().valid(),
            self.stepper.optimizer(),
            st,
            &self.rdir,
        )?;
        let (step, resume_dir) = (self.step, self.rdir.clone());
        self.emit(TrainEvent::Cancelled { step, resume_dir });
        Ok(())
    }
}

/// The base model with the configured adapters, parameter ids stable across processes, and
/// a fresh optimiser, both restored from `rdir` when resuming.
fn adapted_model(
    base: &Sam,
    cfg: &TrainConfig,
    device: &Device,
    rdir: &Path,
    state: &Option<ResumeState>,
) -> Result<(Sam, ModuleOptimizer)> {
    let mut model = base.clone();
    apply_adapters(&mut model, &cfg.adapter, device);
    let mut model = model.map(&mut StableIds { path: Vec::new() });
    let mut optim = make_optimizer(cfg);
    if let Some(s) = state {
        optim = resume::restore(&mut model, optim, rdir, s)?;
    }
    Ok((model, optim))
}
