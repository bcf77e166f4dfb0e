//! Training engine (issue 4) on a tiny random-weight SAM and a synthetic dataset:
//! the loss decreases, the stage-wise schedule switches at its steps and changes what moves,
//! and a cancelled run resumed from its checkpoint ends with the same adapter as an
//! uninterrupted run.

mod common;

use std::path::Path;

use common::*;
use image::RgbImage;
use segadapt::adapt::{AdapterConfig, Method};
use segadapt::train::dataset::Object;
use segadapt::train::schedule::{Schedule, Stage};
use segadapt::train::trainer::final_path;
use segadapt::train::{TrainConfig, TrainData, TrainEvent};

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
    train_tiny_vit(&synthetic(), cfg, out, resume, cancel_at).0
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

fn outcome(events: &[TrainEvent]) -> segadapt::train::TrainOutcome {
    events
        .iter()
        .find_map(|e| match e {
            TrainEvent::Finished(o) => Some(o.clone()),
            _ => None,
        })
        .expect("a Finished event")
}

/// One step at a negligible learning rate cannot beat the base by MIN_GAIN: no adapter is
/// handed over (no file, `improved == false`, no path), and a file already at the output path
/// is never replaced by the non-improving model.
#[test]
fn a_run_that_cannot_beat_the_base_hands_over_no_adapter() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = TrainConfig {
        schedule: Schedule {
            steps: 1,
            lr: 1e-12,
            alpha_lr: 1e-12,
            lr_warmup_frac: 0.0,
            ..Default::default()
        },
        val_every: 1,
        save_final: false,
        ..config(Method::Lora, 1)
    };
    let out = dir.path().join("a.safetensors");
    let o = outcome(&run(&cfg, &out, false, None));
    assert!(!o.improved, "{}", o.message);
    assert_eq!(o.adapter_path, None);
    assert!(!out.exists(), "a non-improving run left an adapter file");
    assert!(
        o.message.contains("base model stays active"),
        "{}",
        o.message
    );

    let previous = b"an adapter of an earlier run".to_vec();
    std::fs::write(&out, &previous).unwrap();
    let o = outcome(&run(&cfg, &out, false, None));
    assert!(!o.improved);
    assert!(
        !out.exists() || std::fs::read(&out).unwrap() == previous,
        "the earlier file was replaced by the non-improving model"
    );
}

/// Validation scores the original images: with strong augmentation (dihedral flips and
/// intensity jitter) on, the trainer's base and final validation Dice equal `validate` run
/// here on the un-augmented data, for the base and for the final adapter loaded from disk.
#[test]
fn validation_sees_unaugmented_images() {
    use segadapt::train::trainer::validate;
    let dir = tempfile::tempdir().unwrap();
    let cfg = TrainConfig {
        augment: true,
        intensity_jitter: 0.5,
        val_every: 2,
        ..config(Method::Lora, 2)
    };
    let out = dir.path().join("a.safetensors");
    let events = run(&cfg, &out, false, None);
    let vals: Vec<(usize, f64, bool)> = events
        .iter()
        .filter_map(|e| match e {
            TrainEvent::Validation {
                step,
                dice,
                is_base,
                ..
            } => Some((*step, *dice, *is_base)),
            _ => None,
        })
        .collect();
    let (base, info) = segadapt::sam::load_sam(
        &fixture("sam_vit_tiny.pth"),
        Some(fixture_config("sam_vit_tiny.json")),
        &cpu(),
    )
    .unwrap();
    let data = synthetic();
    let base_dice = vals.iter().find(|v| v.2).expect("base validation").1;
    assert_eq!(
        base_dice,
        validate(&base, &data, &cpu()).0,
        "base validation"
    );
    let last = vals
        .iter()
        .rfind(|v| !v.2 && v.0 == 2)
        .expect("step-2 validation");
    let mut adapted = base.clone();
    segadapt::adapt::file::load_adapter(&mut adapted, &info, &final_path(&out), &cpu()).unwrap();
    let mine = validate(&adapted, &data, &cpu()).0;
    assert!(
        (last.1 - mine).abs() < 1e-9,
        "trainer's step-2 Dice {} vs un-augmented {mine}",
        last.1
    );
}

/// Conv-LoRA's auxiliary (load-balancing) loss is part of the total that is minimised:
/// every step's loss is mask + iou_weight·iou + aux, with aux > 0.
#[test]
fn conv_lora_aux_loss_is_part_of_the_total() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = TrainConfig {
        save_final: false,
        ..config(Method::ConvLora, 2)
    };
    let events = run(&cfg, &dir.path().join("a.safetensors"), false, None);
    let mut n = 0;
    for e in &events {
        if let TrainEvent::Step {
            loss,
            mask_loss,
            iou_loss,
            aux_loss,
            ..
        } = e
        {
            n += 1;
            assert!(*aux_loss > 0.0, "no auxiliary loss");
            let parts = mask_loss + cfg.iou_loss_weight * iou_loss + aux_loss;
            assert!(
                (loss - parts).abs() <= 1e-5 * loss.abs().max(1.0),
                "loss {loss} != mask {mask_loss} + iou {iou_loss} + aux {aux_loss}"
            );
        }
    }
    assert_eq!(n, 2);
}

fn disc_data(objects_per_image: &[usize]) -> TrainData {
    let (w, h) = (8u32, 8u32);
    let images = objects_per_image
        .iter()
        .map(|_| RgbImage::new(w, h))
        .collect();
    let names = (0..objects_per_image.len())
        .map(|i| format!("{i}"))
        .collect();
    let mut objects = Vec::new();
    for (i, &n) in objects_per_image.iter().enumerate() {
        for k in 0..n {
            let mut mask = vec![false; (w * h) as usize];
            mask[k % 64] = true;
            objects.push(Object {
                image: i,
                mask,
                area: 1,
            });
        }
    }
    TrainData::new(images, names, objects)
}

/// Train and validation partition the objects; with ≥ 3 images holding objects no image is
/// on both sides, whatever the fraction (also 0.9 of 3 single-object images, where taking
/// every image for validation would have to hand one object back to training).
#[test]
fn split_is_disjoint_by_object_and_by_image() {
    for layout in [
        &[3usize, 3, 3][..],
        &[1, 1, 1],
        &[1, 1, 10],
        &[5, 0, 2, 1],
        &[2, 2, 2, 2, 2, 2],
        &[4, 4],
        &[7],
    ] {
        for frac in [0.1, 0.2, 0.5, 0.9] {
            for seed in 0..10 {
                let mut d = disc_data(layout);
                let how = d.split(frac, seed);
                let what = format!("{layout:?} frac {frac} seed {seed}: {how}");
                let mut all: Vec<usize> = d.train.iter().chain(&d.val).copied().collect();
                all.sort_unstable();
                assert_eq!(all, (0..d.objects.len()).collect::<Vec<_>>(), "{what}");
                assert!(!d.train.is_empty(), "{what}");
                let with_objects = layout.iter().filter(|&&n| n > 0).count();
                if d.objects.len() >= 2 {
                    assert!(!d.val.is_empty(), "{what}");
                }
                if with_objects >= 3 {
                    let img = |v: &[usize]| {
                        v.iter()
                            .map(|&o| d.objects[o].image)
                            .collect::<std::collections::HashSet<_>>()
                    };
                    assert!(img(&d.train).is_disjoint(&img(&d.val)), "{what}");
                    assert!(how.starts_with("by image"), "{what}");
                }
            }
        }
    }
}
