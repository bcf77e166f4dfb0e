//! NAS-LoRA as the user gets it: the written adapter is always discrete, patience counts only
//! consolidation, resume restores every cell for every placement, discretisation can keep the
//! op's weight, and the full-grid cell sees true neighbours instead of window padding.

mod common;

use std::path::Path;

use burn::module::Param;
use burn::prelude::*;
use common::*;
use image::RgbImage;
use segadapt::adapt::file::read_card;
use segadapt::adapt::{
    AdaptTarget, AdapterConfig, CellGrid, CellState, Discretize, Method, OpKind, Placement,
    apply_adapters, cells, discretise_cells, for_each_branch, set_cell_states,
};
use segadapt::sam::Sam;
use segadapt::train::dataset::Object;
use segadapt::train::schedule::{Schedule, Stage};
use segadapt::train::trainer::final_path;
use segadapt::train::{TrainConfig, TrainData, TrainEvent, TrainOutcome};

/// Four 88×72 images with two large bright rectangles each on a striped background.
fn squares() -> TrainData {
    let (w, h) = (88usize, 72usize);
    let mut images = Vec::new();
    let mut objects = Vec::new();
    for i in 0..4usize {
        let mut px = vec![0u8; w * h * 3];
        for y in 0..h {
            for x in 0..w {
                let v = (((x + 2 * y + 3 * i) % 11) * 9) as u8;
                px[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&[v / 2, v, v / 3]);
            }
        }
        for &(x0, y0) in &[(2 + 2 * i, 2), (44, 34 + i)] {
            let mut mask = vec![false; w * h];
            for y in y0..y0 + 34 {
                for x in x0..x0 + 40 {
                    mask[y * w + x] = true;
                    px[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&[240, 210, 60]);
                }
            }
            objects.push(Object {
                image: i,
                mask,
                area: 40 * 34,
            });
        }
        images.push(RgbImage::from_raw(w as u32, h as u32, px).unwrap());
    }
    let names = (0..4).map(|i| format!("sq{i}")).collect();
    let mut d = TrainData::new(images, names, objects);
    d.split(0.3, 0);
    d
}

fn nas_config(steps: usize, placement: Placement) -> TrainConfig {
    TrainConfig {
        adapter: AdapterConfig {
            method: Method::NasLora,
            placement,
            rank: 4,
            alpha: 16.0,
            ..Default::default()
        },
        schedule: Schedule {
            steps,
            lr: 3e-3,
            alpha_lr: 5e-2,
            lr_warmup_frac: 0.0,
            ..Default::default()
        },
        objects_per_step: 2,
        val_every: 1,
        early_stop_patience: 0,
        intensity_jitter: 0.0,
        ..Default::default()
    }
}

fn tiny_vit_sam() -> (Sam, segadapt::sam::CheckpointInfo) {
    segadapt::sam::load_sam(
        &fixture("sam_vit_tiny.pth"),
        Some(fixture_config("sam_vit_tiny.json")),
        &cpu(),
    )
    .unwrap()
}

fn run(
    cfg: &TrainConfig,
    out: &Path,
    resume: bool,
    cancel_at: Option<usize>,
) -> (Vec<TrainEvent>, Option<TrainOutcome>) {
    run_on(squares(), cfg, out, resume, cancel_at)
}

fn run_on(
    data: TrainData,
    cfg: &TrainConfig,
    out: &Path,
    resume: bool,
    cancel_at: Option<usize>,
) -> (Vec<TrainEvent>, Option<TrainOutcome>) {
    train_tiny_vit(&data, cfg, out, resume, cancel_at)
}

