//! The merged export against the official code (issue 13): the file holds exactly the base
//! checkpoint's tensors (keys, shapes, dtypes, as `tools/make_fixtures.py` listed them from the
//! official state_dict), the official modules loaded with it strictly compute what segadapt's
//! adapted model computes (`tools/make_merged_ref.py` -> `merged_export_ref.safetensors`),
//! and segadapt reads the file back to the same model.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::prelude::*;
use common::*;
use segadapt::adapt::export::{MergedStats, load_merged, write_merged};
use segadapt::adapt::merge::merge;
use segadapt::adapt::{
    AdapterConfig, CellState, Method, Placement, apply_adapters, for_each_branch,
};
use segadapt::sam::{Prompts, Sam, load_sam};

const TAGS: [&str; 2] = ["vit", "tinyvit"];

fn files(tag: &str) -> (&'static str, &'static str, &'static str) {
    match tag {
        "vit" => (
            "sam_vit_tiny.pth",
            "sam_vit_tiny.json",
            "sam_vit_tiny_keys.txt",
        ),
        _ => (
            "mobilesam_tiny.pth",
            "mobilesam_tiny.json",
            "mobilesam_tiny_keys.txt",
        ),
    }
}

fn base(tag: &str) -> Sam {
    let (pth, json, _) = files(tag);
    load_sam(&fixture(pth), Some(fixture_config(json)), &cpu())
        .unwrap()
        .0
}

/// The adapted model the reference was made from: plain LoRA on every ViT projection plus a
/// changed decoder token (a trained decoder), and NAS-PC-LoRA cells discretised to identity on
/// every TinyViT projection. A from the adapter seed, B from a formula (no device RNG), so
/// the export is the same wherever it is made.
fn adapted(tag: &str) -> Sam {
    let mut model = base(tag);
    let (method, op) = match tag {
        "vit" => (Method::Lora, None),
        _ => (Method::NasPcLora, Some(0)),
    };
    let cfg = AdapterConfig {
        method,
        placement: Placement::All,
        rank: 4,
        alpha: 16.0,
        ..Default::default()
    };
    spatial_or_identity(&mut model, &cfg, op);
    if tag == "vit" {
        let w = model.mask_decoder.iou_token.weight.val();
        model.mask_decoder.iou_token.weight = Param::from_tensor(w.add_scalar(0.1));
    }
    model
}

fn spatial_or_identity(model: &mut Sam, cfg: &AdapterConfig, op: Option<usize>) {
    let device = cpu();
    apply_adapters(model, cfg, &device);
    let mut k = 0f32;
    for_each_branch(model, |b| {
        let [r, d] = b.lora_b.dims();
        let v: Vec<f32> = (0..r * d)
            .map(|i| 0.05 * (0.37 * i as f32 + 1.3 * k).sin())
            .collect();
        b.lora_b = Param::from_tensor(Tensor::from_data(TensorData::new(v, [r, d]), &device));
        if let (Some(c), Some(i)) = (b.cell.as_mut(), op) {
            c.state = CellState::Discrete(i);
        }
        k += 1.0;
    });
}

fn export(tag: &str, model: &Sam, out: &Path) -> MergedStats {
    let mut m = model.clone();
    let report = merge(&mut m);
    assert!(report.side_branches.is_empty(), "{tag}: all adapters fold");
    write_merged(&m, &fixture(files(tag).0), out, false, None).unwrap()
}

/// key -> (shape, dtype) from the official state_dict listing.
fn official_keys(tag: &str) -> BTreeMap<String, (Vec<usize>, String)> {
    let text = std::fs::read_to_string(fixture(files(tag).2)).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let shape = serde_json::from_str::<Vec<usize>>(f[1]).unwrap();
            (f[0].to_string(), (shape, f[2].to_string()))
        })
        .collect()
}

fn st_dtype_name(d: safetensors::Dtype) -> &'static str {
    match d {
        safetensors::Dtype::F32 => "float32",
        safetensors::Dtype::I64 => "int64",
        _ => "other",
    }
}

fn input(refs: &Refs) -> Tensor<4> {
    refs.tensor::<4>("input", &cpu())
}

fn box_prompt() -> Prompts {
    Prompts {
        points: None,
        boxes: Some(Tensor::from_data(
            TensorData::new(vec![20f32, 30.0, 100.0, 90.0], [1, 4]),
            &cpu(),
        )),
        masks: None,
    }
}

/// (image embedding, low-res masks, iou) of `model` on the reference input and box.
fn outputs(model: &Sam, x: Tensor<4>) -> [Vec<f32>; 3] {
    let emb = model.embed_image(x);
    let out = model.decode(emb.clone(), &box_prompt(), true);
    [
        to_vec(emb),
        to_vec(out.low_res_masks),
        to_vec(out.iou_predictions),
    ]
}

/// Per float key (sorted): sum and sum of squares, to tie the reference to this export.
fn key_sums(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names = st.names();
    names.sort();
    let mut out = Vec::new();
    for n in names {
        let v = st.tensor(n).unwrap();
        if v.dtype() != safetensors::Dtype::F32 {
            continue;
        }
        let (mut s, mut q) = (0f64, 0f64);
        for c in v.data().chunks_exact(4) {
            let x = f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64;
            s += x;
            q += x * x;
        }
        out.extend([s as f32, q as f32]);
    }
    out
}

