//! The NAS-LoRA trainer: stage-wise schedule, per-group optimisers, validation-driven
//! checkpointing, cancel and resume.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::module::{ModuleMapper, Param, ParamGroup, ParamId};
use burn::optim::lr_scheduler::module_lr_scheduler::ModuleLrScheduler;
use burn::optim::{AdamConfig, AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use burn::store::{ModuleSnapshot, SafetensorsStore};
use rand::Rng;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use super::dataset::{Dihedral, TrainData, jitter_intensity};
use super::events::{TrainEvent, TrainOutcome};
use super::loss::{LossKind, hard_iou, mask_loss};
use super::prompts::{PromptKind, PromptMix, sample_prompt};
use super::schedule::{Schedule, Stage};
use crate::adapt::conv_lora::take_aux_losses;
use crate::adapt::file::{AdapterCard, save_adapter};
use crate::adapt::{
    AdapterConfig, CellState, apply_adapters, cells, first_adapted_stage, param_counts,
    set_cell_states, set_training,
};
use crate::eval::{EvalPrompt, protocol_prompt};
use crate::fsutil::atomic_write;
use crate::metrics::{dice, iou};
use crate::predict::transforms::{get_preprocess_shape, preprocess};
use crate::predict::{Predictor, PromptInput};
use crate::sam::{CheckpointInfo, Sam};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub adapter: AdapterConfig,
    pub schedule: Schedule,
    /// Objects (prompts) per step, all from one image so they share one encoder pass.
    pub objects_per_step: usize,
    pub grad_accum: usize,
    pub val_split: f64,
    /// Validate every this many steps (0 = 10 times per run).
    pub val_every: usize,
    /// Stop after this many validations without improvement, once cells are discrete (0 = off).
    pub early_stop_patience: usize,
    pub train_decoder: bool,
    pub prompt_mix: PromptMix,
    pub loss: LossKind,
    pub iou_loss_weight: f64,
    pub augment: bool,
    pub intensity_jitter: f32,
    pub weight_decay: f64,
    pub seed: u64,
    /// Objects skipped below this area (pixels).
    pub min_area: usize,
    /// Also write the last state (not only the best) to `<out stem>.final.safetensors`.
    pub save_final: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            adapter: AdapterConfig::default(),
            schedule: Schedule::default(),
            objects_per_step: 4,
            grad_accum: 1,
            val_split: 0.2,
            val_every: 0,
            early_stop_patience: 3,
            train_decoder: true,
            prompt_mix: PromptMix::default(),
            loss: LossKind::BceDice,
            iou_loss_weight: 1.0,
            augment: true,
            intensity_jitter: 0.1,
            weight_decay: 0.01,
            seed: 0,
            min_area: 0,
            save_final: false,
        }
    }
}

/// What a cancelled run leaves so it can continue exactly where it stopped.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct ResumeState {
    config: TrainConfig,
    base_sha256: String,
    next_step: usize,
    base_score: (f64, f64),
    best: (f64, f64, usize),
    since_best: usize,
    cell_states: Vec<(String, CellState)>,
}

pub fn final_path(out: &Path) -> PathBuf {
    let stem = out
        .file_stem()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    out.with_file_name(format!("{stem}.final.safetensors"))
}

pub fn resume_dir(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    out.with_file_name(format!("{name}.resume"))
}

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

fn step_rng(seed: u64, step: usize, salt: u64) -> StdRng {
    StdRng::seed_from_u64(
        seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ (step as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9)
            ^ salt,
    )
}

/// Soft low-resolution target in the padded model frame: the fraction of each low-res cell
/// covered by the object (mask resized to the input frame by nearest neighbour).
pub fn low_res_target(mask: &[bool], w: usize, h: usize, img_size: usize, low: usize) -> Vec<f32> {
    let (nh, nw) = get_preprocess_shape(h, w, img_size);
    let f = img_size / low;
    let mut out = vec![0f32; low * low];
    for y in 0..nh {
        let sy = (y * h / nh).min(h - 1);
        for x in 0..nw {
            let sx = (x * w / nw).min(w - 1);
            if mask[sy * w + sx] {
                out[(y / f) * low + x / f] += 1.0;
            }
        }
    }
    let area = (f * f) as f32;
    out.iter_mut().for_each(|v| *v /= area);
    out
}

