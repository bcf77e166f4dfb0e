//! Model families: detection from the checkpoint (and refusals), LiteMedSAM preprocessing
//! against hand-computed values, and MedSAM's processing against the official
//! `MedSAM_Inference.py` steps on the tiny random-weight SAM ViT (tools/make_medsam_ref.py).

mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use common::*;
use image::RgbImage;
use segadapt::predict::sk_resize::resize_skimage_cubic;
use segadapt::predict::transforms::{box_for, coords_for, preprocess_for};
use segadapt::predict::{Predictor, PromptInput};
use segadapt::sam::{ModelFamily, SamConfig, load_sam_as};

type Raw = HashMap<String, (safetensors::Dtype, Vec<usize>, Vec<u8>)>;

fn raw(name: &str) -> Raw {
    let bytes = std::fs::read(fixture(name)).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(k, v)| (k, (v.dtype(), v.shape().to_vec(), v.data().to_vec())))
        .collect()
}

fn f32s(r: &Raw, k: &str) -> Vec<f32> {
    let t = r
        .get(k)
        .unwrap_or_else(|| panic!("reference '{k}' missing"));
    assert_eq!(t.0, safetensors::Dtype::F32, "{k}");
    t.2.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn family_of(
    path: &std::path::Path,
    json: Option<&str>,
    want: Option<ModelFamily>,
) -> Result<ModelFamily, String> {
    load_sam_as(path, json.map(fixture_config), want, &cpu())
        .map(|(_, info)| info.config.family)
        .map_err(|e| e.to_string())
}

fn real(name: &str) -> Option<PathBuf> {
    let home = PathBuf::from(std::env::var("HOME").unwrap_or_default());
    let p = std::env::var_os("SEGADAPT_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join(".cache/segadapt"))
        .join("models")
        .join(name);
    if p.exists() {
        Some(p)
    } else {
        eprintln!("SKIPPED part: {} not found", p.display());
        None
    }
}

#[test]
fn families_are_detected_and_mismatches_refused() {
    let vit = fixture("sam_vit_tiny.pth");
    let tiny_vit_t = fixture("mobilesam_tiny.pth");
    assert_eq!(
        family_of(&vit, Some("sam_vit_tiny.json"), None).unwrap(),
        ModelFamily::Sam
    );
    assert_eq!(
        family_of(&tiny_vit_t, Some("mobilesam_tiny.json"), None).unwrap(),
        ModelFamily::MobileSam
    );
    // MedSAM has SAM ViT-B's tensors: it is said, by --family or by its official file name.
    assert_eq!(
        family_of(&vit, Some("sam_vit_tiny.json"), Some(ModelFamily::MedSam)).unwrap(),
        ModelFamily::MedSam
    );
    let dir = tempfile::tempdir().unwrap();
    let named = dir.path().join("medsam_vit_b.pth");
    std::fs::copy(&vit, &named).unwrap();
    assert_eq!(
        family_of(&named, Some("sam_vit_tiny.json"), None).unwrap(),
        ModelFamily::MedSam
    );
    assert_eq!(
        family_of(&named, Some("sam_vit_tiny.json"), Some(ModelFamily::Sam)).unwrap(),
        ModelFamily::Sam
    );
    // A TinyViT file is never run with a ViT family's processing, nor the reverse.
    let e = family_of(
        &tiny_vit_t,
        Some("mobilesam_tiny.json"),
        Some(ModelFamily::MedSam),
    )
    .unwrap_err();
    assert!(
        e.contains("is a mobilesam checkpoint") && e.contains("cannot be run as medsam"),
        "{e}"
    );
    let e = family_of(
        &vit,
        Some("sam_vit_tiny.json"),
        Some(ModelFamily::LiteMedSam),
    )
    .unwrap_err();
    assert!(e.contains("cannot be run as litemedsam"), "{e}");
    // A readable .pth of something else: refused by name, no panic.
    let e = family_of(&fixture("not_sam.pth"), None, None).unwrap_err();
    assert!(e.contains("matches no supported model family"), "{e}");
    assert!(e.contains("LiteMedSAM") && e.contains("MobileSAM"), "{e}");

    if let Some(p) = real("mobile_sam.pt") {
        assert_eq!(family_of(&p, None, None).unwrap(), ModelFamily::MobileSam);
    }
    if let Some(p) = real("lite_medsam.pth") {
        assert_eq!(family_of(&p, None, None).unwrap(), ModelFamily::LiteMedSam);
        let e = family_of(&p, None, Some(ModelFamily::MobileSam)).unwrap_err();
        assert!(e.contains("is a litemedsam checkpoint"), "{e}");
    }
}

#[test]
fn litemedsam_preprocessing_by_hand() {
    let cfg = SamConfig::lite_medsam();
    assert_eq!(cfg.family, ModelFamily::LiteMedSam);
    assert_eq!(cfg.encoder.embedding_size(), 64);
    assert_eq!(cfg.prompt_encoder.image_embedding_size, [64, 64]);
    // 512 × 256 of 2×2 blocks valued 10, 50, 90 by block column: INTER_AREA halves it to
    // 256 × 128 exactly, min-max maps {10, 50, 90} to {0, 0.5, 1}, rows 128.. are padding.
    let img = RgbImage::from_fn(512, 256, |x, _| {
        let v = [10u8, 50, 90][(x as usize / 2) % 3];
        image::Rgb([v, v, v])
    });
    let p = preprocess_for(&img, &cfg);
    assert_eq!((p.input_size, p.original_size), ([128, 256], [256, 512]));
    for c in 0..3 {
        for y in [0usize, 77, 127] {
            for x in [0usize, 1, 2, 3, 255] {
                let want = [0.0f32, 0.5, 1.0][x % 3];
                assert_eq!(p.data[(c * 256 + y) * 256 + x], want, "c{c} y{y} x{x}");
            }
        }
        assert!(
            p.data[(c * 256 + 128) * 256..(c + 1) * 256 * 256]
                .iter()
                .all(|&v| v == 0.0)
        );
    }
    // A flat image: max − min = 0 is clipped to 1e-8, so every pixel is 0 (no NaN).
    let flat = RgbImage::from_pixel(300, 200, image::Rgb([7, 7, 7]));
    assert!(preprocess_for(&flat, &cfg).data.iter().all(|&v| v == 0.0));
    // Boxes: × 256 / max(H, W) = 0.5, truncated (`resize_box_to_256`); points untruncated.
    assert_eq!(
        box_for([100.7, 31.0, 300.9, 201.0], [256, 512], &cfg),
        [50.0, 15.0, 150.0, 100.0]
    );
    assert_eq!(coords_for([101.0, 31.0], [256, 512], &cfg), [50.5, 15.5]);
    // MedSAM: the image is stretched, so x and y scale apart: x / W · S, y / H · S.
    let mut med = SamConfig::vit_tiny();
    med.family = ModelFamily::MedSam;
    assert_eq!(coords_for([50.0, 30.0], [75, 100], &med), [64.0, 51.2]);
    assert_eq!(preprocess_for(&flat, &med).input_size, [128, 128]);
}

/// The nuclei crop with distinct channels, as make_medsam_ref.py builds it.
fn nuclei_crop() -> RgbImage {
    let full = image::open(fixture("nuclei_rgb.png")).unwrap().to_rgb8();
    let g = |x: u32, y: u32| full.get_pixel(x, y).0[0];
    RgbImage::from_fn(300, 220, |x, y| {
        let (x, y) = (x + 100, y + 40);
        image::Rgb([g(x, y), g(511 - x, 511 - y), g(y, x)])
    })
}

#[test]
fn medsam_processing_matches_official_steps_on_tiny_vit() {
    let r = raw("medsam_tiny_ref.safetensors");
    let (sam, info) = load_sam_as(
        &fixture("sam_vit_tiny.pth"),
        Some(fixture_config("sam_vit_tiny.json")),
        Some(ModelFamily::MedSam),
        &cpu(),
    )
    .unwrap();
    assert_eq!(info.config.family, ModelFamily::MedSam);
    let predictor = Predictor::new(sam, cpu());
    let rgb = image::open(fixture("rgb_100x75.png")).unwrap().to_rgb8();
    for (name, img) in [("rgb", rgb), ("crop", nuclei_crop())] {
        let (h, w) = (img.height() as usize, img.width() as usize);
        let want = &r[&format!("{name}_resized")].2;
        let got = resize_skimage_cubic(&img, 128, 128);
        let off: Vec<i32> = got
            .as_raw()
            .iter()
            .zip(want)
            .map(|(a, b)| *a as i32 - *b as i32)
            .filter(|d| *d != 0)
            .collect();
        println!(
            "{name}: skimage resize: {} of {} values differ",
            off.len(),
            want.len()
        );
        assert!(
            off.iter().all(|d| d.abs() == 1),
            "{name}: a resize difference above 1"
        );
        assert!(
            off.len() * 1000 <= want.len(),
            "{name}: over 0.1% of values differ"
        );

        let emb = predictor.set_image(&img);
        assert_eq!(emb.input_size, [128, 128]);
        for k in 0..2 {
            let b = f32s(&r, &format!("{name}_box_{k}"));
            let p = PromptInput {
                bbox: Some([b[0] as f64, b[1] as f64, b[2] as f64, b[3] as f64]),
                ..Default::default()
            };
            let pred = predictor.predict(&emb, &p, false);
            let tol = if off.is_empty() { 1e-4 } else { 2e-2 };
            assert_close(
                &format!("{name} low-res logits {k}"),
                &pred.low_res[0],
                &f32s(&r, &format!("{name}_low_{k}")),
                tol,
            );
            // Our masks are logits of the resized probabilities: back to probabilities.
            let prob: Vec<f32> = (0..h)
                .step_by(4)
                .flat_map(|y| (0..w).step_by(4).map(move |x| (y, x)))
                .map(|(y, x)| 1.0 / (1.0 + (-pred.masks[0][y * w + x]).exp()))
                .collect();
            assert_close(
                &format!("{name} probabilities {k} (every 4th)"),
                &prob,
                &f32s(&r, &format!("{name}_prob_{k}_s")),
                tol,
            );
            let bits = &r[&format!("{name}_mask_{k}")].2;
            let want: Vec<bool> = (0..h * w)
                .map(|i| bits[i / 8] & (0x80 >> (i % 8)) != 0)
                .collect();
            let got = pred.binary(0);
            let inter = got.iter().zip(&want).filter(|(a, b)| **a && **b).count();
            let union = got.iter().zip(&want).filter(|(a, b)| **a || **b).count();
            let iou = inter as f64 / union.max(1) as f64;
            println!("{name} box {k}: mask IoU {iou:.5}");
            assert!(iou >= 0.99, "{name} box {k}: mask IoU {iou}");
        }
    }
}

#[test]
fn adapter_cards_carry_the_family_and_refuse_another() {
    use segadapt::adapt::file::{AdapterCard, card_path, load_adapter, save_adapter};
    use segadapt::adapt::{AdapterConfig, Method, apply_adapters};
    let dev = cpu();
    let tiny = fixture("sam_vit_tiny.pth");
    let cfg = Some(fixture_config("sam_vit_tiny.json"));
    let (mut medsam, info) =
        load_sam_as(&tiny, cfg.clone(), Some(ModelFamily::MedSam), &dev).unwrap();
    let ac = AdapterConfig {
        method: Method::Lora,
        rank: 2,
        alpha: 8.0,
        ..Default::default()
    };
    apply_adapters(&mut medsam, &ac, &dev);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("medsam_adapter.safetensors");
    save_adapter(
        &medsam,
        &AdapterCard::new(&medsam, &info, &ac, false),
        &path,
    )
    .unwrap();
    let card: serde_json::Value =
        serde_json::from_slice(&std::fs::read(card_path(&path)).unwrap()).unwrap();
    assert_eq!(card["base"]["family"], "med_sam");

    // The same weights run as plain SAM: refused, naming the flag that fixes it.
    let (mut sam, sam_info) = load_sam_as(&tiny, cfg.clone(), None, &dev).unwrap();
    assert_eq!(sam_info.config.family, ModelFamily::Sam);
    let msg = format!(
        "{:#}",
        load_adapter(&mut sam, &sam_info, &path, &dev).unwrap_err()
    );
    assert!(msg.contains("--family medsam"), "{msg}");
    // As MedSAM: accepted.
    let (mut again, again_info) =
        load_sam_as(&tiny, cfg.clone(), Some(ModelFamily::MedSam), &dev).unwrap();
    load_adapter(&mut again, &again_info, &path, &dev).unwrap();

    // A card written before the family was recorded still reads (nothing to check).
    let mut old = card.clone();
    old["base"].as_object_mut().unwrap().remove("family");
    let old: segadapt::adapt::file::AdapterCard = serde_json::from_value(old).unwrap();
    assert_eq!(old.base.family, None);
    old.validate().unwrap();
}

#[test]
fn train_refuses_a_family_the_weights_cannot_be() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_segadapt"))
        .args([
            "--device",
            "cpu",
            "train",
            "--family",
            "litemedsam",
            "--model",
        ])
        .arg(fixture("sam_vit_tiny.pth"))
        .arg("--data")
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/nuclei_halves/top"))
        .args(["--steps", "1", "--out"])
        .arg(std::env::temp_dir().join("segadapt-family-refusal.safetensors"))
        .output()
        .unwrap();
    let t = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{t}");
    assert!(!t.contains("panicked"), "{t}");
    assert!(t.contains("cannot be run as litemedsam"), "{t}");
}