#[test]
fn written_nas_adapter_is_discrete_and_its_card_lists_its_ops() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("a.safetensors");
    let mut cfg = nas_config(40, Placement::Qkv);
    cfg.val_every = 2;
    // The tiny random-weight model does not generalise to new squares; validating on the
    // training objects makes its fit visible, which is all this test needs of the scores.
    let mut data = squares();
    data.val = data.train.clone();
    cfg.schedule.lr = 3e-4;
    cfg.train_decoder = false;
    let (events, o) = run_on(data, &cfg, &out, false, None);
    let o = o.unwrap();
    let (_, s2) = cfg.schedule.boundaries();
    // Validations ran in every stage (val_every 1); only consolidated ones may be saved.
    let saved: Vec<usize> = events
        .iter()
        .filter_map(|e| match e {
            TrainEvent::Validation {
                step, best: true, ..
            } => Some(*step),
            _ => None,
        })
        .collect();
    assert!(
        saved.iter().all(|&s| s > s2),
        "a validation before consolidation (step ≤ {s2}) was saved: {saved:?}"
    );
    println!("{}", o.message);
    for e in &events {
        if let TrainEvent::Validation { step, dice, .. } = e {
            println!("val {step} {dice:.4}");
        }
    }
    assert!(o.improved, "this setup must keep an adapter: {}", o.message);
    let card = read_card(&out).unwrap();
    assert!(!card.cells.is_empty());
    for c in &card.cells {
        let CellState::Discrete(i) = c.state else {
            panic!("cell {} of the written file is {:?}", c.name, c.state)
        };
        assert_eq!(c.chosen.as_deref(), Some(c.ops[i].as_str()));
    }
    let (lo, _) = o.gain_ci95.expect("a kept adapter has a gain interval");
    assert!(lo > 0.0, "kept although the gain interval reaches {lo}");
    assert!(card.training["validation"]["gain_ci95"].is_array());
    let from_card: Vec<(String, String)> = card
        .cells
        .iter()
        .map(|c| (c.name.clone(), c.chosen.clone().unwrap()))
        .collect();
    assert_eq!(o.chosen_ops, from_card, "reported ops are not the file's");
}

#[test]
fn gain_interval_is_a_paired_bootstrap_of_the_mean_gain() {
    use segadapt::train::trainer::gain_interval;
    // Every object gains exactly 0.05: every resample's mean is 0.05.
    let (lo, hi) = gain_interval(&[0.9, 0.85, 0.75], &[0.85, 0.8, 0.7]).unwrap();
    assert!((lo - 0.05).abs() < 1e-12 && (hi - 0.05).abs() < 1e-12);
    // Gains of +0.2 and -0.2 on two objects: resample means are -0.2, 0 or +0.2 with
    // probabilities 1/4, 1/2, 1/4, so the 95% interval is [-0.2, +0.2] and holds zero.
    let (lo, hi) = gain_interval(&[0.9, 0.5], &[0.7, 0.7]).unwrap();
    assert!(
        (lo + 0.2).abs() < 1e-9 && (hi - 0.2).abs() < 1e-9,
        "[{lo}, {hi}]"
    );
    assert!(gain_interval(&[0.5], &[]).is_none(), "unpaired lists");
}

#[test]
fn patience_counts_only_validations_of_the_consolidate_stage() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = nas_config(16, Placement::Qkv);
    cfg.early_stop_patience = 2;
    // A learning rate this small cannot beat the base: every validation is "no improvement".
    cfg.schedule.lr = 1e-12;
    cfg.schedule.alpha_lr = 1e-12;
    let (events, o) = run(&cfg, &dir.path().join("a.safetensors"), false, None);
    let o = o.unwrap();
    let (_, s2) = cfg.schedule.boundaries();
    let n_val = events
        .iter()
        .filter(|e| matches!(e, TrainEvent::Validation { is_base: false, .. }))
        .count();
    assert!(n_val > 4, "validations in warm-up and search expected");
    // Consolidation validates every step here: stop after exactly `patience` of them.
    assert!(o.stopped_early);
    assert_eq!(o.steps_done, s2 + 2, "stopped at {}", o.steps_done);
}

#[test]
fn resume_restores_every_cell_for_every_placement() {
    for placement in [Placement::Qkv, Placement::Qv, Placement::All] {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = nas_config(8, placement);
        cfg.save_final = true;
        // The keep-weight cut and annealing on the autodiff device (B becomes a new leaf).
        cfg.schedule.discretize = Discretize::KeepWeight;
        cfg.schedule.alpha_temperature_end = Some(0.1);
        cfg.val_every = 8;
        let full = dir.path().join("full.safetensors");
        run(&cfg, &full, false, None);
        let split = dir.path().join("split.safetensors");
        // Cancel inside consolidation, where each cell holds its own discrete op.
        let (ev, _) = run(&cfg, &split, false, Some(7));
        assert!(
            ev.iter()
                .any(|e| matches!(e, TrainEvent::Cancelled { step: 7, .. }))
        );
        run(&cfg, &split, true, None);
        let a = read_card(&final_path(&full)).unwrap();
        let b = read_card(&final_path(&split)).unwrap();
        let states = |c: &segadapt::adapt::file::AdapterCard| {
            c.cells
                .iter()
                .map(|c| (c.name.clone(), c.state))
                .collect::<Vec<_>>()
        };
        assert_eq!(states(&a), states(&b), "{placement:?}: cell states differ");
        let ta = Refs::load_path(&final_path(&full));
        let tb = Refs::load_path(&final_path(&split));
        for (k, (va, _)) in &ta.map {
            let vb = &tb.map[k].0;
            assert!(max_abs(va, vb) <= 1e-6, "{placement:?}: {k} differs");
        }
    }
}

