//! The `train/<model>/<method>` case: the trainer's own optimiser step (`Stepper::step`, the
//! one `train()` runs) on one synthetic image with box-prompted objects.

use anyhow::Result;
use burn::module::Module;

use super::measure::{MemProbe, config_by_name, sync, test_image, time_calls};
use super::{BenchArgs, Record};
use crate::adapt::{AdapterConfig, Method, apply_adapters};
use crate::device::ComputeDevice;
use crate::sam::Sam;
use crate::train::TrainConfig;
use crate::train::dataset::{Object, TrainData};
use crate::train::prompts::PromptMix;
use crate::train::schedule::{Schedule, Stage};
use crate::train::step::StepInputs;
use crate::train::stepper::{Stepper, enter_stage, make_optimizer, trainable};

/// The trainer's settings for this case: every step a box prompt (tight, no jitter) for each
/// of the `objects` objects, no augmentation, the mask decoder trained, a flat learning rate.
fn step_config(method: Method, args: &BenchArgs) -> TrainConfig {
    TrainConfig {
        adapter: AdapterConfig {
            method,
            blocks: args.blocks.clone(),
            ..Default::default()
        },
        schedule: Schedule {
            steps: 1 << 30,
            lr_warmup_frac: 0.0,
            ..Default::default()
        },
        objects_per_step: args.objects.max(1),
        train_decoder: true,
        prompt_mix: PromptMix {
            r#box: 1.0,
            points: 0.0,
            box_points: 0.0,
            none: 0.0,
            box_jitter: 0.0,
            max_points: 1,
        },
        augment: false,
        intensity_jitter: 0.0,
        ..Default::default()
    }
}

/// One `s`×`s` image holding `k` rectangles (boxes in the model's 1024 frame, as the PyTorch
/// side prompts), all of them training objects.
fn step_data(s: usize, k: usize) -> TrainData {
    let objects = (0..k)
        .map(|i| {
            let o = 64.0 + 96.0 * i as f32;
            let [x0, y0, x1, y1] = [o, o * 0.8, o + 300.0, o * 0.8 + 260.0].map(|v| v as usize);
            let mut mask = vec![false; s * s];
            for y in y0..y1.min(s) {
                mask[y * s + x0..y * s + x1.min(s)].fill(true);
            }
            let area = mask.iter().filter(|&&m| m).count();
            Object {
                image: 0,
                mask,
                area,
            }
        })
        .collect();
    let mut data = TrainData::new(vec![test_image(s)], vec!["bench".into()], objects);
    data.train = (0..k).collect();
    data
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
    let tcfg = step_config(method, args);
    let data = step_data(s, tcfg.objects_per_step);
    let mut model = Sam::new(&cfg, home);
    apply_adapters(&mut model, &tcfg.adapter, home);
    // The plain-device model the frozen prefix is computed with, as the trainer's base: on
    // the autodiff device the prefix's blocks would record a graph and hold their activations.
    let base = if ckpt { model.valid() } else { model.clone() };
    let model = if ckpt { model } else { model.fork(&ad) };
    let mut model = trainable(model, tcfg.train_decoder);
    if method.has_cell() {
        enter_stage(&mut model, Stage::Search, &tcfg.schedule);
    }
    let inputs = StepInputs {
        base: &base,
        data: &data,
        cfg: &tcfg,
        device: d,
        ad: &ad,
    };
    let mut stepper = Stepper::new(inputs, &model, make_optimizer(&tcfg));
    // Computed once before timing, as the trainer caches it per image.
    stepper.prime(0);
    let first = stepper.first_stage();
    eprintln!(
        "    train/{name}/{}: model and frozen prefix ready",
        method.name()
    );
    let mut slot = Some(model);
    let mut step = 0;
    let probe = MemProbe::start(dev);
    let calls = time_calls(args, args.iters, || {
        let m = slot.take().expect("model");
        let (m, losses) = stepper
            .step(m, step, Stage::Search)
            .expect("a training step");
        std::hint::black_box(losses.loss);
        sync(&ad);
        step += 1;
        slot = Some(m);
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
        "the trainer's step: 1 image {s}x{s}, {} box prompts, adapters on {} qkv (rank 4){}, mask decoder trained, AdamW; frozen prefix (stages < {first}) cached",
        tcfg.objects_per_step,
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
