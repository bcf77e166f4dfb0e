//! LiteMedSAM against the official code (tools/make_litemedsam_ref.py): OpenCV's INTER_AREA
//! resize bit for bit, and the real `lite_medsam.pth` on a crop of the nuclei image with four
//! box prompts (skipped with a message when the checkpoint is absent).

mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use common::*;
use image::RgbImage;
use segadapt::predict::cv_resize::resize_area;
use segadapt::predict::{Predictor, PromptInput};
use segadapt::sam::{ModelFamily, ModelType, load_sam};

const SHA: &str = "79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76";

/// Every tensor of a safetensors file as (dtype, shape, raw bytes).
fn raw(name: &str) -> HashMap<String, (safetensors::Dtype, Vec<usize>, Vec<u8>)> {
    let bytes = std::fs::read(fixture(name)).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(k, v)| (k, (v.dtype(), v.shape().to_vec(), v.data().to_vec())))
        .collect()
}

fn f32s(r: &HashMap<String, (safetensors::Dtype, Vec<usize>, Vec<u8>)>, k: &str) -> Vec<f32> {
    let t = r
        .get(k)
        .unwrap_or_else(|| panic!("reference '{k}' missing"));
    assert_eq!(t.0, safetensors::Dtype::F32, "{k}");
    t.2.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn rgb(t: &(safetensors::Dtype, Vec<usize>, Vec<u8>)) -> RgbImage {
    assert_eq!(t.0, safetensors::Dtype::U8);
    RgbImage::from_raw(t.1[1] as u32, t.1[0] as u32, t.2.clone()).unwrap()
}

#[test]
fn inter_area_matches_opencv_bit_for_bit() {
    let r = raw("litemedsam_nuclei_ref.safetensors");
    for case in ["half", "third", "frac", "up", "mixed"] {
        let src = rgb(&r[&format!("resize_{case}_in")]);
        let want = rgb(&r[&format!("resize_{case}_out")]);
        let got = resize_area(&src, want.width() as usize, want.height() as usize);
        let diff = got
            .as_raw()
            .iter()
            .zip(want.as_raw())
            .filter(|(a, b)| a != b)
            .count();
        println!(
            "{case}: {}x{} -> {}x{}: {diff} of {} values differ",
            src.width(),
            src.height(),
            want.width(),
            want.height(),
            want.as_raw().len()
        );
        assert_eq!(diff, 0, "INTER_AREA case {case} differs from cv2.resize");
    }
}

fn model_path() -> Option<PathBuf> {
    let cache = std::env::var_os("SEGADAPT_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/segadapt")
        });
    let p = cache.join("models/lite_medsam.pth");
    if p.exists() {
        return Some(p);
    }
    eprintln!(
        "SKIPPED: {} not found (`segadapt models download lite_medsam`)",
        p.display()
    );
    None
}

fn unpack(bits: &[u8], n: usize) -> Vec<bool> {
    (0..n)
        .map(|i| bits[i / 8] & (0x80 >> (i % 8)) != 0)
        .collect()
}

#[test]
fn real_litemedsam_matches_official_on_nuclei_crop() {
    let Some(path) = model_path() else {
        return;
    };
    let device = cpu();
    let (model, info) = load_sam(&path, None, &device).unwrap();
    assert_eq!(info.sha256, SHA);
    assert_eq!(info.config.family, ModelFamily::LiteMedSam);
    assert_eq!(info.config.model_type, ModelType::LiteMedSam);
    assert_eq!(info.config.img_size(), 256);

    let r = raw("litemedsam_nuclei_ref.safetensors");
    let full = segadapt::project::import::load_rgb(&fixture("nuclei_rgb.png")).unwrap();
    let crop = image::imageops::crop_imm(&full, 100, 40, 300, 220).to_image();
    let (h, w) = (220usize, 300usize);

    // Preprocessing: the official resize exactly, then min-max and zero padding.
    let want = rgb(&r["crop_resized"]);
    let got = resize_area(&crop, 256, 188);
    assert_eq!(got.as_raw(), want.as_raw(), "crop resize differs from cv2");
    let predictor = Predictor::new(model, device);
    let pre = predictor.preprocess(&crop);
    assert_eq!(pre.input_size, [188, 256]);
    let (lo, hi) = (
        *want.as_raw().iter().min().unwrap() as f64,
        *want.as_raw().iter().max().unwrap() as f64,
    );
    for (i, &v) in want.as_raw().iter().enumerate() {
        let (y, x, c) = (i / (256 * 3), (i / 3) % 256, i % 3);
        let expect = ((v as f64 - lo) / (hi - lo)) as f32;
        assert_eq!(pre.data[(c * 256 + y) * 256 + x], expect);
    }
    assert!(
        pre.data[..256 * 256]
            .iter()
            .skip(188 * 256)
            .all(|&v| v == 0.0)
    );

    let emb = predictor.set_image(&crop);
    let e = to_vec(emb.embedding.clone());
    let means: Vec<f32> = (0..256)
        .map(|c| e[c * 4096..(c + 1) * 4096].iter().sum::<f32>() / 4096.0)
        .collect();
    assert_close(
        "embedding channel means",
        &means,
        &f32s(&r, "embedding_channel_mean"),
        1e-3,
    );
    assert_close(
        "embedding channel 0",
        &e[..4096],
        &f32s(&r, "embedding_c0"),
        1e-3,
    );

    let n_boxes = (0..)
        .take_while(|k| r.contains_key(&format!("box_{k}")))
        .count();
    assert_eq!(n_boxes, 4);
    for k in 0..n_boxes {
        let b = &f32s(&r, &format!("box_{k}"));
        let bbox = [b[0] as f64, b[1] as f64, b[2] as f64, b[3] as f64];
        let boxed = segadapt::predict::transforms::box_for(bbox, [h, w], &predictor.model.config);
        assert_eq!(
            &boxed[..],
            &f32s(&r, &format!("box256_{k}"))[..],
            "box {k} scaling"
        );
        let p = PromptInput {
            bbox: Some(bbox),
            ..Default::default()
        };
        let pred = predictor.predict(&emb, &p, false);
        assert_eq!(pred.low_res_size, [256, 256]);
        assert_close(
            &format!("iou {k}"),
            &pred.iou,
            &f32s(&r, &format!("iou_{k}")),
            1e-3,
        );
        let low = &pred.low_res[0];
        let s4: Vec<f32> = (0..64)
            .flat_map(|y| (0..64).map(move |x| low[y * 4 * 256 + x * 4]))
            .collect();
        assert_close(
            &format!("low-res logits {k} (every 4th)"),
            &s4,
            &f32s(&r, &format!("low_res_{k}_s4")),
            2e-3,
        );
        let mean = low.iter().sum::<f32>() / low.len() as f32;
        let st = &f32s(&r, &format!("low_res_{k}_stats"));
        assert!(
            (mean - st[2]).abs() < 1e-3,
            "mean logit {mean} vs {}",
            st[2]
        );
        let bits = &r[&format!("mask_{k}")].2;
        let want = unpack(bits, h * w);
        let got = pred.binary(0);
        let inter = got.iter().zip(&want).filter(|(a, b)| **a && **b).count();
        let union = got.iter().zip(&want).filter(|(a, b)| **a || **b).count();
        let iou = inter as f64 / union.max(1) as f64;
        println!("box {k}: mask IoU with the official {iou:.5} ({union} px in the union)");
        assert!(iou >= 0.99, "box {k}: mask IoU {iou}");
    }
}
