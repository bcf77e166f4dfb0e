//! The inference cases: encoder, prompt → mask (with its breakdown), throughput, and single
//! ops at the models' shapes.

use anyhow::Result;
use burn::prelude::*;

use std::time::Instant;

use image::RgbImage;

use super::measure::{
    Calls, MemProbe, config_by_name, input_tensor, lcg_data, sync, test_image, time_calls,
};
use super::{BenchArgs, Record};
use crate::device::ComputeDevice;
use crate::predict::{Predictor, PromptInput};
use crate::sam::Sam;

pub(super) fn bench_encoder(name: &str, args: &BenchArgs, dev: &ComputeDevice) -> Result<Record> {
    let cfg = config_by_name(name)?;
    let d = &dev.device;
    let sam = Sam::new(&cfg, d);
    let s = cfg.img_size();
    let x = input_tensor(s, 1, 1, d);
    sync(d);
    let probe = MemProbe::start(dev);
    let calls = time_calls(args, args.iters, || {
        let e = sam.embed_image(x.clone());
        sync(d);
        drop(e);
    });
    let mut r = Record::from_calls(format!("encoder/{name}"), calls);
    (r.peak_bytes, r.mem_kind) = probe.finish();
    r.note = format!("1x3x{s}x{s} f32, random weights");
    Ok(r)
}

pub(super) fn bench_prompt(
    name: &str,
    args: &BenchArgs,
    dev: &ComputeDevice,
) -> Result<Vec<Record>> {
    let cfg = config_by_name(name)?;
    let d = &dev.device;
    let predictor = Predictor::new(Sam::new(&cfg, d), d.clone());
    let sz = args.image_size;
    let img = test_image(sz);
    let emb = predictor.set_image(&img);
    sync(d);
    let f = sz as f64;
    let prompt = PromptInput {
        bbox: Some([0.2 * f, 0.25 * f, 0.7 * f, 0.8 * f]),
        ..Default::default()
    };
    let case = format!("prompt/{name}/box{sz}");
    let calls = time_calls(args, args.prompt_iters, || {
        let p = predictor.predict(&emb, &prompt, false);
        std::hint::black_box(&p.masks);
    });
    let mut full = Record::from_calls(case.clone(), calls);
    full.note = format!(
        "box on a {sz}x{sz} image: prompt encoder + mask decoder + upscaling to {sz}x{sz}, host copy included"
    );
    // Split: decoder alone, then post-processing alone (both synchronised).
    let prompts = predictor.prompt_tensors(&prompt, emb.original_size);
    let calls = time_calls(args, args.prompt_iters, || {
        let out = predictor
            .model
            .decode(emb.embedding.clone(), &prompts, false);
        let _ = out.low_res_masks.into_data();
    });
    let mut dec = Record::from_calls(format!("{case}/decode"), calls);
    dec.note = "prompt encoder + mask decoder, low-res logits read back".into();
    let low = predictor
        .model
        .decode(emb.embedding.clone(), &prompts, false)
        .low_res_masks;
    sync(d);
    let calls = time_calls(args, args.prompt_iters, || {
        let m = predictor
            .model
            .postprocess_masks(low.clone(), emb.input_size, emb.original_size);
        let _ = m.into_data();
    });
    let mut post = Record::from_calls(format!("{case}/postprocess"), calls);
    post.note = format!("bilinear 256→1024, crop, bilinear →{sz}, read back");
    // Where the decoder's time goes: the dense positional encoding (recomputed per call) and
    // the output upscaling (two transposed convs, LayerNorm2d, GELU); the two-way transformer
    // is the rest of `decode`.
    let sam = &predictor.model;
    let calls = time_calls(args, args.prompt_iters, || {
        let _ = sam.prompt_encoder.get_dense_pe().into_data();
    });
    let mut pe = Record::from_calls(format!("{case}/decode/dense_pe"), calls);
    pe.note = "prompt_encoder.get_dense_pe (64×64 random-Fourier features)".into();
    let x = emb.embedding.clone();
    let calls = time_calls(args, args.prompt_iters, || {
        let _ = sam
            .mask_decoder
            .output_upscaling
            .forward(x.clone())
            .into_data();
    });
    let mut up = Record::from_calls(format!("{case}/decode/upscaling"), calls);
    up.note = "output_upscaling on (1, 256, 64, 64)".into();
    Ok(vec![full, dec, post, pe, up])
}

