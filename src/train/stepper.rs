//! The trainer's optimiser step: micro-batches with gradient accumulation, the weights' update
//! and, in bi-level search, α's own update. `train()` and `segadapt bench` both run it.

use burn::module::{ParamGroup, ParamId};
use burn::optim::lr_scheduler::module_lr_scheduler::{ModuleLearningRate, ModuleLrScheduler};
use burn::optim::{AdamConfig, AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::prelude::*;

use super::config::TrainConfig;
use super::dataset::Dihedral;
use super::schedule::{Schedule, Stage};
use super::step::{
    Batch, ObjectPool, PrefixCache, StepInputs, batch_loss, loss_of, next_batch, read_scalar,
    step_rng,
};
use crate::adapt::select::{PerturbationScores, perturbation_scores};
use crate::adapt::{
    CellState, cells, discretise_cells, first_adapted_stage, set_cell_states, set_training,
};
use crate::sam::Sam;

/// The trained parameters: the adapters, and the mask decoder unless it is frozen.
pub fn trainable_group(train_decoder: bool) -> ParamGroup {
    let re = if train_decoder {
        r"(_adapter\.)|(mask_decoder\.)"
    } else {
        r"_adapter\."
    };
    ParamGroup::from_regex(re).expect("valid regex")
}

/// The model as a step trains it: `model` already on the autodiff device, the base frozen
/// and the rest trainable (gradient flags take effect on the autodiff device), dropout-style
/// training behaviour on.
pub fn trainable(model: Sam, train_decoder: bool) -> Sam {
    let mut model = model
        .train()
        .no_grad()
        .set_require_grad_group(trainable_group(train_decoder), true);
    set_training(&mut model, true);
    model
}

/// Puts the cells in the state `stage` trains them in. Cells already discrete stay as they
/// are (a resumed consolidation).
pub fn enter_stage(model: &mut Sam, stage: Stage, sched: &Schedule) {
    match stage {
        Stage::Warmup => set_cell_states(model, CellState::FrozenAlpha),
        Stage::Search => set_cell_states(model, CellState::Mixed),
        Stage::Consolidate => discretise_cells(model, sched.discretize),
    }
}

/// AdamW for the weights, Adam (no weight decay, its own β1) for α.
pub fn make_optimizer(cfg: &TrainConfig) -> ModuleOptimizer {
    AdamWConfig::new()
        .with_weight_decay(cfg.weight_decay as f32)
        .init()
        .with_group(
            ParamGroup::from_predicate("cell.alpha"),
            AdamConfig::new()
                .with_beta_1(cfg.schedule.alpha_beta1 as f32)
                .build(),
            None,
        )
}

/// Losses of one optimiser step, averaged over its micro-steps, and its learning rate.
#[derive(Clone, Copy, Debug)]
pub struct StepLosses {
    pub loss: f64,
    pub mask: f64,
    pub iou: f64,
    pub aux: f64,
    pub lr: f64,
}

/// What lives across optimiser steps besides the model: the optimiser, the cached frozen
/// prefixes, and the objects batches are drawn from.
pub struct Stepper<'a> {
    inputs: StepInputs<'a>,
    optim: ModuleOptimizer,
    cache: PrefixCache,
    all: ObjectPool,
    /// Bi-level search: the weights' half and α's half of the training objects.
    weight_half: ObjectPool,
    arch_half: ObjectPool,
    alpha_ids: Vec<ParamId>,
}

impl<'a> Stepper<'a> {
    /// `model` is the trainable model (its cells give α's parameter ids).
    pub fn new(inputs: StepInputs<'a>, model: &Sam, optim: ModuleOptimizer) -> Self {
        let (base, data) = (inputs.base, inputs.data);
        let first = first_adapted_stage(model).unwrap_or(base.image_encoder.num_stages());
        let (weight_half, arch_half) = ObjectPool::halves(data, inputs.cfg.seed);
        Self {
            optim,
            cache: PrefixCache::new(first),
            all: ObjectPool::new(data, data.train.clone()),
            weight_half,
            arch_half,
            alpha_ids: cells(model).iter().map(|(_, c)| c.alpha.id).collect(),
            inputs,
        }
    }

    pub fn optimizer(&self) -> &ModuleOptimizer {
        &self.optim
    }

    /// First encoder stage that is trained; the ones before it are the cached prefix.
    pub fn first_stage(&self) -> usize {
        self.cache.first_stage()
    }

    /// Computes the un-augmented frozen prefix of image `img` now instead of at its first draw.
    pub fn prime(&mut self, img: usize) {
        let i = &self.inputs;
        let d = Dihedral(0);
        self.cache
            .get(i.base, i.data, i.cfg, img, d, i.device, i.ad);
    }

