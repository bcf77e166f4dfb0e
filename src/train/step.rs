//! One training micro-step: sample an image and some of its objects, build prompts and
//! targets, run the adapted suffix of the encoder and the decoder, and compute the loss.

use std::collections::{HashMap, VecDeque};

use burn::prelude::*;
use rand::Rng;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::config::TrainConfig;
use super::dataset::{Dihedral, TrainData, jitter_intensity};
use super::loss::{hard_iou, mask_loss};
use super::prompts::{PromptKind, sample_prompt};
use crate::adapt::conv_lora::take_aux_losses;
use crate::predict::PromptInput;
use crate::predict::transforms::{input_frame, preprocess_for};
use crate::sam::Sam;
use crate::sam::SamConfig;

/// Deterministic per-(seed, step, salt) generator, so a resumed run draws the same batches.
pub fn step_rng(seed: u64, step: usize, salt: u64) -> StdRng {
    StdRng::seed_from_u64(
        seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ (step as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9)
            ^ salt,
    )
}

/// Training objects a step may draw from, with the images that hold them.
pub struct ObjectPool {
    pub objects: Vec<usize>,
    pub images: Vec<usize>,
}

impl ObjectPool {
    pub fn new(data: &TrainData, objects: Vec<usize>) -> Self {
        let mut images: Vec<usize> = objects.iter().map(|&o| data.objects[o].image).collect();
        images.sort_unstable();
        images.dedup();
        Self { objects, images }
    }

    /// Two disjoint halves of the training objects (seeded), for bi-level search: the first
    /// trains the weights, the second α.
    pub fn halves(data: &TrainData, seed: u64) -> (Self, Self) {
        let mut objs = data.train.clone();
        objs.shuffle(&mut StdRng::seed_from_u64(seed ^ 0xB11E_7E1A));
        let cut = objs.len().div_ceil(2);
        let second = objs.split_off(cut);
        (Self::new(data, objs), Self::new(data, second))
    }
}

/// The frozen encoder prefix per (image, augmentation), computed once on the plain device.
pub struct PrefixCache {
    entries: HashMap<(usize, u8), (Tensor<4>, [usize; 2])>,
    order: VecDeque<(usize, u8)>,
    first_stage: usize,
}

impl PrefixCache {
    const CAPACITY: usize = 64;

    pub fn new(first_stage: usize) -> Self {
        Self {
            entries: HashMap::new(),
            order: VecDeque::new(),
            first_stage,
        }
    }

    pub fn first_stage(&self) -> usize {
        self.first_stage
    }

    /// (prefix tokens on the autodiff device, [h, w] of the augmented image).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn get(
        &mut self,
        base: &Sam,
        data: &TrainData,
        cfg: &TrainConfig,
        img_i: usize,
        d: Dihedral,
        device: &Device,
        ad: &Device,
    ) -> (Tensor<4>, [usize; 2]) {
        let key = (img_i, d.0);
        if !self.entries.contains_key(&key) {
            let src = &data.images[img_i];
            let (w, h) = d.out_size(src.width() as usize, src.height() as usize);
            let mut aug = d.apply_image(src);
            if cfg.augment && cfg.intensity_jitter > 0.0 {
                let mut jr = step_rng(cfg.seed, img_i * 8 + d.0 as usize, 0x7177);
                aug = jitter_intensity(&aug, &mut jr, cfg.intensity_jitter);
            }
            let img_size = base.img_size();
            // The family's own input processing (SAM's, LiteMedSAM's or MedSAM's).
            let p = preprocess_for(&aug, &base.config);
            let x =
                Tensor::<4>::from_data(TensorData::new(p.data, [1, 3, img_size, img_size]), device);
            let pre = base.image_encoder.forward_prefix(x, self.first_stage);
            let pre = Tensor::<4>::from_data(pre.into_data(), ad);
            if self.order.len() >= Self::CAPACITY
                && let Some(old) = self.order.pop_front()
            {
                self.entries.remove(&old);
            }
            self.order.push_back(key);
            self.entries.insert(key, (pre, [h, w]));
        }
        self.entries[&key].clone()
    }
}

/// Losses of one micro-step; `total` carries the graph.
pub struct Losses {
    pub total: Tensor<1>,
    pub mask: f64,
    pub iou: f64,
    pub aux: f64,
}

/// Everything a micro-step reads besides the model.
pub struct StepInputs<'a> {
    pub base: &'a Sam,
    pub data: &'a TrainData,
    pub cfg: &'a TrainConfig,
    pub device: &'a Device,
    pub ad: &'a Device,
}

/// One micro-step's batch: an image's cached prefix and prompts with their targets.
#[derive(Clone)]
pub struct Batch {
    prefix: Tensor<4>,
    /// [h, w] of the augmented image.
    sizes: [usize; 2],
    kind: PromptKind,
    prompts: Vec<PromptInput>,
    /// (k, 1, low, low) soft targets on the autodiff device.
    target: Tensor<4>,
}

impl Batch {
    /// The batch off the autodiff device, for forward passes that never run backward.
    pub fn into_inner(self) -> Batch {
        Batch {
            prefix: self.prefix.inner(),
            target: self.target.inner(),
            ..self
        }
    }
}

