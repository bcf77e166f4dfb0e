//! The real MobileSAM checkpoint (`mobile_sam.pt`, fetched by tools/fetch_assets.sh) on the
//! real nuclei image against outputs of the official PyTorch MobileSAM saved by
//! tools/make_fixtures.py: conversion rule, image embedding, decoder outputs and the full
//! box/point evaluation protocol, and final masks for box, point and box+points prompts.

mod common;

use std::path::PathBuf;

use common::*;
use segadapt::eval::{EvalPrompt, evaluate};
use segadapt::predict::{Point, Predictor, PromptInput};
use segadapt::sam::{ModelType, load_sam};

fn cache() -> PathBuf {
    std::env::var_os("SEGADAPT_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/segadapt")
        })
}

/// The real assets, or `None` (the test is skipped with a message) unless
/// SEGADAPT_REQUIRE_ASSETS=1, which CI sets: then their absence fails the test.
fn assets() -> Option<(PathBuf, PathBuf)> {
    let model = cache().join("models/mobile_sam.pt");
    let data = cache().join("data/nuclei_eval");
    if model.exists() && data.join("images/img2d.tif").exists() {
        return Some((model, data));
    }
    if std::env::var("SEGADAPT_REQUIRE_ASSETS").as_deref() == Ok("1") {
        panic!(
            "real assets missing under {}: run tools/fetch_assets.sh",
            cache().display()
        );
    }
    eprintln!("SKIPPED: real MobileSAM assets not found (run tools/fetch_assets.sh)");
    None
}