    /// One optimiser step `step` of `stage`: `grad_accum` micro-batches, the weights' update,
    /// then in bi-level search α's update on a batch from the other half of the objects.
    pub fn step(
        &mut self,
        mut model: Sam,
        step: usize,
        stage: Stage,
    ) -> anyhow::Result<(Sam, StepLosses)> {
        let cfg = self.inputs.cfg;
        let sched = &cfg.schedule;
        let lr = sched.lr_at(step);
        let bilevel = cfg.adapter.method.has_cell() && sched.bilevel && stage == Stage::Search;
        if bilevel {
            set_cell_states(&mut model, CellState::FrozenAlpha);
        }
        let pool = if bilevel {
            &self.weight_half
        } else {
            &self.all
        };
        let n = cfg.grad_accum.max(1);
        let (mut loss_sum, mut mask_sum, mut iou_sum, mut aux_sum) = (0.0, 0.0, 0.0, 0.0);
        let mut grads_acc: Option<GradientsParams> = None;
        for micro in 0..n {
            let mut rng = step_rng(cfg.seed, step, micro as u64);
            let l = batch_loss(&model, &self.inputs, &mut self.cache, pool, &mut rng)?;
            mask_sum += l.mask;
            iou_sum += l.iou;
            aux_sum += l.aux;
            let total = l.total / n as f64;
            loss_sum += read_scalar(total.clone().detach())? * n as f64;
            let g = GradientsParams::from_grads(total.backward(), &model);
            grads_acc = Some(accumulate(&model, grads_acc, g));
        }
        let grads = grads_acc.expect("at least one micro-step");
        model = self.optim.step(lr_policy(sched, lr), model, grads);
        if bilevel {
            // α's step: a batch from the other half of the training objects, α grads only.
            set_cell_states(&mut model, CellState::Mixed);
            let mut rng = step_rng(cfg.seed, step, 0xA7C4);
            let l = batch_loss(
                &model,
                &self.inputs,
                &mut self.cache,
                &self.arch_half,
                &mut rng,
            )?;
            let mut grads = l.total.backward();
            let g = GradientsParams::from_params(&mut grads, &model, &self.alpha_ids);
            model = self.optim.step(lr_policy(sched, lr), model, g);
        }
        let n = n as f64;
        let losses = StepLosses {
            loss: loss_sum / n,
            mask: mask_sum / n,
            iou: iou_sum / n,
            aux: aux_sum / n,
            lr,
        };
        Ok((model, losses))
    }
}

/// Batches that score each op in perturbation selection: drawn once, with their own seed, from
/// the training objects, so every candidate supernet is scored on the same prompts and images.
const PERTURBATION_BATCHES: usize = 4;

impl Stepper<'_> {
    /// DARTS-PT scores of `model`'s cells (see [`crate::adapt::select`]): the mean training
    /// loss over [`PERTURBATION_BATCHES`] fixed batches with each op removed in turn.
    ///
    /// Scored on the model without autodiff: a forward pass on the autodiff device keeps its
    /// graph, and the ~60 candidate passes without a backward grew a CPU run to 24 GB.
    pub fn perturbation_scores(&mut self, model: &Sam) -> anyhow::Result<PerturbationScores> {
        let mut rng = step_rng(self.inputs.cfg.seed, usize::MAX, 0x5E1E_C7ED);
        let batches: Vec<Batch> = (0..PERTURBATION_BATCHES)
            .map(|_| next_batch(&self.inputs, &mut self.cache, &self.all, &mut rng).into_inner())
            .collect();
        let inputs = StepInputs {
            base: self.inputs.base,
            data: self.inputs.data,
            cfg: self.inputs.cfg,
            device: self.inputs.device,
            ad: self.inputs.device,
        };
        let (inputs, first) = (&inputs, self.cache.first_stage());
        let valid = model.valid();
        perturbation_scores(&valid, |m| {
            let mut sum = 0.0;
            for b in &batches {
                let l = loss_of(m, b.clone(), inputs, first)?;
                sum += read_scalar(l.total.detach())?;
            }
            Ok(sum / batches.len() as f64)
        })
    }
}

fn accumulate(model: &Sam, acc: Option<GradientsParams>, g: GradientsParams) -> GradientsParams {
    match acc {
        None => g,
        Some(acc) => {
            let mut ga = burn::optim::GradientsAccumulator::<Sam>::new();
            ga.accumulate(model, acc);
            ga.accumulate(model, g);
            ga.grads()
        }
    }
}

/// Learning rates of this step: the weights' schedule, α's own rate, and the cells' conv
/// kernels at `op_lr` following the same decay.
fn lr_policy(sched: &Schedule, lr: f64) -> ModuleLearningRate {
    let mut s = ModuleLrScheduler::new(lr)
        .with_group(ParamGroup::from_predicate("cell.alpha"), sched.alpha_lr)
        // The gated cell's gate moves like α (at the weights' rate it would stay shut).
        .with_group(ParamGroup::from_predicate("cell.gate"), sched.alpha_lr);
    if let Some(op_lr) = sched.op_lr {
        s = s.with_group(
            ParamGroup::from_predicate("cell.op_weights"),
            op_lr * lr / sched.lr,
        );
    }
    s.step()
}
