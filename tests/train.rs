//! Training engine (issue 4) on a tiny random-weight SAM and a synthetic dataset:
//! the loss decreases, the stage-wise schedule switches at its steps and changes what moves,
//! and a cancelled run resumed from its checkpoint ends with the same adapter as an
//! uninterrupted run.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use image::RgbImage;
use segadapt::adapt::{AdapterConfig, Method};
use segadapt::train::dataset::Object;
use segadapt::train::schedule::{Schedule, Stage};
use segadapt::train::trainer::final_path;
use segadapt::train::{TrainConfig, TrainData, TrainEvent, train};

/// Three 96×80 images with 3 bright discs each on a textured background.
fn synthetic() -> TrainData {
    let (w, h) = (96usize, 80usize);
    let mut images = Vec::new();
    let mut objects = Vec::new();
    for i in 0..3usize {
        let centres = [(20 + 7 * i, 22), (60, 25 + 5 * i), (40 + 3 * i, 58)];
        let mut px = vec![0u8; w * h * 3];
        for y in 0..h {
            for x in 0..w {
                let v = (((x * 7 + y * 13 + i * 5) % 23) * 3) as u8;
                px[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&[v, v / 2, v]);
            }
        }
        for &(cx, cy) in &centres {
            let mut mask = vec![false; w * h];
            for y in 0..h {
                for x in 0..w {
                    let d2 = (x as i64 - cx as i64).pow(2) + (y as i64 - cy as i64).pow(2);
                    if d2 <= 100 {
                        mask[y * w + x] = true;
                        px[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&[230, 200, 90]);
                    }
                }
            }
            let area = mask.iter().filter(|&&m| m).count();
            objects.push(Object {
                image: i,
                mask,
                area,
            });
        }
        images.push(RgbImage::from_raw(w as u32, h as u32, px).unwrap());
    }
    let mut d = TrainData::new(images, vec!["a".into(), "b".into(), "c".into()], objects);
    d.split(0.3, 0);
    d
}

fn config(method: Method, steps: usize) -> TrainConfig {
    TrainConfig {
        adapter: AdapterConfig {
            method,
            rank: 4,
            alpha: 16.0,
            ..Default::default()
        },
        schedule: Schedule {
            steps,
            lr: 2e-3,
            alpha_lr: 5e-2,
            lr_warmup_frac: 0.0,
            ..Default::default()
        },
        objects_per_step: 2,
        val_every: steps,
        early_stop_patience: 0,
        intensity_jitter: 0.0,
        save_final: true,
        ..Default::default()
    }
}

fn run(cfg: &TrainConfig, out: &Path, resume: bool, cancel_at: Option<usize>) -> Vec<TrainEvent> {
    let (base, info) = segadapt::sam::load_sam(
        &fixture("sam_vit_tiny.pth"),
        Some(fixture_config("sam_vit_tiny.json")),
        &cpu(),
    )
    .unwrap();
    let data = synthetic();
    let cancel = AtomicBool::new(false);
    let mut events = Vec::new();
    let mut emit = |e: TrainEvent| {
        if let (TrainEvent::Step { step, .. }, Some(c)) = (&e, cancel_at)
            && *step == c
        {
            cancel.store(true, Ordering::Relaxed);
        }
        events.push(e);
    };
    train(
        &base,
        &info,
        &data,
        cfg,
        &cpu(),
        out,
        resume,
        &mut emit,
        &cancel,
    )
    .unwrap();
    events
}

#[test]
fn loss_decreases_on_synthetic_data() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = TrainConfig {
        augment: false,
        ..config(Method::Lora, 40)
    };
    let events = run(&cfg, &dir.path().join("a.safetensors"), false, None);
    let losses: Vec<f64> = events
        .iter()
        .filter_map(|e| {
            if let TrainEvent::Step { loss, .. } = e {
                Some(*loss)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(losses.len(), 40);
    let first: f64 = losses[..8].iter().sum::<f64>() / 8.0;
    let last: f64 = losses[32..].iter().sum::<f64>() / 8.0;
    println!("mean loss first 8 steps {first:.4}, last 8 steps {last:.4}");
    assert!(
        last < 0.8 * first,
        "loss did not decrease: {first} -> {last}"
    );
}

#[test]
fn stages_switch_at_their_steps_and_change_what_moves() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(Method::NasLora, 8);
    let events = run(&cfg, &dir.path().join("a.safetensors"), false, None);
    let changes: Vec<(usize, Stage, usize)> = events
        .iter()
        .filter_map(|e| {
            if let TrainEvent::StageChanged {
                step,
                stage,
                chosen,
            } = e
            {
                Some((*step, *stage, chosen.len()))
            } else {
                None
            }
        })
        .collect();
    assert_eq!(
        changes.iter().map(|c| (c.0, c.1)).collect::<Vec<_>>(),
        vec![(2, Stage::Search), (6, Stage::Consolidate)]
    );
    assert_eq!(changes[0].2, 0, "no cell is discrete during search");
    assert!(
        changes[1].2 > 0,
        "cells are discretised when consolidation starts"
    );
    let alphas: Vec<(usize, Vec<Vec<f32>>)> = events
        .iter()
        .filter_map(|e| {
            if let TrainEvent::Alpha { step, weights } = e {
                Some((*step, weights.clone()))
            } else {
                None
            }
        })
        .collect();
    let at = |s: usize| &alphas.iter().find(|a| a.0 == s).unwrap().1;
    let uniform = 1.0 / 6.0;
    // Warm-up (steps 1-2 done): α frozen at its uniform start.
    for s in [1, 2] {
        assert!(
            at(s).iter().flatten().all(|v| (v - uniform).abs() < 1e-6),
            "α moved in warm-up at step {s}"
        );
    }
    // Search: α moves.
    assert!(
        at(6).iter().flatten().any(|v| (v - uniform).abs() > 1e-4),
        "α did not move during search"
    );
    // Consolidation: α frozen again.
    assert_eq!(at(7), at(8), "α moved during consolidation");
}

#[test]
fn resume_after_cancel_matches_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(Method::NasPcLora, 8);
    let full = dir.path().join("full.safetensors");
    run(&cfg, &full, false, None);
    let split = dir.path().join("split.safetensors");
    let ev = run(&cfg, &split, false, Some(3));
    assert!(
        ev.iter()
            .any(|e| matches!(e, TrainEvent::Cancelled { step: 3, .. })),
        "run was not cancelled"
    );
    assert!(!final_path(&split).exists());
    let ev2 = run(&cfg, &split, true, None);
    assert!(
        ev2.iter()
            .any(|e| matches!(e, TrainEvent::Started { start_step: 3, .. }))
    );
    let a = Refs::load_path(&final_path(&full));
    let b = Refs::load_path(&final_path(&split));
    assert_eq!(a.map.len(), b.map.len());
    for (k, (va, _)) in &a.map {
        let vb = &b
            .map
            .get(k)
            .unwrap_or_else(|| panic!("{k} missing after resume"))
            .0;
        assert!(
            max_abs(va, vb) <= 1e-6,
            "{k} differs after resume by {}",
            max_abs(va, vb)
        );
    }
}
