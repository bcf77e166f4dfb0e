//! Validation during training: the `eval` protocol's two prompts on the held-out objects,
//! per-object scores, and the paired bootstrap interval of a candidate's gain over the base.

use std::collections::HashMap;

use burn::prelude::*;

use super::dataset::TrainData;
use crate::adapt::set_training;
use crate::eval::{EvalPrompt, protocol_prompt};
use crate::metrics::{dice, iou};
use crate::predict::Predictor;
use crate::sam::Sam;

/// Dice and IoU on the validation objects at the original resolution, averaged over the two
/// prompts of the `eval` protocol (tight box; one interior point, best of 3 masks). Both count
/// because the adapted model must stay promptable the way users prompt it: a run that only
/// improves boxes while points get worse is not an improvement.
pub fn validate(model: &Sam, data: &TrainData, device: &Device) -> (f64, f64) {
    let v = validate_objects(model, data, device);
    (v.dice, v.iou)
}

/// Validation scores with the per-object Dice (mean over the object's prompts), in a fixed
/// object order so two models' lists pair up.
pub struct ValScores {
    pub dice: f64,
    pub iou: f64,
    pub per_object: Vec<f64>,
}

pub fn validate_objects(model: &Sam, data: &TrainData, device: &Device) -> ValScores {
    let mut eval_model = model.clone();
    set_training(&mut eval_model, false);
    let predictor = Predictor::new(eval_model, device.clone());
    let (mut sd, mut si, mut n) = (0.0, 0.0, 0usize);
    let mut per_object = Vec::new();
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
            let (mut od, mut on) = (0.0, 0usize);
            for kind in [EvalPrompt::Box, EvalPrompt::Point] {
                let Some((p, multimask)) = protocol_prompt(gt, w, h, kind) else {
                    continue;
                };
                let pred = predictor.predict(&emb, &p, multimask);
                let m = pred.binary(pred.best());
                let d = dice(&m, gt);
                sd += d;
                si += iou(&m, gt);
                od += d;
                on += 1;
                n += 1;
            }
            if on > 0 {
                per_object.push(od / on as f64);
            }
        }
    }
    let (dice, iou) = if n == 0 {
        (0.0, 0.0)
    } else {
        (sd / n as f64, si / n as f64)
    };
    ValScores {
        dice,
        iou,
        per_object,
    }
}

/// 95% bootstrap interval of the mean per-object gain `adapted - base` (paired, seeded).
pub fn gain_interval(adapted: &[f64], base: &[f64]) -> Option<(f64, f64)> {
    use rand::{Rng, SeedableRng};
    let d: Vec<f64> = adapted.iter().zip(base).map(|(a, b)| a - b).collect();
    if d.is_empty() || adapted.len() != base.len() {
        return None;
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(0xB007);
    let n = 4000;
    let mut means: Vec<f64> = (0..n)
        .map(|_| {
            (0..d.len())
                .map(|_| d[rng.random_range(0..d.len())])
                .sum::<f64>()
                / d.len() as f64
        })
        .collect();
    means.sort_by(f64::total_cmp);
    Some((means[n * 25 / 1000], means[n * 975 / 1000 - 1]))
}
