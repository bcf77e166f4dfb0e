//! Perturbation-based op selection (DARTS-PT): the op whose removal from its cell raises the
//! supernet's loss most is chosen, whatever α says. Oracle: a target built from a known op per
//! cell that α does not favour.

mod common;

use burn::module::Param;
use burn::prelude::*;
use common::*;
use segadapt::adapt::select::{discretise_cells_to, perturbation_scores};
use segadapt::adapt::{
    AdapterConfig, CellState, Discretize, Method, apply_adapters, cells, discretise_cells,
    for_each_branch, set_cell_states,
};
use segadapt::sam::Sam;

/// The tiny ViT with NAS-LoRA adapters, non-zero B, and α peaked on op `k mod 6` in cell k.
fn supernet() -> Sam {
    let (mut m, _) = segadapt::sam::load_sam(
        &fixture("sam_vit_tiny.pth"),
        Some(fixture_config("sam_vit_tiny.json")),
        &cpu(),
    )
    .unwrap();
    let cfg = AdapterConfig {
        method: Method::NasLora,
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

fn branch_outputs(m: &Sam, x: &Tensor<4>) -> Vec<Vec<f32>> {
    let mut m = m.clone();
    let mut outs = Vec::new();
    for_each_branch(&mut m, |b| outs.push(to_vec(b.forward(x.clone()))));
    outs
}

#[test]
fn perturbation_picks_the_op_the_target_needs_not_the_alpha_argmax() {
    let x = Tensor::<4>::from_data(
        TensorData::new(
            (0..2 * 6 * 6 * 32)
                .map(|i| (((i * 31) % 23) as f32 - 11.0) * 0.1)
                .collect(),
            [2, 6, 6, 32],
        ),
        &cpu(),
    );
    let net = supernet();
    let n_cells = cells(&net).len();
    assert!(n_cells >= 2, "the tiny model has {n_cells} cells");
    // Target: cell k computes op (k + 3) mod 6 alone, an op α does not favour.
    let want: Vec<usize> = (0..n_cells).map(|k| (k + 3) % 6).collect();
    let mut target_model = net.clone();
    discretise_cells_to(&mut target_model, &want, Discretize::Argmax).unwrap();
    let target = branch_outputs(&target_model, &x);
    let mse = |m: &Sam| -> anyhow::Result<f64> {
        let out = branch_outputs(m, &x);
        let (mut s, mut n) = (0.0f64, 0usize);
        for (o, t) in out.iter().zip(&target) {
            for (a, b) in o.iter().zip(t) {
                s += ((a - b) as f64).powi(2);
                n += 1;
            }
        }
        Ok(s / n as f64)
    };
    let scores = perturbation_scores(&net, mse).unwrap();
    let chosen: Vec<usize> = scores.cells.iter().map(|c| c.chosen).collect();
    assert_eq!(chosen, want, "scores: {:?}", scores.cells);
    // α alone would have picked k mod 6 in every cell.
    let mut by_alpha = net.clone();
    discretise_cells(&mut by_alpha, Discretize::Argmax);
    for (k, (name, c)) in cells(&by_alpha).iter().enumerate() {
        assert_eq!(c.state, CellState::Discrete(k % 6), "{name}");
    }
    // The input model is untouched: still mixed, same outputs.
    assert!(cells(&net).iter().all(|(_, c)| c.state == CellState::Mixed));
    // Selecting the chosen ops reproduces the target exactly.
    let mut picked = net.clone();
    discretise_cells_to(&mut picked, &chosen, Discretize::Argmax).unwrap();
    assert!(mse(&picked).unwrap() < 1e-12);
}

#[test]
fn perturbation_refuses_discrete_cells_and_wrong_choice_counts() {
    let mut net = supernet();
    let n = cells(&net).len();
    assert!(discretise_cells_to(&mut net.clone(), &vec![0; n + 1], Discretize::Argmax).is_err());
    discretise_cells(&mut net, Discretize::Argmax);
    let err = perturbation_scores(&net, |_| Ok(0.0)).unwrap_err();
    assert!(err.to_string().contains("mixed cells"), "{err}");
}