/// An adapter on the tiny model with non-zero B and a peaked α, one per branch.
fn peaked_model(method: Method) -> Sam {
    let (mut m, _) = tiny_vit_sam();
    let cfg = AdapterConfig {
        method,
        rank: 4,
        alpha: 8.0,
        ..Default::default()
    };
    apply_adapters(&mut m, &cfg, &cpu());
    let mut k = 0;
    for_each_branch(&mut m, |b| {
        let [r, d] = b.lora_b.dims();
        let v: Vec<f32> = (0..r * d)
            .map(|i| ((i * 7 + k) % 13) as f32 * 0.01 - 0.06)
            .collect();
        b.lora_b = Param::from_tensor(Tensor::from_data(TensorData::new(v, [r, d]), &cpu()));
        let c = b.cell.as_mut().unwrap();
        let mut a = vec![0.0f32; c.ops.len()];
        a[k % c.ops.len()] = 1.5;
        c.alpha = Param::from_tensor(Tensor::from_data(TensorData::new(a, [6]), &cpu()));
        k += 1;
    });
    set_cell_states(&mut m, CellState::Mixed);
    m
}

fn branch_outputs(m: &mut Sam, x: &Tensor<4>) -> Vec<Vec<f32>> {
    let mut outs = Vec::new();
    for_each_branch(m, |b| outs.push(to_vec(b.forward(x.clone()))));
    outs
}

#[test]
fn keep_weight_discretisation_scales_the_chosen_op_by_its_softmax_weight() {
    let x = Tensor::<4>::from_data(
        TensorData::new(
            (0..2 * 5 * 5 * 32)
                .map(|i| ((i % 17) as f32 - 8.0) * 0.1)
                .collect(),
            [2, 5, 5, 32],
        ),
        &cpu(),
    );
    // softmax([1.5, 0, 0, 0, 0, 0]) picks op 0 (or k mod 6) with weight e^1.5 / (e^1.5 + 5).
    let w = 1.5f32.exp() / (1.5f32.exp() + 5.0);
    let mut plain = peaked_model(Method::NasLora);
    discretise_cells(&mut plain, Discretize::Argmax);
    let mut kept = peaked_model(Method::NasLora);
    discretise_cells(&mut kept, Discretize::KeepWeight);
    for (i, (c, _)) in cells(&kept).iter().zip(cells(&plain)).enumerate() {
        assert_eq!(c.1.state, CellState::Discrete(i % 6), "cell {}", c.0);
    }
    let (a, b) = (
        branch_outputs(&mut plain, &x),
        branch_outputs(&mut kept, &x),
    );
    for (pa, pb) in a.iter().zip(&b) {
        let want: Vec<f32> = pa.iter().map(|v| v * w).collect();
        assert_close("kept = w · argmax", pb, &want, 1e-6);
    }
    // Partial channels (r = 4, K = 2): channels 0, 1 are mixed; the PC-DARTS shuffle for two
    // groups of two sends them to output rows 0 and 2, so only rows 0 and 2 of B are scaled.
    let mut pc_plain = peaked_model(Method::NasPcLora);
    let mut pc_kept = peaked_model(Method::NasPcLora);
    let mut b_before = Vec::new();
    for_each_branch(&mut pc_kept, |b| b_before.push(to_vec(b.lora_b.val())));
    discretise_cells(&mut pc_plain, Discretize::Argmax);
    discretise_cells(&mut pc_kept, Discretize::KeepWeight);
    let mut b_after = Vec::new();
    for_each_branch(&mut pc_kept, |b| b_after.push(to_vec(b.lora_b.val())));
    let d = b_before[0].len() / 4;
    for (before, after) in b_before.iter().zip(&b_after) {
        for row in 0..4 {
            let s = if row == 0 || row == 2 { w } else { 1.0 };
            let want: Vec<f32> = before[row * d..(row + 1) * d]
                .iter()
                .map(|v| v * s)
                .collect();
            assert_close("PC row scale", &after[row * d..(row + 1) * d], &want, 1e-7);
        }
    }
}