/// Dice and IoU on the validation objects at the original resolution, averaged over the two
/// prompts of the `eval` protocol (tight box; one interior point, best of 3 masks). Both count
/// because the adapted model must stay promptable the way users prompt it: a run that only
/// improves boxes while points get worse is not an improvement.
pub fn validate(model: &Sam, data: &TrainData, device: &Device) -> (f64, f64) {
    let mut eval_model = model.clone();
    set_training(&mut eval_model, false);
    let predictor = Predictor::new(eval_model, device.clone());
    let (mut sd, mut si, mut n) = (0.0, 0.0, 0usize);
    let mut by_image: HashMap<usize, Vec<usize>> = HashMap::new();
    for &o in &data.val {
        by_image.entry(data.objects[o].image).or_default().push(o);
    }
    let mut keys: Vec<usize> = by_image.keys().copied().collect();
    keys.sort_unstable();
    for i in keys {
        let img = &data.images[i];
        let (w, h) = (img.width() as usize, img.height() as usize);
        let emb = predictor.set_image(img);
        for &o in &by_image[&i] {
            let gt = &data.objects[o].mask;
            for kind in [EvalPrompt::Box, EvalPrompt::Point] {
                let Some((p, multimask)) = protocol_prompt(gt, w, h, kind) else {
                    continue;
                };
                let pred = predictor.predict(&emb, &p, multimask);
                let m = pred.binary(pred.best());
                sd += dice(&m, gt);
                si += iou(&m, gt);
                n += 1;
            }
        }
    }
    if n == 0 {
        (0.0, 0.0)
    } else {
        (sd / n as f64, si / n as f64)
    }
}

fn batch_prompts(
    prompts: &[PromptInput],
    sizes: [usize; 2],
    img_size: usize,
    device: &Device,
) -> crate::sam::Prompts {
    use crate::predict::transforms::{apply_box, apply_coords};
    let k = prompts.len();
    let n = prompts[0].points.len();
    let points = (n > 0).then(|| {
        let coords: Vec<f32> = prompts
            .iter()
            .flat_map(|p| {
                p.points
                    .iter()
                    .flat_map(|q| apply_coords([q.x, q.y], sizes, img_size))
            })
            .collect();
        let labels: Vec<f32> = prompts
            .iter()
            .flat_map(|p| p.points.iter().map(|q| if q.positive { 1.0 } else { 0.0 }))
            .collect();
        (
            Tensor::<3>::from_data(TensorData::new(coords, [k, n, 2]), device),
            Tensor::<2>::from_data(TensorData::new(labels, [k, n]), device),
        )
    });
    let boxes = prompts[0].bbox.is_some().then(|| {
        let b: Vec<f32> = prompts
            .iter()
            .flat_map(|p| apply_box(p.bbox.expect("batch shares prompt kind"), sizes, img_size))
            .collect();
        Tensor::<2>::from_data(TensorData::new(b, [k, 4]), device)
    });
    crate::sam::Prompts {
        points,
        boxes,
        masks: None,
    }
}

fn trainable_group(train_decoder: bool) -> ParamGroup {
    let re = if train_decoder {
        r"(_adapter\.)|(mask_decoder\.)"
    } else {
        r"_adapter\."
    };
    ParamGroup::from_regex(re).expect("valid regex")
}

fn tensor_regex(train_decoder: bool) -> &'static str {
    if train_decoder {
        r"(_adapter\.)|(^mask_decoder\.)"
    } else {
        r"_adapter\."
    }
}

fn make_optimizer(cfg: &TrainConfig) -> ModuleOptimizer {
    AdamWConfig::new()
        .with_weight_decay(cfg.weight_decay as f32)
        .init()
        .with_group(
            ParamGroup::from_predicate("cell.alpha"),
            AdamConfig::new().build(),
            None,
        )
}

/// Smallest validation Dice gain that counts as better.
pub const MIN_GAIN: f64 = 1e-4;