#[test]
fn real_mobilesam_matches_official_on_nuclei() {
    let Some((model_path, data)) = assets() else {
        return;
    };
    let device = cpu();
    let (model, info) = load_sam(&model_path, None, &device).unwrap();
    assert_eq!(info.config.model_type, ModelType::VitT);
    assert_eq!(
        info.sha256,
        "6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f"
    );

    // The 16-bit → RGB rule equals the reference conversion (numpy) bit for bit.
    let ours = segadapt::project::import::load_rgb(&data.join("images/img2d.tif")).unwrap();
    let theirs = segadapt::project::import::load_rgb(&fixture("nuclei_rgb.png")).unwrap();
    assert_eq!(
        ours.as_raw(),
        theirs.as_raw(),
        "16-bit conversion differs from the reference"
    );

    let refs = Refs::load("mobilesam_nuclei_ref.safetensors");
    let predictor = Predictor::new(model, device);
    let emb = predictor.set_image(&ours);
    let e = emb
        .embedding
        .clone()
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap();
    assert_close(
        "image_embedding (real MobileSAM, 1024²)",
        &e,
        refs.vec("image_embedding"),
        1e-3,
    );

    for case in ["a", "b", "c"] {
        let b = refs.vec(&format!("box_{case}"));
        let p = PromptInput {
            bbox: Some([b[0] as f64, b[1] as f64, b[2] as f64, b[3] as f64]),
            ..Default::default()
        };
        let pred = predictor.predict(&emb, &p, false);
        assert_close(
            &format!("iou_box_{case}"),
            &pred.iou,
            refs.vec(&format!("iou_box_{case}")),
            1e-3,
        );
        assert_close(
            &format!("low_res_box_{case}"),
            &pred.low_res.concat(),
            refs.vec(&format!("low_res_box_{case}")),
            1e-3,
        );
    }
    let c = refs.vec("point_coords_p");
    let p = PromptInput {
        points: vec![Point {
            x: c[0] as f64,
            y: c[1] as f64,
            positive: true,
        }],
        ..Default::default()
    };
    let pred = predictor.predict(&emb, &p, true);
    assert_close("iou_point_p", &pred.iou, refs.vec("iou_point_p"), 1e-3);
    assert_close(
        "low_res_point_p",
        &pred.low_res.concat(),
        refs.vec("low_res_point_p"),
        1e-3,
    );

    // Final masks at the original size, for every prompt kind, against the official
    // `SamPredictor.predict` (tools/make_mobilesam_masks_ref.py): IoU ≥ 0.995 per mask.
    let bytes = std::fs::read(fixture("mobilesam_nuclei_masks.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let f32s = |k: &str| -> Vec<f32> {
        st.tensor(k)
            .unwrap_or_else(|_| panic!("{k} missing"))
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    };
    let unpack = |k: &str| -> Vec<Vec<bool>> {
        let t = st.tensor(k).unwrap_or_else(|_| panic!("{k} missing"));
        t.data()
            .chunks_exact(t.shape()[1])
            .map(|row| {
                row.iter()
                    .flat_map(|b| (0..8).rev().map(move |i| (b >> i) & 1 == 1))
                    .collect()
            })
            .collect()
    };
    let mut cases: Vec<(String, PromptInput, bool)> = "abc"
        .chars()
        .map(|c| {
            let b = refs.vec(&format!("box_{c}"));
            (
                format!("box_{c}"),
                PromptInput {
                    bbox: Some([b[0] as f64, b[1] as f64, b[2] as f64, b[3] as f64]),
                    ..Default::default()
                },
                false,
            )
        })
        .collect();
    cases.push(("point_p".into(), p.clone(), true));
    let (b, pc, pl) = (
        f32s("boxpt_b_box"),
        f32s("boxpt_b_coords"),
        f32s("boxpt_b_labels"),
    );
    cases.push((
        "boxpt_b".into(),
        PromptInput {
            bbox: Some([b[0] as f64, b[1] as f64, b[2] as f64, b[3] as f64]),
            points: (0..2)
                .map(|i| Point {
                    x: pc[2 * i] as f64,
                    y: pc[2 * i + 1] as f64,
                    positive: pl[i] > 0.5,
                })
                .collect(),
            ..Default::default()
        },
        false,
    ));
    for (tag, prompt, multimask) in &cases {
        let pred = predictor.predict(&emb, prompt, *multimask);
        assert_close(
            &format!("iou_{tag}"),
            &pred.iou,
            &f32s(&format!("iou_{tag}")),
            1e-3,
        );
        let low_key = format!("low_res_{tag}");
        let want_low = if refs.has(&low_key) {
            refs.vec(&low_key).clone()
        } else {
            f32s(&low_key)
        };
        assert_close(&low_key, &pred.low_res.concat(), &want_low, 1e-3);
        let want = unpack(&format!("masks_{tag}"));
        assert_eq!(want.len(), pred.masks.len(), "{tag}: mask count");
        for (i, w) in want.iter().enumerate() {
            let w = &w[..512 * 512];
            let got = pred.binary(i);
            let inter = got.iter().zip(w).filter(|(a, b)| **a && **b).count();
            let union = got.iter().zip(w).filter(|(a, b)| **a || **b).count();
            let m_iou = if union == 0 {
                1.0
            } else {
                inter as f64 / union as f64
            };
            println!(
                "{tag} mask {i}: IoU with the official mask {m_iou:.5} ({union} px in the union)"
            );
            assert!(m_iou >= 0.995, "{tag} mask {i}: IoU {m_iou} < 0.995");
        }
    }

    // The evaluation protocol gives the official numbers (objects ≥ 60 px, as the reference).
    let reference: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("mobilesam_nuclei_eval.json")).unwrap())
            .unwrap();
    let pairs = segadapt::eval::list_pairs(&data).unwrap();
    for (prompt, key) in [(EvalPrompt::Box, "box"), (EvalPrompt::Point, "point")] {
        let r = evaluate(
            &predictor,
            &pairs,
            prompt,
            60,
            &segadapt::predict::tiling::TileConfig::default(),
            |_, _| {},
        )
        .unwrap();
        let want_iou = reference[key]["mean_iou"].as_f64().unwrap();
        let want_dice = reference[key]["mean_dice"].as_f64().unwrap();
        println!(
            "{key}: mean IoU {:.4} (official {want_iou:.4}), mean Dice {:.4} (official {want_dice:.4}), {} objects",
            r.mean_iou, r.mean_dice, r.n_objects
        );
        assert_eq!(
            r.n_objects as u64,
            reference[key]["n_objects"].as_u64().unwrap()
        );
        assert!(
            (r.mean_iou - want_iou).abs() < 2e-3,
            "{key} mean IoU {} vs official {want_iou}",
            r.mean_iou
        );
        assert!(
            (r.mean_dice - want_dice).abs() < 2e-3,
            "{key} mean Dice {} vs official {want_dice}",
            r.mean_dice
        );
    }
}
