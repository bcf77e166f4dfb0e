//! The `train/<model>/<method>` case: one training step with the trainer's recipe.

use anyhow::Result;
use burn::module::{Module, ParamGroup};
use burn::optim::{AdamConfig, AdamWConfig, GradientsParams};
use burn::prelude::*;

use super::measure::{MemProbe, config_by_name, input_tensor, sync, time_calls};
use super::{BenchArgs, Record};
use crate::adapt::conv_lora::take_aux_losses;
use crate::adapt::{
    AdapterConfig, CellState, Method, apply_adapters, first_adapted_stage, set_cell_states,
    set_training,
};
use crate::device::ComputeDevice;
use crate::sam::{Prompts, Sam};
use crate::train::loss::{LossKind, hard_iou, mask_loss};

/// The trainer's trainable set: adapters and the mask decoder.
pub(super) fn trainable_group() -> ParamGroup {
    ParamGroup::from_regex(r"(_adapter\.)|(mask_decoder\.)").expect("valid regex")
}

pub(super) fn bench_train(
    name: &str,
    method: Method,
    ckpt: bool,
    args: &BenchArgs,
    dev: &ComputeDevice,
) -> Result<Record> {
    let cfg = config_by_name(name)?;
    // The case is named `+blocksA-B` and the PyTorch side adapts A..=B.
    if !args.blocks.windows(2).all(|w| w[1] == w[0] + 1) {
        anyhow::bail!("--blocks must be consecutive ascending indices, e.g. 8,9,10,11");
    }
    let d = &dev.device;
    let s = cfg.img_size();
    let ad = if ckpt {
        d.clone().autodiff().gradient_checkpointing()
    } else {
        d.clone().autodiff()
    };
    // With checkpointing the parameters are built on the autodiff device itself: `fork` does
    // not carry the checkpointing strategy over (burn 0.22.1 then panics on "strategy
    // mismatch" at the first op that mixes a parameter with an input).
    let home = if ckpt { &ad } else { d };
    let mut model = Sam::new(&cfg, home);
    let acfg = AdapterConfig {
        method,
        blocks: args.blocks.clone(),
        ..Default::default()
    };
    apply_adapters(&mut model, &acfg, home);
    let first = first_adapted_stage(&model).unwrap_or(0);
    // Frozen prefix, computed once outside autodiff (the trainer caches it per image, from the
    // base model on the plain device). With checkpointing the model lives on the autodiff
    // device, so its plain twin (`valid`) computes it: on the autodiff device the prefix's
    // blocks would record a graph and hold their activations in the pool.
    let x = input_tensor(s, 1, 3, d);
    let prefix = if ckpt {
        model.valid().image_encoder.forward_prefix(x, first)
    } else {
        model.image_encoder.forward_prefix(x, first)
    };
    let prefix_data = prefix.into_data();
    eprintln!(
        "    train/{name}/{}: model and frozen prefix ready",
        method.name()
    );
    // As the trainer does: gradient flags take effect on the autodiff device.
    let model = if ckpt { model } else { model.fork(&ad) };
    let mut model = model
        .train()
        .no_grad()
        .set_require_grad_group(trainable_group(), true);
    set_training(&mut model, true);
    if method.has_cell() {
        set_cell_states(&mut model, CellState::Mixed);
    }
    let prefix = Tensor::<4>::from_data(prefix_data, &ad);
    let k = args.objects.max(1);
    let low = s / 4;
    // k boxes in the 1024 frame and their filled-rectangle targets at 256².
    let boxes: Vec<[f32; 4]> = (0..k)
        .map(|i| {
            let o = 64.0 + 96.0 * i as f32;
            [o, o * 0.8, o + 300.0, o * 0.8 + 260.0]
        })
        .collect();
    let mut tgt = vec![0f32; k * low * low];
    for (i, b) in boxes.iter().enumerate() {
        let (x0, y0, x1, y1) = (
            (b[0] / 4.0) as usize,
            (b[1] / 4.0) as usize,
            (b[2] / 4.0) as usize,
            (b[3] / 4.0) as usize,
        );
        for y in y0..y1.min(low) {
            for x in x0..x1.min(low) {
                tgt[i * low * low + y * low + x] = 1.0;
            }
        }
    }
    let box_data: Vec<f32> = boxes.iter().flatten().copied().collect();
    let mut optim = AdamWConfig::new()
        .with_weight_decay(0.01)
        .init()
        .with_group(
            ParamGroup::from_predicate("cell.alpha"),
            AdamConfig::new().build(),
            None,
        );
    let mut step = |model: Sam| -> Sam {
        let target = Tensor::<4>::from_data(TensorData::new(tgt.clone(), [k, 1, low, low]), &ad);
        let boxes_t = Tensor::<2>::from_data(TensorData::new(box_data.clone(), [k, 4]), &ad);
        let emb = model.image_encoder.forward_suffix(prefix.clone(), first);
        let prompts = Prompts {
            boxes: Some(boxes_t),
            ..Default::default()
        };
        let out = model.decode(emb, &prompts, false);
        let mask_l = mask_loss(LossKind::BceDice, out.low_res_masks.clone(), target.clone()).mean();
        let actual = hard_iou(out.low_res_masks, target);
        let pred_iou = out.iou_predictions.reshape([k]);
        let iou_l = (pred_iou - actual).square().mean();
        let mut total = mask_l + iou_l;
        if let Some(a) = take_aux_losses().into_iter().reduce(|a, b| a + b) {
            total = total + a;
        }
        let loss = total.clone().detach().into_scalar::<f32>();
        std::hint::black_box(loss);
        let grads = GradientsParams::from_grads(total.backward(), &model);
        let model = optim.step(1e-4, model, grads);
        sync(&ad);
        model
    };
    let mut slot = Some(model);
    let probe = MemProbe::start(dev);
    let calls = time_calls(args, args.iters, || {
        let m = slot.take().expect("model");
        slot = Some(step(m));
    });
    let case = format!(
        "train/{name}/{}{}{}",
        method.name(),
        if ckpt { "+ckpt" } else { "" },
        match (args.blocks.first(), args.blocks.last()) {
            (Some(a), Some(b)) => format!("+blocks{a}-{b}"),
            _ => String::new(),
        }
    );
    let mut r = Record::from_calls(case, calls);
    (r.peak_bytes, r.mem_kind) = probe.finish();
    r.note = format!(
        "1 image {s}x{s}, {k} box prompts, adapters on {} qkv (rank 4){}, mask decoder trained, AdamW; frozen prefix (stages < {first}) cached",
        if args.blocks.is_empty() {
            "every".to_string()
        } else {
            format!("blocks {:?}", args.blocks)
        },
        if method.has_cell() {
            ", cells in the search stage (all ops, α trained)"
        } else {
            ""
        }
    );
    Ok(r)
}