/// Runs training. `emit` receives every event; `cancel` stops at the next step boundary and
/// leaves a resume folder. Returns `Ok(None)` when cancelled.
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
    let rdir = resume_dir(out);
    let state: Option<ResumeState> = if resume {
        let s = std::fs::read(rdir.join("state.json"))
            .with_context(|| format!("no resumable run at {}", rdir.display()))?;
        let s: ResumeState = serde_json::from_slice(&s).context("unreadable resume state")?;
        if s.base_sha256 != info.sha256 {
            bail!(
                "the run in {} was started on another base model",
                rdir.display()
            );
        }
        if s.config != *cfg {
            bail!(
                "the run in {} used other settings; resume with the same settings",
                rdir.display()
            );
        }
        Some(s)
    } else {
        None
    };

    let img_size = base.img_size();
    let sched = &cfg.schedule;
    let has_cells = cfg.adapter.method.has_cell();
    let mut model = base.clone();
    apply_adapters(&mut model, &cfg.adapter, device);
    let model = model.map(&mut StableIds { path: Vec::new() });
    let mut model = model;
    let mut optim = make_optimizer(cfg);
    let mut start = 0;
    let (mut base_score, mut best, mut since_best) =
        ((0.0, 0.0), (f64::NEG_INFINITY, 0.0, 0usize), 0usize);
    if let Some(s) = &state {
        let mut store = SafetensorsStore::from_file(rdir.join("model.safetensors"))
            .with_regex(tensor_regex(cfg.train_decoder))
            .allow_partial(true);
        model
            .load_from(&mut store)
            .map_err(|e| anyhow::anyhow!("resume: {e}"))?;
        let states: HashMap<String, CellState> = s.cell_states.iter().cloned().collect();
        crate::adapt::for_each_slot(&mut model, |slot_info, slot, _| {
            if let Some(a) = slot {
                for b in a.branches.iter_mut() {
                    if let (Some(c), Some(st)) = (&mut b.cell, states.get(&slot_info.name)) {
                        c.state = *st;
                    }
                }
            }
        });
        optim = optim
            .load(rdir.join("optim.bpk"))
            .map_err(|e| anyhow::anyhow!("resume optimizer: {e}"))?;
        start = s.next_step;
        base_score = s.base_score;
        best = s.best;
        since_best = s.since_best;
    }
    let ad = device.clone().autodiff();
    // Gradient flags take effect on the autodiff device: freeze the base, train the rest.
    let mut model = model
        .fork(&ad)
        .train()
        .no_grad()
        .set_require_grad_group(trainable_group(cfg.train_decoder), true);
    set_training(&mut model, true);

    let first = first_adapted_stage(&model).unwrap_or(0);
    let counts = param_counts(&model);
    let trainable = counts.adapter
        + if cfg.train_decoder {
            counts.mask_decoder
        } else {
            0
        };
    let cell_list = cells(&model);
    let (s1, s2) = sched.boundaries();
    emit(TrainEvent::Started {
        total_steps: sched.steps,
        start_step: start,
        n_train: data.train.len(),
        n_val: data.val.len(),
        trainable_params: trainable,
        total_params: counts.total,
        stage_steps: if has_cells {
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
        cell_names: cell_list.iter().map(|(n, _)| n.clone()).collect(),
    });

    let val_every = if cfg.val_every > 0 {
        cfg.val_every
    } else {
        (sched.steps / 10).max(1)
    };
    if state.is_none() {
        let (d, i) = validate(&model.valid(), data, device);
        base_score = (d, i);
        best = (d, i, 0);
        emit(TrainEvent::Validation {
            step: 0,
            dice: d,
            iou: i,
            is_base: true,
            best: false,
        });
    }

    // Frozen encoder prefix per (image, augmentation), computed once.
    let mut prefix_cache: HashMap<(usize, u8), (Tensor<4>, [usize; 2])> = HashMap::new();
    let mut cache_order: VecDeque<(usize, u8)> = VecDeque::new();
    let train_images: Vec<usize> = {
        let mut v: Vec<usize> = data.train.iter().map(|&o| data.objects[o].image).collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let mut stage = if has_cells {
        sched.stage(start.saturating_sub(1))
    } else {
        Stage::Warmup
    };
    if has_cells && state.is_none() {
        set_cell_states(
            &mut model,
            if stage == Stage::Search {
                CellState::Mixed
            } else {
                CellState::FrozenAlpha
            },
        );
    }
    let mut stopped_early = false;
    let mut step = start;
    let step_t0 = Instant::now();
    while step < sched.steps {
        if cancel.load(Ordering::Relaxed) {
            save_resume(
                &model, &optim, cfg, info, step, base_score, best, since_best, &rdir,
            )?;
            emit(TrainEvent::Cancelled {
                step,
                resume_dir: rdir.clone(),
            });
            return Ok(None);
        }
        if has_cells {
            let s = sched.stage(step);
            if s != stage || step == start {
                let cs = match s {
                    Stage::Warmup => CellState::FrozenAlpha,
                    Stage::Search => CellState::Mixed,
                    Stage::Consolidate => CellState::Discrete(0),
                };
                let already_discrete = cells(&model)
                    .iter()
                    .all(|(_, c)| matches!(c.state, CellState::Discrete(_)));
                if !(s == Stage::Consolidate && already_discrete) {
                    set_cell_states(&mut model, cs);
                }
                if s != stage {
                    let chosen = cells(&model)
                        .iter()
                        .filter_map(|(n, c)| c.chosen().map(|o| (n.clone(), o.name().to_string())))
                        .collect();
                    emit(TrainEvent::StageChanged {
                        step,
                        stage: s,
                        chosen,
                    });
                }
                stage = s;
            }
        }
        let lr = sched.lr_at(step);
        let mut grads_acc: Option<GradientsParams> = None;
        let (mut loss_sum, mut mask_sum, mut iou_sum, mut aux_sum) = (0.0, 0.0, 0.0, 0.0);
        for micro in 0..cfg.grad_accum.max(1) {
            let mut rng = step_rng(cfg.seed, step, micro as u64);
            ad.seed(rng.random());
            let img_i = train_images[rng.random_range(0..train_images.len())];
            let d = Dihedral(if cfg.augment {
                rng.random_range(0..8u8)
            } else {
                0
            });
            let src = &data.images[img_i];
            let (w0, h0) = (src.width() as usize, src.height() as usize);
            let (w, h) = d.out_size(w0, h0);
            let key = (img_i, d.0);
            if !prefix_cache.contains_key(&key) {
                let mut aug = d.apply_image(src);
                if cfg.augment && cfg.intensity_jitter > 0.0 {
                    let mut jr = step_rng(cfg.seed, img_i * 8 + d.0 as usize, 0x7177);
                    aug = jitter_intensity(&aug, &mut jr, cfg.intensity_jitter);
                }
                let c = &base.config;
                let p = preprocess(&aug, img_size, c.pixel_mean, c.pixel_std);
                let x = Tensor::<4>::from_data(
                    TensorData::new(p.data, [1, 3, img_size, img_size]),
                    device,
                );
                let pre = base.image_encoder.forward_prefix(x, first);
                let pre = Tensor::<4>::from_data(pre.into_data(), &ad);
                if cache_order.len() >= 64
                    && let Some(old) = cache_order.pop_front()
                {
                    prefix_cache.remove(&old);
                }
                cache_order.push_back(key);
                prefix_cache.insert(key, (pre, [h, w]));
            }
            let (prefix, sizes) = prefix_cache[&key].clone();
            let mut objs: Vec<usize> = data
                .train
                .iter()
                .copied()
                .filter(|&o| data.objects[o].image == img_i)
                .collect();
            objs.shuffle(&mut rng);
            objs.truncate(cfg.objects_per_step.max(1));
            let kind = cfg.prompt_mix.sample(&mut rng);
            let n_points = rng.random_range(1..=cfg.prompt_mix.max_points.max(1));
            let masks: Vec<Vec<bool>> = objs
                .iter()
                .map(|&o| d.apply_mask(&data.objects[o].mask, w0, h0))
                .collect();
            let (prompts, targets): (Vec<PromptInput>, Vec<Vec<bool>>) = if kind == PromptKind::None
            {
                // No prompt: the target is every training object of the image.
                let mut union = vec![false; w * h];
                for o in data
                    .train
                    .iter()
                    .filter(|&&o| data.objects[o].image == img_i)
                {
                    for (u, m) in union
                        .iter_mut()
                        .zip(d.apply_mask(&data.objects[*o].mask, w0, h0))
                    {
                        *u |= m;
                    }
                }
                (vec![PromptInput::default()], vec![union])
            } else {
                let p = masks
                    .iter()
                    .map(|m| sample_prompt(kind, m, w, h, &cfg.prompt_mix, n_points, &mut rng))
                    .collect();
                (p, masks)
            };
            let k = targets.len();
            let low = img_size / 4;
            let tgt: Vec<f32> = targets
                .iter()
                .flat_map(|m| low_res_target(m, w, h, img_size, low))
                .collect();
            let target = Tensor::<4>::from_data(TensorData::new(tgt, [k, 1, low, low]), &ad);

            let emb = model.image_encoder.forward_suffix(prefix, first);
            let prompts_t = if kind == PromptKind::None {
                crate::sam::Prompts::default()
            } else {
                batch_prompts(&prompts, sizes, img_size, &ad)
            };
            let multimask = kind == PromptKind::Points;
            let out = model.decode(emb, &prompts_t, multimask);
            let m = out.low_res_masks.dims()[1];
            let per_mask: Vec<Tensor<1>> = (0..m)
                .map(|j| {
                    mask_loss(
                        cfg.loss,
                        out.low_res_masks.clone().narrow(1, j, 1),
                        target.clone(),
                    )
                })
                .collect();
            let losses = Tensor::stack::<2>(per_mask, 1); // (k, m)
            let best_j = losses.clone().detach().argmin(1); // (k, 1)
            let mask_l = losses.gather(1, best_j.clone()).mean();
            let chosen_logits = if m == 1 {
                out.low_res_masks.clone()
            } else {
                let idx = best_j
                    .clone()
                    .reshape([k, 1, 1, 1])
                    .expand([k, 1, low, low]);
                out.low_res_masks.clone().gather(1, idx)
            };
            let actual = hard_iou(chosen_logits, target);
            let pred_iou = out.iou_predictions.gather(1, best_j).reshape([k]);
            let iou_l = (pred_iou - actual).square().mean();
            let aux: Vec<Tensor<1>> = take_aux_losses();
            let aux_l = aux.into_iter().reduce(|a, b| a + b);
            let mut total = mask_l.clone() + iou_l.clone() * cfg.iou_loss_weight;
            if let Some(a) = &aux_l {
                total = total + a.clone();
            }
            let total = total / cfg.grad_accum.max(1) as f64;
            let sc = |t: Tensor<1>| t.into_scalar::<f32>() as f64;
            mask_sum += sc(mask_l.clone().detach());
            iou_sum += sc(iou_l.clone().detach());
            aux_sum += aux_l.map(|a| sc(a.detach())).unwrap_or(0.0);
            loss_sum += sc(total.clone().detach()) * cfg.grad_accum.max(1) as f64;
            let g = GradientsParams::from_grads(total.backward(), &model);
            grads_acc = Some(match grads_acc {
                None => g,
                Some(mut acc) => {
                    let mut ga = burn::optim::GradientsAccumulator::<Sam>::new();
                    ga.accumulate(&model, std::mem::take(&mut acc));
                    ga.accumulate(&model, g);
                    ga.grads()
                }
            });
        }
        let lr_policy = ModuleLrScheduler::new(lr)
            .with_group(ParamGroup::from_predicate("cell.alpha"), sched.alpha_lr)
            .step();
        model = optim.step(
            lr_policy,
            model,
            grads_acc.expect("at least one micro-step"),
        );
        let n = cfg.grad_accum.max(1) as f64;
        step += 1;
        let elapsed = step_t0.elapsed().as_secs_f64();
        let done = (step - start) as f64;
        emit(TrainEvent::Step {
            step,
            loss: loss_sum / n,
            mask_loss: mask_sum / n,
            iou_loss: iou_sum / n,
            aux_loss: aux_sum / n,
            lr,
            stage,
            elapsed_s: t0.elapsed().as_secs_f64(),
            eta_s: elapsed / done * (sched.steps - step) as f64,
        });
        if has_cells {
            emit(TrainEvent::Alpha {
                step,
                weights: cells(&model).iter().map(|(_, c)| c.weights()).collect(),
            });
        }
        if step % val_every == 0 || step == sched.steps {
            let mut valid = model.valid();
            set_training(&mut valid, false);
            let (d, i) = validate(&valid, data, device);
            // A gain below MIN_GAIN is noise (a few boundary pixels), not a better model.
            let improved = d > best.0 + MIN_GAIN;
            if improved {
                best = (d, i, step);
                since_best = 0;
                let mut card = AdapterCard::new(&valid, info, &cfg.adapter, cfg.train_decoder);
                card.training = serde_json::json!({
                    "config": cfg,
                    "data": data.manifest(if data.images.len() >= 3 { "by image" } else { "by object" }),
                    "validation": {"step": step, "dice": d, "iou": i, "base_dice": base_score.0, "base_iou": base_score.1, "prompt": "mean of tight box and interior point"},
                    "seed": cfg.seed,
                });
                save_adapter(&valid, &card, out)?;
            } else {
                since_best += 1;
            }
            emit(TrainEvent::Validation {
                step,
                dice: d,
                iou: i,
                is_base: false,
                best: improved,
            });
            let may_stop = !has_cells || stage == Stage::Consolidate;
            if cfg.early_stop_patience > 0
                && may_stop
                && since_best >= cfg.early_stop_patience
                && step < sched.steps
            {
                stopped_early = true;
                break;
            }
        }
    }
    let _ = std::fs::remove_dir_all(&rdir);
    if cfg.save_final {
        let valid = model.valid();
        let card = AdapterCard::new(&valid, info, &cfg.adapter, cfg.train_decoder);
        save_adapter(&valid, &card, &final_path(out))?;
    }
    let improved = best.0 > base_score.0 && best.2 > 0;
    let chosen_ops = cells(&model)
        .iter()
        .filter_map(|(n, c)| c.chosen().map(|o| (n.clone(), o.name().to_string())))
        .collect();
    let message = if improved {
        format!(
            "adapted model beats the base on the validation split: Dice {:.4} → {:.4}, IoU {:.4} → {:.4} (best at step {})",
            base_score.0, best.0, base_score.1, best.1, best.2
        )
    } else {
        if out.exists() && state.is_none() {
            let _ = std::fs::remove_file(out);
        }
        format!(
            "no adapter beat the base model on the validation split (base Dice {:.4}; no validation improved on it by {MIN_GAIN}); the base model stays active. \
             Try: more annotated objects (validation has {}), a prompt mix closer to how you will prompt, or fewer steps / a lower learning rate",
            base_score.0,
            data.val.len()
        )
    };
    let outcome = TrainOutcome {
        base_dice: base_score.0,
        base_iou: base_score.1,
        best_dice: best.0,
        best_iou: best.1,
        best_step: best.2,
        improved,
        adapter_path: improved.then(|| out.to_path_buf()),
        steps_done: step,
        seconds: t0.elapsed().as_secs_f64(),
        stopped_early,
        chosen_ops,
        message,
    };
    emit(TrainEvent::Finished(outcome.clone()));
    Ok(Some(outcome))
}

/// The final trained model of the last step is not kept: the adapter file holds the best one.
#[allow(clippy::too_many_arguments)]
fn save_resume(
    model: &Sam,
    optim: &ModuleOptimizer,
    cfg: &TrainConfig,
    info: &CheckpointInfo,
    next_step: usize,
    base_score: (f64, f64),
    best: (f64, f64, usize),
    since_best: usize,
    dir: &Path,
) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let valid = model.valid();
    let mut store = SafetensorsStore::from_bytes(None).with_regex(tensor_regex(cfg.train_decoder));
    valid
        .save_into(&mut store)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    atomic_write(
        &dir.join("model.safetensors"),
        &store.get_bytes().map_err(|e| anyhow::anyhow!("{e}"))?,
    )?;
    let bytes = optim.into_bytes().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    atomic_write(&dir.join("optim.bpk"), &bytes)?;
    let mut cell_states = Vec::new();
    let mut m = valid.clone();
    crate::adapt::for_each_slot(&mut m, |slot_info, slot, _| {
        if let Some(a) = slot {
            for b in &a.branches {
                if let Some(c) = &b.cell {
                    cell_states.push((slot_info.name.clone(), c.state));
                }
            }
        }
    });
    let st = ResumeState {
        config: cfg.clone(),
        base_sha256: info.sha256.clone(),
        next_step,
        base_score,
        best,
        since_best,
        cell_states,
    };
    atomic_write(
        &dir.join("state.json"),
        serde_json::to_string_pretty(&st)?.as_bytes(),
    )
}