#[test]
fn merged_export_has_exactly_the_base_tensors() {
    let dir = tempfile::tempdir().unwrap();
    for tag in TAGS {
        let out = dir.path().join(format!("{tag}.safetensors"));
        let stats = export(tag, &adapted(tag), &out);
        let want = official_keys(tag);
        let bytes = std::fs::read(&out).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let got: BTreeMap<String, (Vec<usize>, String)> = st
            .tensors()
            .into_iter()
            .map(|(k, v)| {
                let d = st_dtype_name(v.dtype()).to_string();
                (k, (v.shape().to_vec(), d))
            })
            .collect();
        assert_eq!(got, want, "{tag}: keys, shapes and dtypes of the base");
        // Only the folded weights (and the changed decoder token) differ from the base.
        let mut expected: BTreeSet<String> = segadapt::adapt::adapters(&adapted(tag))
            .iter()
            .map(|(i, _)| format!("{}.weight", i.name))
            .collect();
        if tag == "vit" {
            expected.insert("mask_decoder.iou_token.weight".into());
        }
        let changed: BTreeSet<String> = stats.changed.iter().cloned().collect();
        assert_eq!(changed, expected, "{tag}: changed tensors");
        if tag == "tinyvit" {
            assert!(
                stats
                    .copied_from_base
                    .iter()
                    .any(|k| k.ends_with("num_batches_tracked"))
                    && stats
                        .copied_from_base
                        .iter()
                        .any(|k| k.starts_with("image_encoder.head."))
            );
        }
    }
}

#[test]
fn official_code_on_merged_export_matches_adapted_model() {
    let refs = Refs::load("merged_export_ref.safetensors");
    let dir = tempfile::tempdir().unwrap();
    for tag in TAGS {
        let model = adapted(tag);
        // The reference was made from this very export.
        let out = dir.path().join(format!("{tag}.safetensors"));
        export(tag, &model, &out);
        let sums = key_sums(&out);
        let want = refs.vec(&format!("{tag}_key_sums"));
        assert_eq!(sums.len(), want.len(), "{tag}: float tensor count");
        for (i, (a, b)) in sums.iter().zip(want).enumerate() {
            assert!(
                (a - b).abs() <= 1e-4 * b.abs().max(1.0),
                "{tag}: export differs from the one the reference was made from (entry {i}: {a} vs {b})"
            );
        }
        let got = outputs(&model, input(&refs));
        let base_out = outputs(&base(tag), input(&refs));
        for (i, what) in ["image_embedding", "low_res", "iou"].iter().enumerate() {
            let r = refs.vec(&format!("{tag}_{what}"));
            assert_close(&format!("{tag} {what} vs official"), &got[i], r, 1e-4);
        }
        assert!(
            max_abs(&base_out[0], refs.vec(&format!("{tag}_image_embedding"))) > 1e-2,
            "{tag}: the adapter must change the output for a meaningful test"
        );
    }
}

#[test]
fn merged_export_loads_back_into_segadapt() {
    let refs = Refs::load("merged_export_ref.safetensors");
    let dir = tempfile::tempdir().unwrap();
    for tag in TAGS {
        let model = adapted(tag);
        let out = dir.path().join(format!("{tag}.safetensors"));
        export(tag, &model, &out);
        let cfg = fixture_config(files(tag).1);
        let loaded = load_merged(&out, Some(cfg), &cpu()).unwrap();
        let a = outputs(&model, input(&refs));
        let b = outputs(&loaded, input(&refs));
        for i in 0..3 {
            assert_close(&format!("{tag} reloaded output {i}"), &b[i], &a[i], 1e-4);
        }
    }
}

#[test]
fn side_branches_wrong_base_and_bad_paths_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = base("vit");
    let cfg = AdapterConfig {
        method: Method::NasLora,
        placement: Placement::Qkv,
        ..Default::default()
    };
    // op 1 = conv3x3: a spatial cell that cannot fold.
    spatial_or_identity(&mut model, &cfg, Some(1));
    let report = merge(&mut model);
    assert_eq!(report.side_branches.len(), 4);
    let out = dir.path().join("m.safetensors");
    let vit = fixture("sam_vit_tiny.pth");
    let err = write_merged(&model, &vit, &out, false, None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("side branches") && err.contains("--drop-side-branches"),
        "{err}"
    );
    assert!(!out.exists(), "nothing is written on refusal");
    // Explicitly dropped: the official tensors are all there, the cells are listed.
    let stats = write_merged(&model, &vit, &out, true, None).unwrap();
    assert_eq!(stats.side_branches_left_out.len(), 4);
    assert_eq!(stats.tensors, official_keys("vit").len());
    assert!(stats.changed.is_empty(), "nothing folded, nothing changed");

    let mut tiny = adapted("vit");
    merge(&mut tiny);
    let err = write_merged(&tiny, &fixture("mobilesam_tiny.pth"), &out, false, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not in the base checkpoint"), "{err}");
    let missing = PathBuf::from("/nonexistent/base.pth");
    assert!(write_merged(&tiny, &missing, &out, false, None).is_err());
    let bad_out = dir.path().join("no/such/dir/m.safetensors");
    assert!(write_merged(&tiny, &vit, &bad_out, true, None).is_err());
}

/// Writes the exports `tools/make_merged_ref.py` loads into the official code:
/// `SEGADAPT_MERGED_OUT=dir cargo test --test merged_export -- --ignored write_exports`.
#[test]
#[ignore = "writes fixture inputs for tools/make_merged_ref.py; run by hand when regenerating"]
fn write_exports_for_reference() {
    let dir = PathBuf::from(std::env::var("SEGADAPT_MERGED_OUT").expect("SEGADAPT_MERGED_OUT"));
    std::fs::create_dir_all(&dir).unwrap();
    for tag in TAGS {
        export(
            tag,
            &adapted(tag),
            &dir.join(format!("{tag}_merged.safetensors")),
        );
    }
}
