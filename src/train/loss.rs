//! Segmentation losses on low-resolution logits.

use burn::prelude::*;
use burn::tensor::activation::{log_sigmoid, sigmoid};
use burn::tensor::module::avg_pool2d;
use burn::tensor::ops::AvgPoolOptions;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum LossKind {
    /// Binary cross-entropy + soft Dice.
    BceDice,
    /// PraNet structure loss: boundary-weighted BCE + weighted IoU.
    Structure,
}

/// Per-sample BCE with logits, mean over pixels: (N, 1, h, w) -> (N).
fn bce(logits: Tensor<4>, target: Tensor<4>, weight: Option<Tensor<4>>) -> Tensor<1> {
    let [n, _, h, w] = logits.dims();
    // -[t·log σ(x) + (1-t)·log σ(-x)]
    let l = (target.clone() * log_sigmoid(logits.clone())
        + (target.neg() + 1.0) * log_sigmoid(logits.neg()))
    .neg();
    match weight {
        Some(wt) => {
            (l * wt.clone()).reshape([n, h * w]).sum_dim(1).reshape([n])
                / wt.reshape([n, h * w]).sum_dim(1).reshape([n])
        }
        None => l.reshape([n, h * w]).mean_dim(1).reshape([n]),
    }
}

/// Per-sample soft Dice loss: (N, 1, h, w) -> (N).
fn dice(logits: Tensor<4>, target: Tensor<4>) -> Tensor<1> {
    let [n, _, h, w] = logits.dims();
    let p = sigmoid(logits).reshape([n, h * w]);
    let t = target.reshape([n, h * w]);
    let inter = (p.clone() * t.clone()).sum_dim(1);
    let denom = p.sum_dim(1) + t.sum_dim(1);
    ((inter * 2.0 + 1.0) / (denom + 1.0))
        .neg()
        .add_scalar(1.0)
        .reshape([n])
}

/// PraNet's structure loss: pixels near boundaries weigh up to 6×.
fn structure(logits: Tensor<4>, target: Tensor<4>) -> Tensor<1> {
    let [n, _, h, w] = logits.dims();
    let pooled = avg_pool2d(
        target.clone(),
        AvgPoolOptions::new([31, 31])
            .with_stride([1, 1])
            .with_padding([15, 15])
            .with_count_include_pad(true),
    );
    let weit = (pooled - target.clone()).abs() * 5.0 + 1.0;
    let wbce = bce(logits.clone(), target.clone(), Some(weit.clone()));
    let p = sigmoid(logits);
    let inter = (p.clone() * target.clone() * weit.clone())
        .reshape([n, h * w])
        .sum_dim(1);
    let union = ((p + target) * weit).reshape([n, h * w]).sum_dim(1);
    let wiou = ((inter.clone() + 1.0) / (union - inter + 1.0))
        .neg()
        .add_scalar(1.0)
        .reshape([n]);
    wbce + wiou
}

/// Loss of each sample: (N, 1, h, w) logits and targets in [0, 1] -> (N).
pub fn mask_loss(kind: LossKind, logits: Tensor<4>, target: Tensor<4>) -> Tensor<1> {
    match kind {
        LossKind::BceDice => bce(logits.clone(), target.clone(), None) + dice(logits, target),
        LossKind::Structure => structure(logits, target),
    }
}

/// IoU of thresholded logits with binary targets, per sample (no gradient): (N, 1, h, w) -> (N).
pub fn hard_iou(logits: Tensor<4>, target: Tensor<4>) -> Tensor<1> {
    let [n, _, h, w] = logits.dims();
    let p = logits
        .detach()
        .greater_elem(0.0)
        .float()
        .reshape([n, h * w]);
    let t = target
        .detach()
        .greater_elem(0.5)
        .float()
        .reshape([n, h * w]);
    let inter = (p.clone() * t.clone()).sum_dim(1);
    let union = (p + t).clamp_max(1.0).sum_dim(1);
    (inter / (union + 1e-6)).reshape([n])
}