pub(super) fn bench_throughput(
    name: &str,
    args: &BenchArgs,
    dev: &ComputeDevice,
) -> Result<Record> {
    let cfg = config_by_name(name)?;
    let d = &dev.device;
    let predictor = Predictor::new(Sam::new(&cfg, d), d.clone());
    let sz = args.image_size;
    let images: Vec<RgbImage> = (0..args.images.max(1)).map(|_| test_image(sz)).collect();
    let f = sz as f64;
    let prompt = PromptInput {
        bbox: Some([0.2 * f, 0.25 * f, 0.7 * f, 0.8 * f]),
        ..Default::default()
    };
    let mut per_image = Vec::new();
    for img in &images {
        let t = Instant::now();
        let emb = predictor.set_image(img);
        let p = predictor.predict(&emb, &prompt, false);
        std::hint::black_box(&p.masks);
        per_image.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let per_image = Calls {
        ms: per_image,
        warmup: 0,
    };
    let mut r = Record::from_calls(format!("throughput/{name}"), per_image);
    r.per_s = r.warm_ms.map(|ms| 1e3 / ms);
    r.note = format!(
        "{} images of {sz}x{sz}, each: embedding + one box → mask; per_s from the warm median",
        images.len()
    );
    Ok(r)
}

/// Single ops at shapes the models use; `note` carries the achieved GFLOP/s.
pub(super) fn bench_ops(args: &BenchArgs, dev: &ComputeDevice) -> Vec<Record> {
    let want = |name: &str| args.ops_filter.as_deref().is_none_or(|f| name.contains(f));
    use burn::tensor::activation::{gelu, softmax};
    use burn::tensor::module::{conv_transpose2d, conv2d, interpolate};
    use burn::tensor::ops::{
        ConvOptions, ConvTransposeOptions, InterpolateMode, InterpolateOptions,
    };
    let d = &dev.device;
    let rnd = |shape: Vec<usize>, seed: u64| -> TensorData {
        let n = shape.iter().product();
        TensorData::new(lcg_data(n, seed), shape)
    };
    let t4 = |s: [usize; 4], seed| Tensor::<4>::from_data(rnd(s.to_vec(), seed), d);
    let t3 = |s: [usize; 3], seed| Tensor::<3>::from_data(rnd(s.to_vec(), seed), d);
    let mut out = Vec::new();
    let mut run = |name: &str, flop: f64, f: &mut dyn FnMut()| {
        let calls = time_calls(args, args.iters.max(3), || {
            f();
            sync(d);
        });
        let mut r = Record::from_calls(format!("ops/{name}"), calls);
        r.note = format!("{:.1} GFLOP/s", flop / (r.value_ms() * 1e-3) / 1e9);
        out.push(r);
    };
    // Decoder-sized matmuls.
    if want("matmul 4096x256x128") {
        let (a, b) = (t3([1, 4096, 256], 1), t3([1, 256, 128], 2));
        run(
            "matmul 4096x256x128",
            2.0 * 4096.0 * 256.0 * 128.0,
            &mut || {
                let _ = a.clone().matmul(b.clone()).into_data();
            },
        );
    }
    if want("matmul 56x256x4096") {
        let (a, b) = (t3([1, 56, 256], 3), t3([1, 256, 4096], 4));
        run(
            "matmul 56x256x4096",
            2.0 * 56.0 * 256.0 * 4096.0,
            &mut || {
                let _ = a.clone().matmul(b.clone()).into_data();
            },
        );
    }
    // Encoder-sized: ViT-B MLP and a global-attention head.
    if want("matmul 4096x768x3072") {
        let (a, b) = (t3([1, 4096, 768], 5), t3([1, 768, 3072], 6));
        run(
            "matmul 4096x768x3072",
            2.0 * 4096.0 * 768.0 * 3072.0,
            &mut || {
                let _ = a.clone().matmul(b.clone()).into_data();
            },
        );
    }
    if want("attn scores 4096x64x4096") {
        let (q, k) = (t3([1, 4096, 64], 7), t3([1, 64, 4096], 8));
        run(
            "attn scores 4096x64x4096",
            2.0 * 4096.0 * 64.0 * 4096.0,
            &mut || {
                let _ = q.clone().matmul(k.clone()).into_data();
            },
        );
    }
    if want("softmax 12x4096x4096") {
        let s = t3([12, 4096, 4096], 9);
        run(
            "softmax 12x4096x4096",
            5.0 * 12.0 * 4096.0 * 4096.0,
            &mut || {
                let _ = softmax(s.clone(), 2).into_data();
            },
        );
    }
    // Decoder upscaling.
    if want("conv_transpose 256->64 @64") {
        let x = t4([1, 256, 64, 64], 10);
        let w = t4([256, 64, 2, 2], 11);
        run(
            "conv_transpose 256->64 @64",
            2.0 * 64.0 * 64.0 * 256.0 * 64.0 * 4.0,
            &mut || {
                let _ = conv_transpose2d(
                    x.clone(),
                    w.clone(),
                    None,
                    ConvTransposeOptions::new([2, 2], [0, 0], [0, 0], [1, 1], 1),
                )
                .into_data();
            },
        );
    }
    if want("gelu 64x128x128") {
        let x = t4([1, 64, 128, 128], 12);
        run("gelu 64x128x128", 1.0e6, &mut || {
            let _ = gelu(x.clone()).into_data();
        });
    }
    // The model's GELU: on the CPU outside autodiff it runs the host kernel.
    if want("gelu (model's) 64x128x128") {
        let x = t4([1, 64, 128, 128], 12);
        run("gelu (model's) 64x128x128", 1.0e6, &mut || {
            let _ = crate::sam::common::gelu(x.clone()).into_data();
        });
    }
    if want("bilinear 4x256->1024") {
        let m = t4([1, 4, 256, 256], 13);
        let opts = |s: usize| {
            InterpolateOptions::new(InterpolateMode::Bilinear)
                .with_output_size([s, s])
                .with_align_corners(false)
        };
        run(
            "bilinear 4x256->1024",
            4.0 * 1024.0 * 1024.0 * 8.0,
            &mut || {
                let _ = interpolate(m.clone(), opts(1024)).into_data();
            },
        );
    }
    // TinyViT stage-0 sized convs.
    if want("conv1x1 64->256 @256") {
        let x = t4([1, 64, 256, 256], 14);
        let w = t4([256, 64, 1, 1], 15);
        run(
            "conv1x1 64->256 @256",
            2.0 * 256.0 * 256.0 * 64.0 * 256.0,
            &mut || {
                let _ = conv2d(
                    x.clone(),
                    w.clone(),
                    None,
                    ConvOptions::new([1, 1], [0, 0], [1, 1], 1),
                )
                .into_data();
            },
        );
    }
    if want("dwconv3x3 256 @256") {
        let x = t4([1, 256, 256, 256], 16);
        let w = t4([256, 1, 3, 3], 17);
        run(
            "dwconv3x3 256 @256",
            2.0 * 256.0 * 256.0 * 256.0 * 9.0,
            &mut || {
                let _ = conv2d(
                    x.clone(),
                    w.clone(),
                    None,
                    ConvOptions::new([1, 1], [1, 1], [1, 1], 256),
                )
                .into_data();
            },
        );
    }
    out
}
