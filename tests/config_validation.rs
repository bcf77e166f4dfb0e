//! Bad settings give errors, never panics, through the real entry points (issue 13, defect
//! 7): a hand-edited `project.json` opened by the app, a hand-edited adapter card loaded like
//! any adapter, and the CLI's train flags.

mod common;

use std::process::{Command, Stdio};

use common::*;
use segadapt::adapt::file::{AdapterCard, load_adapter, read_card, save_adapter};
use segadapt::adapt::{AdapterConfig, CellState, Method, apply_adapters, set_cell_states};
use segadapt::app::{AppConfig, SegApp, ToastKind};
use segadapt::project::project::OpenProject;
use segadapt::sam::load_sam;
use segadapt::train::TrainConfig;

fn errors(app: &SegApp) -> Vec<String> {
    app.toasts
        .iter()
        .filter(|t| t.kind == ToastKind::Error)
        .map(|t| t.text.clone())
        .collect()
}

#[test]
fn project_json_with_bad_training_settings_is_refused_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    type Edit = fn(&mut serde_json::Value);
    let cases: [(&str, Edit, &str); 4] = [
        ("rank0", |v| v["adapter"]["rank"] = 0.into(), "rank"),
        (
            "temp0",
            |v| v["adapter"]["alpha_temperature"] = 0.0.into(),
            "temperature",
        ),
        (
            "noops",
            |v| v["adapter"]["ops"] = serde_json::json!([]),
            "op list is empty",
        ),
        ("steps0", |v| v["schedule"]["steps"] = 0.into(), "steps"),
    ];
    for (name, edit, needle) in cases {
        let root = dir.path().join(name);
        let mut p = OpenProject::create(&root, name).unwrap();
        let mut v = serde_json::to_value(TrainConfig::default()).unwrap();
        edit(&mut v);
        p.project.train_config = Some(v);
        p.save().unwrap();

        let mut cfg = AppConfig::new(segadapt::device::cpu());
        cfg.settings_file = None;
        cfg.model_dir = dir.path().join("models");
        cfg.demo_dir = dir.path().join("demo");
        let mut app = SegApp::new(cfg, None);
        app.open_project_at(&root);
        let errs = errors(&app);
        println!("{name}: {errs:?}");
        assert!(
            errs.iter()
                .any(|e| e.contains("project.json") && e.contains(needle)),
            "{name}: no error naming '{needle}': {errs:?}"
        );
        // The bad settings were not taken over.
        app.train_cfg.validate().unwrap();
    }
}

#[test]
fn hand_edited_adapter_cards_are_refused_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let dev = cpu();
    let load = || {
        load_sam(
            &fixture("sam_vit_tiny.pth"),
            Some(fixture_config("sam_vit_tiny.json")),
            &dev,
        )
        .unwrap()
    };
    let (mut model, info) = load();
    let cfg = AdapterConfig {
        method: Method::NasLora,
        rank: 2,
        alpha: AdapterConfig::default_alpha(2),
        ..Default::default()
    };
    apply_adapters(&mut model, &cfg, &dev);
    set_cell_states(&mut model, CellState::Discrete(0));
    let good = AdapterCard::new(&model, &info, &cfg, false);
    assert!(!good.cells.is_empty());
    type Edit = fn(&mut AdapterCard);
    let cases: [(&str, Edit, &str); 6] = [
        // 'a' then two-byte characters: byte 12 falls inside a character (sliced before).
        (
            "sha_non_ascii",
            |c| c.base.sha256 = format!("a{}", "é".repeat(40)),
            "sha256",
        ),
        ("sha_short", |c| c.base.sha256 = "abc".into(), "sha256"),
        (
            "discrete_99",
            |c| c.cells[0].state = CellState::Discrete(99),
            "out of range",
        ),
        ("rank0", |c| c.adapter.rank = 0, "rank"),
        ("no_ops", |c| c.adapter.ops.clear(), "op list is empty"),
        (
            "cells_missing",
            |c| {
                c.cells.pop();
            },
            "NAS cells",
        ),
    ];
    for (name, edit, needle) in cases {
        let mut card = good.clone();
        edit(&mut card);
        let path = dir.path().join(format!("{name}.safetensors"));
        save_adapter(&model, &card, &path).unwrap();
        let (mut fresh, info) = load();
        let err = load_adapter(&mut fresh, &info, &path, &dev)
            .map(|_| ())
            .expect_err(name);
        let msg = format!("{err:#}");
        println!("{name}: {msg}");
        assert!(msg.contains(needle), "{name}: '{needle}' not in: {msg}");
        if name != "cells_missing" {
            // Structural faults are caught on reading, before anything touches a model.
            assert!(read_card(&path).is_err(), "{name}: read_card accepted it");
        }
    }
    // The unedited card still loads.
    let path = dir.path().join("good.safetensors");
    save_adapter(&model, &good, &path).unwrap();
    let (mut fresh, info) = load();
    load_adapter(&mut fresh, &info, &path, &dev).unwrap();
}

#[test]
fn cli_train_with_bad_flags_fails_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let model = fixture("sam_vit_tiny.pth");
    let out = dir.path().join("a.safetensors");
    for (flags, needle) in [
        (&["--rank", "0"][..], "rank"),
        (&["--temperature", "0"][..], "temperature"),
        (&["--lr", "NaN"][..], "learning rate"),
        (&["--ops", "identity,identity"][..], "twice"),
        (&["--objects-per-step", "0"][..], "objects per step"),
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_segadapt"))
            .args(["--device", "cpu", "train", "--model"])
            .arg(&model)
            .arg("--data")
            .arg(dir.path())
            .arg("--out")
            .arg(&out)
            .args(flags)
            .stdin(Stdio::null())
            .output()
            .expect("run segadapt");
        let err = String::from_utf8_lossy(&o.stderr);
        println!("{flags:?}: {err}");
        assert!(!o.status.success(), "{flags:?} succeeded");
        assert!(!err.contains("panicked"), "{flags:?} panicked: {err}");
        assert!(err.contains(needle), "{flags:?}: '{needle}' not in: {err}");
        assert!(!out.exists());
    }
}
