//! The Burn port against the official PyTorch code: tiny random-weight ViT-SAM and
//! MobileSAM/TinyViT models built and run by `tools/make_fixtures.py` with the official
//! `segment_anything` / `mobile_sam` packages. Tolerance: max abs error ≤ 1e-4 (f32).

mod common;

use burn::prelude::*;
use common::*;
use segadapt::predict::{Predictor, PromptInput};
use segadapt::sam::sam::ImageEncoder;
use segadapt::sam::{Sam, load_sam};

const TOL: f32 = 1e-4;

fn load(pth: &str, json: &str) -> Sam {
    let device = cpu();
    let (model, info) =
        load_sam(&fixture(pth), Some(fixture_config(json)), &device).expect("load fixture model");
    assert!(info.num_tensors > 0);
    model
}

/// Prompt encoder and decoder for every prompt case of the reference file.
fn check_decoder_cases(model: &Sam, refs_file: &str, device: &Device) {
    let refs = segadapt::parity::RefTensors::load(&fixture(refs_file)).unwrap();
    let diffs = segadapt::parity::compare_decoder(model, &refs, device);
    assert!(diffs.len() >= 20, "reference cases missing");
    for d in diffs {
        println!(
            "{}: max abs err {:.3e} (max |ref| {:.3})",
            d.name, d.max_abs_err, d.max_abs_ref
        );
        assert!(
            d.max_abs_err <= TOL,
            "{}: max abs error {} > {TOL}",
            d.name,
            d.max_abs_err
        );
    }
}

#[test]
fn vit_sam_matches_official() {
    let device = cpu();
    let model = load("sam_vit_tiny.pth", "sam_vit_tiny.json");
    let refs = Refs::load("sam_vit_tiny_ref.safetensors");
    let input: Tensor<4> = refs.tensor("input", &device);
    let ImageEncoder::Vit(enc) = &model.image_encoder else {
        panic!("expected ViT")
    };
    let mut x = enc.patch_embed.forward(input.clone());
    assert_close(
        "patch_embed",
        &to_vec(x.clone()),
        refs.vec("patch_embed"),
        TOL,
    );
    x = enc.embed(input.clone());
    for (i, blk) in enc.blocks.iter().enumerate() {
        x = blk.forward(x);
        let key = format!("block_{i}");
        if refs.has(&key) {
            assert_close(&key, &to_vec(x.clone()), refs.vec(&key), TOL);
        }
    }
    let emb = model.embed_image(input);
    assert_close(
        "image_embedding",
        &to_vec(emb),
        refs.vec("image_embedding"),
        TOL,
    );
    check_decoder_cases(&model, "sam_vit_tiny_ref.safetensors", &device);
}

#[test]
fn mobilesam_tinyvit_matches_official() {
    let device = cpu();
    let model = load("mobilesam_tiny.pth", "mobilesam_tiny.json");
    let refs = Refs::load("mobilesam_tiny_ref.safetensors");
    let input: Tensor<4> = refs.tensor("input", &device);
    let ImageEncoder::TinyVit(enc) = &model.image_encoder else {
        panic!("expected TinyViT")
    };
    let pe = enc.patch_embed.forward(input.clone());
    assert_close("patch_embed", &to_vec(pe), refs.vec("patch_embed"), TOL);
    let mut x = enc.embed(input.clone());
    let [b, h, w, c] = x.dims();
    assert_close(
        "layer_0",
        &to_vec(x.clone().reshape([b, h * w, c])),
        refs.vec("layer_0"),
        TOL,
    );
    for i in 1..enc.layers.len() {
        x = enc.forward_layers(x, i..i + 1);
        let [b, h, w, c] = x.dims();
        assert_close(
            &format!("layer_{i}"),
            &to_vec(x.clone().reshape([b, h * w, c])),
            refs.vec(&format!("layer_{i}")),
            TOL,
        );
    }
    let emb = model.embed_image(input);
    assert_close(
        "image_embedding",
        &to_vec(emb),
        refs.vec("image_embedding"),
        TOL,
    );
    check_decoder_cases(&model, "mobilesam_tiny_ref.safetensors", &device);
}

/// The whole `SamPredictor` path on a real (non-square, upscaled) image file:
/// PIL-exact resize, normalisation, padding, decoder, mask upscaling to the original size.
#[test]
fn predictor_matches_official_sampredictor() {
    let device = cpu();
    let model = load("sam_vit_tiny.pth", "sam_vit_tiny.json");
    let refs = Refs::load("sam_vit_tiny_ref.safetensors");
    let img = segadapt::project::import::load_rgb(&fixture("rgb_100x75.png")).unwrap();
    let predictor = Predictor::new(model, device);
    let pre = predictor.preprocess(&img);
    assert_close("pred_input", &pre.data, refs.vec("pred_input"), 1e-6);
    let emb = predictor.set_image(&img);
    let b = refs.vec("pred_box");
    let prompt = PromptInput {
        bbox: Some([b[0] as f64, b[1] as f64, b[2] as f64, b[3] as f64]),
        ..Default::default()
    };
    let pred = predictor.predict(&emb, &prompt, true);
    assert_eq!(pred.size, [75, 100]);
    assert_close("pred_iou", &pred.iou, refs.vec("pred_iou"), TOL);
    assert_close(
        "pred_low_res",
        &pred.low_res.concat(),
        refs.vec("pred_low_res"),
        TOL,
    );
    assert_close(
        "pred_masks_logits",
        &pred.masks.concat(),
        refs.vec("pred_masks_logits"),
        TOL,
    );
}