/// Draws a batch with `rng` from `pool`: an image, its augmentation, up to `objects_per_step`
/// of its objects, one prompt kind for all of them, and their targets.
pub fn next_batch(
    inp: &StepInputs,
    cache: &mut PrefixCache,
    pool: &ObjectPool,
    rng: &mut StdRng,
) -> Batch {
    let (data, cfg) = (inp.data, inp.cfg);
    inp.ad.seed(rng.random());
    let img_i = pool.images[rng.random_range(0..pool.images.len())];
    let d = Dihedral(if cfg.augment {
        rng.random_range(0..8u8)
    } else {
        0
    });
    let src = &data.images[img_i];
    let (w0, h0) = (src.width() as usize, src.height() as usize);
    let (w, h) = d.out_size(w0, h0);
    let (prefix, sizes) = cache.get(inp.base, data, cfg, img_i, d, inp.device, inp.ad);
    let in_image: Vec<usize> = pool
        .objects
        .iter()
        .copied()
        .filter(|&o| data.objects[o].image == img_i)
        .collect();
    let mut objs = in_image.clone();
    objs.shuffle(rng);
    objs.truncate(cfg.objects_per_step.max(1));
    let kind = cfg.prompt_mix.sample(rng);
    let n_points = rng.random_range(1..=cfg.prompt_mix.max_points.max(1));
    let (prompts, targets): (Vec<PromptInput>, Vec<Vec<bool>>) = if kind == PromptKind::None {
        // No prompt: the target is every pooled object of the image.
        let mut union = vec![false; w * h];
        for &o in &in_image {
            for (u, m) in union
                .iter_mut()
                .zip(d.apply_mask(&data.objects[o].mask, w0, h0))
            {
                *u |= m;
            }
        }
        (vec![PromptInput::default()], vec![union])
    } else {
        let masks: Vec<Vec<bool>> = objs
            .iter()
            .map(|&o| d.apply_mask(&data.objects[o].mask, w0, h0))
            .collect();
        let p = masks
            .iter()
            .map(|m| sample_prompt(kind, m, w, h, &cfg.prompt_mix, n_points, rng))
            .collect();
        (p, masks)
    };
    // 4 × the embedding side: 256 for SAM/MobileSAM/MedSAM at 1024², and for LiteMedSAM at 256².
    let low = 4 * inp.base.config.encoder.embedding_size();
    let tgt: Vec<f32> = targets
        .iter()
        .flat_map(|m| low_res_target(m, w, h, &inp.base.config, low))
        .collect();
    let shape = [targets.len(), 1, low, low];
    Batch {
        prefix,
        sizes,
        kind,
        prompts,
        target: Tensor::<4>::from_data(TensorData::new(tgt, shape), inp.ad),
    }
}

/// One micro-step's loss on a batch drawn with `rng` from `pool`.
pub fn batch_loss(
    model: &Sam,
    inp: &StepInputs,
    cache: &mut PrefixCache,
    pool: &ObjectPool,
    rng: &mut StdRng,
) -> anyhow::Result<Losses> {
    let b = next_batch(inp, cache, pool, rng);
    loss_of(model, b, inp, cache.first_stage())
}

/// The model's loss on `b`: mask loss of each object's best mask (SAM's ambiguity-aware loss
/// when it answers with several), the IoU head's error, and Conv-LoRA's auxiliary loss.
pub fn loss_of(
    model: &Sam,
    b: Batch,
    inp: &StepInputs,
    first_stage: usize,
) -> anyhow::Result<Losses> {
    let (cfg, ad) = (inp.cfg, inp.ad);
    let [k, _, low, _] = b.target.dims();
    let emb = model.image_encoder.forward_suffix(b.prefix, first_stage);
    let prompts_t = if b.kind == PromptKind::None {
        crate::sam::Prompts::default()
    } else {
        batch_prompts(&b.prompts, b.sizes, &inp.base.config, ad)
    };
    let multimask = b.kind == PromptKind::Points;
    let out = model.decode(emb, &prompts_t, multimask);
    let target = b.target;
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
    let aux_l = take_aux_losses().into_iter().reduce(|a, b| a + b);
    let mut total = mask_l.clone() + iou_l.clone() * cfg.iou_loss_weight;
    if let Some(a) = &aux_l {
        total = total + a.clone();
    }
    let aux = match aux_l {
        Some(a) => read_scalar(a.detach())?,
        None => 0.0,
    };
    Ok(Losses {
        mask: read_scalar(mask_l.detach())?,
        iou: read_scalar(iou_l.detach())?,
        aux,
        total,
    })
}

/// Reads a loss back from the device. A failed GPU execution (out of memory, most often when
/// other programs share the card) surfaces here as an error rather than a panic.
pub fn read_scalar(t: Tensor<1>) -> anyhow::Result<f64> {
    t.try_into_scalar::<f32>().map(f64::from).map_err(|e| {
        anyhow::anyhow!(
            "the device failed while computing the loss ({e}); if it ran out of memory, \
             close other programs using it or lower the batch size"
        )
    })
}

/// Soft low-resolution target in the padded model frame: the fraction of each low-res cell
/// covered by the object (mask resized to the input frame by nearest neighbour).
pub fn low_res_target(
    mask: &[bool],
    w: usize,
    h: usize,
    config: &SamConfig,
    low: usize,
) -> Vec<f32> {
    let img_size = config.img_size();
    let (nh, nw) = input_frame([h, w], config);
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

fn batch_prompts(
    prompts: &[PromptInput],
    sizes: [usize; 2],
    config: &SamConfig,
    device: &Device,
) -> crate::sam::Prompts {
    use crate::predict::transforms::{box_for, coords_for};
    let k = prompts.len();
    let n = prompts[0].points.len();
    let points = (n > 0).then(|| {
        let coords: Vec<f32> = prompts
            .iter()
            .flat_map(|p| {
                p.points
                    .iter()
                    .flat_map(|q| coords_for([q.x, q.y], sizes, config))
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
            .flat_map(|p| box_for(p.bbox.expect("batch shares prompt kind"), sizes, config))
            .collect();
        Tensor::<2>::from_data(TensorData::new(b, [k, 4]), device)
    });
    crate::sam::Prompts {
        points,
        boxes,
        masks: None,
    }
}
