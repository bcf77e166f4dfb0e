//! `segadapt predict --adapter`: each object's mask equals `segadapt segment --adapter` on the
//! same box (the single-image path, proven against the official code for the base model),
//! differs from the base model's, and a folder made with another adapter is not taken for a
//! finished run. The tiny random-weight MobileSAM fixture with a LoRA adapter whose up
//! projections are random, so the adapter really changes the model.

mod common;

use std::path::Path;

use burn::module::Param;
use burn::prelude::*;
use common::*;
use image::RgbImage;
use segadapt::adapt::file::{AdapterCard, save_adapter};
use segadapt::adapt::{AdapterConfig, Method, apply_adapters, for_each_branch};
use segadapt::sam::load_sam;

fn gray(path: &Path) -> Vec<bool> {
    image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_luma8()
        .as_raw()
        .iter()
        .map(|&v| v > 127)
        .collect()
}

/// A LoRA adapter for the tiny MobileSAM with random up projections (seeded).
fn write_adapter(path: &Path, seed: u64) {
    let dev = cpu();
    let (mut sam, info) = load_sam(
        &fixture("mobilesam_tiny.pth"),
        Some(fixture_config("mobilesam_tiny.json")),
        &dev,
    )
    .unwrap();
    let cfg = AdapterConfig {
        method: Method::Lora,
        rank: 4,
        alpha: 16.0,
        ..Default::default()
    };
    apply_adapters(&mut sam, &cfg, &dev);
    dev.seed(seed);
    for_each_branch(&mut sam, |b| {
        let dims = b.lora_b.dims();
        b.lora_b = Param::from_tensor(Tensor::random(
            dims,
            burn::tensor::Distribution::Normal(0.0, 0.5),
            &dev,
        ));
    });
    let card = AdapterCard::new(&sam, &info, &cfg, false);
    save_adapter(&sam, &card, path).unwrap();
}

#[test]
fn predict_with_an_adapter_equals_segment_with_it_and_differs_from_the_base() {
    let model = fixture("mobilesam_tiny.pth");
    let root = tempfile::tempdir().unwrap();
    let input = root.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let (w, h) = (96u32, 80u32);
    let mut img = RgbImage::new(w, h);
    for (x, y, p) in img.enumerate_pixels_mut() {
        let v = if (10..40).contains(&x) && (12..44).contains(&y)
            || (55..85).contains(&x) && (30..70).contains(&y)
        {
            220
        } else {
            (20 + (x * 3 + y * 5) % 40) as u8
        };
        *p = image::Rgb([v, v / 2 + 40, 255 - v]);
    }
    img.save(input.join("cells.png")).unwrap();
    let boxes = [[8u32, 10, 42, 46], [53, 28, 87, 72]];
    let prompts = root.path().join("prompts.csv");
    let mut csv = String::from("image,x0,y0,x1,y1\n");
    for b in &boxes {
        csv += &format!("cells.png,{},{},{},{}\n", b[0], b[1], b[2], b[3]);
    }
    std::fs::write(&prompts, csv).unwrap();
    let (ad1, ad2) = (
        root.path().join("a1.safetensors"),
        root.path().join("a2.safetensors"),
    );
    write_adapter(&ad1, 11);
    write_adapter(&ad2, 12);

    let predict = |out: &Path, adapter: Option<&Path>| {
        let mut args = vec![
            "predict",
            "--model",
            s(&model),
            "--input",
            s(&input),
            "--prompts",
            s(&prompts),
            "--out",
            s(out),
            "--objects",
        ];
        if let Some(a) = adapter {
            args.extend(["--adapter", s(a)]);
        }
        segadapt(&args)
    };
    let (base_out, ad_out) = (root.path().join("base"), root.path().join("adapted"));
    let o = predict(&base_out, None);
    assert!(o.status.success(), "{}", text(&o));
    let o = predict(&ad_out, Some(&ad1));
    assert!(o.status.success(), "{}", text(&o));

    let mut differs = 0;
    for (i, b) in boxes.iter().enumerate() {
        let k = i + 1;
        let adapted = gray(&ad_out.join(format!("cells_objects/cells_{k:04}.png")));
        let base = gray(&base_out.join(format!("cells_objects/cells_{k:04}.png")));
        let single = root.path().join(format!("single_{k}.png"));
        let o = segadapt(&[
            "segment",
            "--model",
            s(&model),
            "--adapter",
            s(&ad1),
            "--image",
            s(&input.join("cells.png")),
            "--box",
            &format!("{},{},{},{}", b[0], b[1], b[2], b[3]),
            "--out",
            s(&single),
        ]);
        assert!(o.status.success(), "{}", text(&o));
        assert_eq!(adapted, gray(&single), "object {k}: predict vs segment");
        differs += adapted.iter().zip(&base).filter(|(a, b)| a != b).count();
    }
    println!(
        "adapted vs base: {differs} pixels differ over {} objects",
        boxes.len()
    );
    assert!(differs > 0, "the adapter changed no pixel");

    // The folder records its adapter: another adapter is a conflict, not a finished run.
    let o = predict(&ad_out, Some(&ad2));
    let t = text(&o);
    assert!(t.contains("were made with other settings"), "{t}");
    assert!(t.contains("--overwrite"), "{t}");
    // The same adapter again: nothing to do.
    let o = predict(&ad_out, Some(&ad1));
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("1 skipped"), "{}", text(&o));

    // A missing adapter is a clear error before any image is touched.
    let o = predict(
        &root.path().join("none"),
        Some(&root.path().join("nope.safetensors")),
    );
    assert!(!o.status.success());
    assert!(!text(&o).contains("panicked"), "{}", text(&o));
    assert!(text(&o).contains("nope.safetensors"), "{}", text(&o));
}