/// Hand reference of an avg-pool-3×3 NAS cell on the full 10×10 token map: LayerNorm per
/// token, A, average over the in-bounds neighbours (count_include_pad = false), B, scale.
#[allow(clippy::too_many_arguments)]
fn reference_delta(
    x: &[f32],
    hw: usize,
    c: usize,
    beta: &[f32],
    a: &[f32],
    b: &[f32],
    r: usize,
    s: f32,
) -> Vec<f32> {
    let mut z = vec![0f32; hw * hw * r];
    for t in 0..hw * hw {
        let xs = &x[t * c..(t + 1) * c];
        let mean = xs.iter().sum::<f32>() / c as f32;
        let var = xs.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / c as f32;
        for j in 0..r {
            z[t * r + j] = (0..c)
                .map(|i| ((xs[i] - mean) / (var + 1e-5).sqrt() + beta[i]) * a[i * r + j])
                .sum();
        }
    }
    let d_out = b.len() / r;
    let mut out = vec![0f32; hw * hw * d_out];
    for y in 0..hw {
        for xx in 0..hw {
            let mut pooled = vec![0f32; r];
            let mut n = 0.0;
            for dy in -1i64..=1 {
                for dx in -1i64..=1 {
                    let (ny, nx) = (y as i64 + dy, xx as i64 + dx);
                    if ny < 0 || nx < 0 || ny >= hw as i64 || nx >= hw as i64 {
                        continue;
                    }
                    n += 1.0;
                    for j in 0..r {
                        pooled[j] += z[(ny as usize * hw + nx as usize) * r + j];
                    }
                }
            }
            let t = y * hw + xx;
            for o in 0..d_out {
                out[t * d_out + o] = s
                    * (0..r)
                        .map(|j| pooled[j] / n * b[j * d_out + o])
                        .sum::<f32>();
            }
        }
    }
    out
}

#[test]
fn full_grid_cell_sees_true_neighbours_not_window_padding() {
    use segadapt::sam::tiny_vit::Attention;
    let (c, heads, r, hw, ws) = (8usize, 2usize, 2usize, 10usize, 7usize);
    let dev = cpu();
    let mut attn = Attention::new(c, heads, ws, &dev);
    // A non-zero LayerNorm bias is what padded tokens carry into a per-window cell.
    let beta: Vec<f32> = (0..c).map(|i| 0.3 + 0.1 * i as f32).collect();
    attn.norm.beta = Some(Param::from_tensor(Tensor::from_data(
        TensorData::new(beta.clone(), [c]),
        &dev,
    )));
    let mut cfg = AdapterConfig {
        method: Method::NasLora,
        rank: r,
        alpha: 2.0 * r as f64,
        ops: vec![OpKind::AvgPool3x3],
        grid: CellGrid::Full,
        ..Default::default()
    };
    let make = |cfg: &AdapterConfig| {
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(3);
        let mut br = segadapt::adapt::Branch::new(c, 3 * c, cfg, &mut rng, &dev);
        let bv: Vec<f32> = (0..r * 3 * c)
            .map(|i| ((i % 7) as f32 - 3.0) * 0.05)
            .collect();
        br.lora_b = Param::from_tensor(Tensor::from_data(TensorData::new(bv, [r, 3 * c]), &dev));
        br.cell.as_mut().unwrap().state = CellState::Discrete(0);
        segadapt::adapt::Adapter {
            branches: vec![br],
            qv: false,
            full_grid: cfg.grid == CellGrid::Full,
        }
    };
    attn.qkv_adapter = Some(make(&cfg));
    let xv: Vec<f32> = (0..hw * hw * c)
        .map(|i| (((i * 37) % 29) as f32 - 14.0) * 0.07)
        .collect();
    let x = Tensor::<4>::from_data(TensorData::new(xv.clone(), [1, hw, hw, c]), &dev);
    let a = to_vec(attn.qkv_adapter.as_ref().unwrap().branches[0].lora_a.val());
    let b = to_vec(attn.qkv_adapter.as_ref().unwrap().branches[0].lora_b.val());
    let want = reference_delta(&xv, hw, c, &beta, &a, &b, r, 2.0);
    let got = to_vec(attn.full_grid_delta(&x).expect("full-grid adapter"));
    assert_close("full-grid delta", &got, &want, 1e-4);

    // Per window (the official layout pads 10 → 14 before the LayerNorm), token (9, 9) sits
    // in the last window next to padded tokens, which carry LayerNorm(0) = β into its pool.
    cfg.grid = CellGrid::Window;
    attn.qkv_adapter = Some(make(&cfg));
    assert!(
        attn.full_grid_delta(&x).is_none(),
        "window cells run inside attention"
    );
    let padded = x.clone().pad(
        [(0, 4), (0, 4), (0, 0)],
        burn::tensor::ops::PadMode::Constant(0.0),
    );
    let xn = attn.norm.forward(padded.slice([0..1, 7..14, 7..14, 0..c]));
    let win = to_vec(
        attn.qkv_adapter
            .as_ref()
            .unwrap()
            .forward(xn, AdaptTarget::TinyVitQkv { num_heads: heads }),
    );
    let t_win = (2 * 7 + 2) * 3 * c;
    let t_full = (9 * hw + 9) * 3 * c;
    let diff = max_abs(&win[t_win..t_win + 3 * c], &want[t_full..t_full + 3 * c]);
    assert!(
        diff > 1e-3,
        "window and full grid agree next to padding ({diff})"
    );
}

#[test]
fn bilevel_search_moves_alpha_only_in_search() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = nas_config(8, Placement::Qkv);
    cfg.schedule.bilevel = true;
    let (events, _) = run(&cfg, &dir.path().join("a.safetensors"), false, None);
    let alphas: Vec<(usize, Vec<Vec<f32>>)> = events
        .iter()
        .filter_map(|e| match e {
            TrainEvent::Alpha { step, weights } => Some((*step, weights.clone())),
            _ => None,
        })
        .collect();
    let at = |s: usize| &alphas.iter().find(|a| a.0 == s).unwrap().1;
    // Warm-up is steps 0-1 (α uniform), search 2-5 (α's own step each), consolidation 6-7.
    assert!(at(2).iter().flatten().all(|v| (v - 1.0 / 6.0).abs() < 1e-6));
    assert!(at(6).iter().flatten().any(|v| (v - 1.0 / 6.0).abs() > 1e-4));
    assert_eq!(at(7), at(8), "α moved during consolidation");
}

#[test]
fn perturbation_selection_discretises_at_the_boundary_and_leaves_training_before_it_alone() {
    use segadapt::adapt::select::OpSelect;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = nas_config(8, Placement::Qkv);
    cfg.require_significant_gain = false;
    let (alpha_events, _) = run(&cfg, &dir.path().join("alpha.safetensors"), false, None);
    cfg.schedule.select = OpSelect::Perturbation;
    let (pt_events, o) = run(&cfg, &dir.path().join("pt.safetensors"), false, None);
    o.unwrap();
    let (_, s2) = cfg.schedule.boundaries();
    let losses = |ev: &[TrainEvent]| -> Vec<(usize, f64)> {
        ev.iter()
            .filter_map(|e| match e {
                TrainEvent::Step { step, loss, .. } => Some((*step, *loss)),
                _ => None,
            })
            .collect()
    };
    // Scoring draws its own batches: every step before consolidation is bit-identical.
    let (a, p) = (losses(&alpha_events), losses(&pt_events));
    let before: Vec<_> = a.iter().filter(|(s, _)| *s < s2).collect();
    assert!(!before.is_empty());
    for (x, y) in before.iter().zip(p.iter()) {
        assert_eq!(x.1.to_bits(), y.1.to_bits(), "step {} differs", x.0);
    }
    // At the boundary every cell gets exactly one op.
    let chosen = pt_events
        .iter()
        .find_map(|e| match e {
            TrainEvent::StageChanged {
                stage: Stage::Consolidate,
                chosen,
                ..
            } => Some(chosen.clone()),
            _ => None,
        })
        .expect("the run reached consolidation");
    let n_cells = alpha_events
        .iter()
        .find_map(|e| match e {
            TrainEvent::Started { cell_names, .. } => Some(cell_names.len()),
            _ => None,
        })
        .unwrap();
    assert_eq!(chosen.len(), n_cells, "{chosen:?}");
}
