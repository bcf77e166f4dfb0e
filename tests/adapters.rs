//! Adapter behaviour (issue 3): zero-init equivalence, gradient routing, discretisation,
//! partial channels, merge, adapter files, and the NAS cell against an independent PyTorch
//! reference (`tools/nas_cell_ref.py`).

mod common;

use burn::module::{Module, Param};
use burn::prelude::*;
use common::*;
use segadapt::adapt::file::{AdapterCard, load_adapter, save_adapter};
use segadapt::adapt::merge::merge;
use segadapt::adapt::{
    AdapterConfig, CellState, Method, OpKind, Placement, apply_adapters, cells, for_each_branch,
    set_cell_states,
};
use segadapt::sam::{CheckpointInfo, Sam, load_sam};

const METHODS: [Method; 4] = [
    Method::NasLora,
    Method::NasPcLora,
    Method::Lora,
    Method::ConvLora,
];

fn tiny(which: &str) -> (Sam, CheckpointInfo) {
    let (pth, json) = match which {
        "vit" => ("sam_vit_tiny.pth", "sam_vit_tiny.json"),
        _ => ("mobilesam_tiny.pth", "mobilesam_tiny.json"),
    };
    load_sam(&fixture(pth), Some(fixture_config(json)), &cpu()).unwrap()
}

fn input(model: &Sam, seed: u64) -> Tensor<4> {
    let s = model.img_size();
    let device = cpu();
    device.seed(seed);
    Tensor::random(
        [1, 3, s, s],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &device,
    )
}

/// Gives every B a random value so adapters actually change the output.
fn randomise_b(model: &mut Sam, seed: u64) {
    let device = cpu();
    device.seed(seed);
    for_each_branch(model, |b| {
        let dims = b.lora_b.dims();
        b.lora_b = Param::from_tensor(Tensor::random(
            dims,
            burn::tensor::Distribution::Normal(0.0, 0.05),
            &device,
        ));
    });
}

fn cfg(method: Method, placement: Placement) -> AdapterConfig {
    AdapterConfig {
        method,
        placement,
        rank: 4,
        alpha: 16.0,
        ..Default::default()
    }
}

#[test]
fn adapted_model_equals_base_before_training() {
    for enc in ["vit", "tinyvit"] {
        let (base, _) = tiny(enc);
        let x = input(&base, 1);
        let want = to_vec(base.embed_image(x.clone()));
        for m in METHODS {
            for p in [Placement::Qkv, Placement::Qv, Placement::All] {
                let mut model = base.clone();
                let n = apply_adapters(&mut model, &cfg(m, p), &cpu());
                assert!(n > 0);
                let got = to_vec(model.embed_image(x.clone()));
                assert_eq!(
                    max_abs(&got, &want),
                    0.0,
                    "{enc} {m:?} {p:?} differs from base"
                );
            }
        }
    }
}

/// The full training graph as the trainer builds it (encoder with adapters, prompt encoder,
/// mask decoder; adapters and the decoder trainable): adapters, α, Conv-LoRA's gate (through
/// its auxiliary loss) and the decoder get non-zero gradients, frozen base weights none.
#[test]
fn gradients_reach_adapters_decoder_and_alpha_only() {
    let (base, _) = tiny("vit");
    for m in METHODS {
        let mut model = base.clone();
        apply_adapters(&mut model, &cfg(m, Placement::Qkv), &cpu());
        randomise_b(&mut model, 3);
        set_cell_states(&mut model, CellState::Mixed);
        segadapt::adapt::set_training(&mut model, true);
        let ad = cpu().autodiff();
        let model = model.fork(&ad).train().no_grad().set_require_grad_group(
            burn::module::ParamGroup::from_regex(r"(_adapter\.)|(mask_decoder\.)").unwrap(),
            true,
        );
        let x = Tensor::<4>::from_data(input(&base, 2).into_data(), &ad);
        let emb = model.embed_image(x);
        let s = base.img_size() as f32;
        let prompts = segadapt::sam::Prompts {
            boxes: Some(Tensor::from_data(
                TensorData::new(vec![0.2 * s, 0.25 * s, 0.7 * s, 0.8 * s], [1, 4]),
                &ad,
            )),
            ..Default::default()
        };
        let out = model.decode(emb, &prompts, false);
        let mut loss = out.low_res_masks.square().mean() + out.iou_predictions.square().mean();
        let aux = segadapt::adapt::conv_lora::take_aux_losses();
        assert_eq!(!aux.is_empty(), m == Method::ConvLora, "{m:?}: aux losses");
        for a in aux {
            loss = loss + a;
        }
        let grads = loss.backward();
        let blk = match &model.image_encoder {
            segadapt::sam::sam::ImageEncoder::Vit(e) => &e.blocks[0],
            _ => unreachable!(),
        };
        let a = blk.attn.qkv_adapter.as_ref().unwrap();
        let br = &a.branches[0];
        let nonzero = |g: Option<Vec<f32>>, what: &str| {
            let g = g.unwrap_or_else(|| panic!("{m:?}: no gradient for {what}"));
            assert!(
                g.iter().any(|v| *v != 0.0),
                "{m:?}: zero gradient for {what}"
            );
        };
        nonzero(br.lora_a.val().grad(&grads).map(to_vec), "A");
        nonzero(br.lora_b.val().grad(&grads).map(to_vec), "B");
        if let Some(c) = &br.cell {
            nonzero(c.alpha.val().grad(&grads).map(to_vec), "alpha");
            for w in c.op_weights.iter().flatten() {
                nonzero(w.val().grad(&grads).map(to_vec), "op weight");
            }
        }
        if let Some(moe) = &br.moe {
            nonzero(moe.gate.val().grad(&grads).map(to_vec), "gate");
            nonzero(moe.noise.val().grad(&grads).map(to_vec), "gate noise");
        }
        let dec = &model.mask_decoder;
        nonzero(
            dec.iou_token.weight.val().grad(&grads).map(to_vec),
            "decoder iou token",
        );
        nonzero(
            dec.mask_tokens.weight.val().grad(&grads).map(to_vec),
            "decoder mask tokens",
        );
        for (what, w) in [
            ("qkv weight", blk.attn.qkv.weight.val()),
            ("mlp weight", blk.mlp.lin1.weight.val()),
            (
                "prompt encoder",
                model.prompt_encoder.point_embeddings[2].weight.val(),
            ),
        ] {
            assert!(
                w.grad(&grads).is_none(),
                "{m:?}: frozen {what} got a gradient"
            );
        }
    }
}

#[test]
fn frozen_alpha_gets_no_gradient() {
    let (base, _) = tiny("vit");
    let mut model = base.clone();
    apply_adapters(&mut model, &cfg(Method::NasLora, Placement::Qkv), &cpu());
    randomise_b(&mut model, 3);
    set_cell_states(&mut model, CellState::FrozenAlpha);
    let ad = cpu().autodiff();
    let model = model.fork(&ad).train().no_grad().set_require_grad_group(
        burn::module::ParamGroup::from_regex(r"_adapter\.").unwrap(),
        true,
    );
    let x = Tensor::<4>::from_data(input(&base, 2).into_data(), &ad);
    let grads = model.embed_image(x).square().mean().backward();
    for_each_cell_alpha(&model, |alpha| {
        let g = alpha.grad(&grads).map(to_vec).unwrap_or_default();
        assert!(g.iter().all(|v| *v == 0.0), "alpha moved while frozen");
    });
}

fn for_each_cell_alpha(model: &Sam, mut f: impl FnMut(Tensor<1>)) {
    for (_, c) in cells(model) {
        f(c.alpha.val());
    }
}

fn rand_map(seed: u64, shape: [usize; 4]) -> Tensor<4> {
    let d = cpu();
    d.seed(seed);
    Tensor::random(shape, burn::tensor::Distribution::Normal(0.0, 1.0), &d)
}

/// Each op on a 3×3 single-channel map, worked out by hand (zero padding for convs, padding
/// excluded from the average as DARTS' `count_include_pad=False`, ignored by the max).
#[test]
fn discrete_cell_is_its_chosen_op_and_sharp_alpha_matches() {
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0);
    let mut cell = segadapt::adapt::NasCell::new(
        OpKind::ALL,
        1,
        1,
        1.0,
        segadapt::adapt::OpInit::Random,
        segadapt::adapt::CellForm::Plain,
        &mut rng,
        &cpu(),
    );
    // One-hot kernels: conv3x3 tap (0,0) reads x[y-1][x-1]; conv5x5 tap (1,2) reads
    // x[y-1][x]; dilated 3×3 tap (0,1) reads x[y-2][x].
    let onehot = |k: usize, at: usize| {
        let mut w = vec![0f32; k * k];
        w[at] = 1.0;
        Some(Param::from_tensor(Tensor::<4>::from_data(
            TensorData::new(w, [1, 1, k, k]),
            &cpu(),
        )))
    };
    let idx = |o: OpKind| OpKind::ALL.iter().position(|&x| x == o).unwrap();
    cell.op_weights[idx(OpKind::Conv3x3)] = onehot(3, 0);
    cell.op_weights[idx(OpKind::Conv5x5)] = onehot(5, 7);
    cell.op_weights[idx(OpKind::DilConv3x3)] = onehot(3, 1);
    let z = Tensor::<4>::from_data(
        TensorData::new((1..=9).map(|v| v as f32).collect::<Vec<_>>(), [1, 3, 3, 1]),
        &cpu(),
    );
    #[rustfmt::skip]
    let want: [(OpKind, [f32; 9]); 6] = [
        (OpKind::Identity, [1., 2., 3., 4., 5., 6., 7., 8., 9.]),
        (OpKind::Conv3x3, [0., 0., 0., 0., 1., 2., 0., 4., 5.]),
        (OpKind::Conv5x5, [0., 0., 0., 1., 2., 3., 4., 5., 6.]),
        (OpKind::DilConv3x3, [0., 0., 0., 0., 0., 0., 1., 2., 3.]),
        (OpKind::AvgPool3x3, [3., 3.5, 4., 4.5, 5., 5.5, 6., 6.5, 7.]),
        (OpKind::MaxPool3x3, [5., 6., 6., 8., 9., 9., 8., 9., 9.]),
    ];
    for (op, want) in want {
        let i = idx(op);
        cell.state = CellState::Discrete(i);
        let got = to_vec(cell.forward(z.clone()));
        assert!(max_abs(&got, &want) < 1e-6, "discrete {op:?}: {got:?}");
        // softmax of a very sharp α is the one-hot mix.
        let mut a = vec![0f32; OpKind::ALL.len()];
        a[i] = 40.0;
        cell.alpha = Param::from_tensor(Tensor::from_data(
            TensorData::new(a, [OpKind::ALL.len()]),
            &cpu(),
        ));
        cell.state = CellState::Mixed;
        let mixed = to_vec(cell.forward(z.clone()));
        assert!(max_abs(&mixed, &want) < 1e-4, "sharp mix of {op:?}");
        assert_eq!(cell.argmax(), i);
    }
}

/// A cell of `form` over (zero, avg_pool, max_pool) with α = (0, ln 2, 0), i.e. weights
/// (¼, ½, ¼), and the 3×3 map 1..9 of the test above with its pools worked out by hand:
/// (cell, map, z, avg, max).
#[allow(clippy::type_complexity)]
fn three_op_cell(
    form: segadapt::adapt::CellForm,
) -> (
    segadapt::adapt::NasCell,
    Tensor<4>,
    [f32; 9],
    [f32; 9],
    [f32; 9],
) {
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0);
    let ops = [OpKind::Zero, OpKind::AvgPool3x3, OpKind::MaxPool3x3];
    let mut cell = segadapt::adapt::NasCell::new(
        &ops,
        1,
        1,
        1.0,
        segadapt::adapt::OpInit::Random,
        form,
        &mut rng,
        &cpu(),
    );
    cell.alpha = Param::from_tensor(Tensor::from_data(
        TensorData::new(vec![0f32, 2f32.ln(), 0.0], [3]),
        &cpu(),
    ));
    let z = Tensor::<4>::from_data(
        TensorData::new((1..=9).map(|v| v as f32).collect::<Vec<_>>(), [1, 3, 3, 1]),
        &cpu(),
    );
    (
        cell,
        z,
        [1., 2., 3., 4., 5., 6., 7., 8., 9.],
        [3., 3.5, 4., 4.5, 5., 5.5, 6., 6.5, 7.],
        [5., 6., 6., 8., 9., 9., 8., 9., 9.],
    )
}

/// The residual cell: the mix is z + ½·avg + ¼·max; cut to an op it keeps that op's weight;
/// cut to `zero` it is z (plain LoRA).
#[test]
fn residual_cell_adds_its_weighted_ops_to_the_input() {
    let (mut cell, z, zv, avg, max) = three_op_cell(segadapt::adapt::CellForm::Residual);
    let mix: Vec<f32> = (0..9)
        .map(|i| zv[i] + 0.5 * avg[i] + 0.25 * max[i])
        .collect();
    let got = to_vec(cell.forward(z.clone()));
    assert!(max_abs(&got, &mix) < 1e-5, "mixed residual: {got:?}");
    cell.state = CellState::Discrete(1);
    let cut_avg: Vec<f32> = (0..9).map(|i| zv[i] + 0.5 * avg[i]).collect();
    let got = to_vec(cell.forward(z.clone()));
    assert!(
        max_abs(&got, &cut_avg) < 1e-5,
        "residual cut to avg: {got:?}"
    );
    cell.state = CellState::Discrete(0);
    let got = to_vec(cell.forward(z.clone()));
    assert!(max_abs(&got, &zv) < 1e-6, "residual cut to zero: {got:?}");
    assert_eq!(cell.macs_per_token(), 0);
}

/// The gated cell: with its gate at 0 (its start) it is exactly plain LoRA's z whatever α and
/// the ops are; with the gate at ½ it is z + ½·(½·avg + ¼·max); cut to avg it keeps g·w = ¼.
#[test]
fn gated_cell_starts_as_lora_and_scales_its_ops_by_the_gate() {
    let (mut cell, z, zv, avg, max) = three_op_cell(segadapt::adapt::CellForm::Gated);
    assert_eq!(
        to_vec(cell.forward(z.clone())),
        zv.to_vec(),
        "gate 0: plain LoRA"
    );
    cell.gate = Some(Param::from_tensor(Tensor::from_data(
        TensorData::new(vec![0.5f32], [1]),
        &cpu(),
    )));
    let mix: Vec<f32> = (0..9)
        .map(|i| zv[i] + 0.5 * (0.5 * avg[i] + 0.25 * max[i]))
        .collect();
    let got = to_vec(cell.forward(z.clone()));
    assert!(max_abs(&got, &mix) < 1e-5, "gated mix: {got:?}");
    cell.state = CellState::Discrete(1);
    let cut: Vec<f32> = (0..9).map(|i| zv[i] + 0.25 * avg[i]).collect();
    let got = to_vec(cell.forward(z));
    assert!(max_abs(&got, &cut) < 1e-5, "gated cut to avg: {got:?}");
}

/// Residual cells cut to a per-token op fold into W0 exactly: `zero` (z) and `identity`
/// ((1 + w)·z); cut to a pooling op they stay side branches.
#[test]
fn residual_cells_fold_when_their_op_is_linear() {
    let (base, _) = tiny("tinyvit");
    let x = input(&base, 4);
    let ops = vec![OpKind::Zero, OpKind::Identity, OpKind::MaxPool3x3];
    for (op, folds) in [(0usize, true), (1, true), (2, false)] {
        let mut model = base.clone();
        let c = AdapterConfig {
            cell: segadapt::adapt::CellForm::Residual,
            ops: ops.clone(),
            ..cfg(Method::NasLora, Placement::Qkv)
        };
        apply_adapters(&mut model, &c, &cpu());
        randomise_b(&mut model, 12);
        for_each_branch(&mut model, |b| {
            let cell = b.cell.as_mut().unwrap();
            // Unequal weights, so that identity's 1 + w is not a round number.
            cell.alpha = Param::from_tensor(Tensor::from_data(
                TensorData::new(vec![0.3f32, -0.2, 0.1], [3]),
                &cpu(),
            ));
            cell.state = CellState::Discrete(op);
        });
        let before = to_vec(model.embed_image(x.clone()));
        assert!(max_abs(&before, &to_vec(base.embed_image(x.clone()))) > 1e-3);
        let report = merge(&mut model);
        let after = to_vec(model.embed_image(x.clone()));
        assert_close(&format!("residual op {op} merged"), &after, &before, 1e-4);
        assert_eq!(report.side_branches.is_empty(), folds, "op {op}");
    }
}

/// PC-DARTS with r = 4, K = 2: the mixed op sees channels 0, 1; 2, 3 pass through; then
/// `channel_shuffle(x, 2)` (view (2, 2), transpose, flatten) orders channels [0, 2, 1, 3].
#[test]
fn partial_channel_cell_touches_only_its_subset() {
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(1);
    let (r, k) = (4, 2);
    const PERM: [usize; 4] = [0, 2, 1, 3];
    let mut identity = segadapt::adapt::NasCell::new(
        &[OpKind::Identity],
        r,
        k,
        1.0,
        segadapt::adapt::OpInit::Random,
        segadapt::adapt::CellForm::Plain,
        &mut rng,
        &cpu(),
    );
    identity.state = CellState::Mixed;
    let full = segadapt::adapt::NasCell::new(
        OpKind::ALL,
        r,
        k,
        1.0,
        segadapt::adapt::OpInit::Random,
        segadapt::adapt::CellForm::Plain,
        &mut rng,
        &cpu(),
    );
    assert_eq!(full.partial, 2);
    let z = rand_map(9, [1, 5, 4, r]);
    let z_v = to_vec(z.clone());
    // Identity cell: the output is exactly the permuted input.
    let id_v = to_vec(identity.forward(z.clone()));
    let out_v = to_vec(full.forward(z));
    for p in 0..20 {
        for c in 0..r {
            assert_eq!(
                id_v[p * r + c],
                z_v[p * r + PERM[c]],
                "identity, channel {c}"
            );
        }
        // Output channels 1 and 3 hold input channels 2 and 3, untouched.
        assert_eq!(out_v[p * r + 1], z_v[p * r + 2]);
        assert_eq!(out_v[p * r + 3], z_v[p * r + 3]);
    }
}

#[test]
fn merge_is_exact_for_foldable_and_keeps_spatial_side_branches() {
    for enc in ["vit", "tinyvit"] {
        let (base, _) = tiny(enc);
        let x = input(&base, 4);
        for (m, p, op) in [
            (Method::Lora, Placement::All, None),
            (Method::Lora, Placement::Qv, None),
            (Method::NasLora, Placement::Qkv, Some(0usize)),
            (Method::NasPcLora, Placement::Qkv, Some(0)),
            (Method::NasLora, Placement::Qkv, Some(1)),
        ] {
            let mut model = base.clone();
            apply_adapters(&mut model, &cfg(m, p), &cpu());
            randomise_b(&mut model, 11);
            if let Some(i) = op {
                for_each_branch(&mut model, |b| {
                    b.cell.as_mut().unwrap().state = CellState::Discrete(i)
                });
            }
            let before = to_vec(model.embed_image(x.clone()));
            let base_out = to_vec(base.embed_image(x.clone()));
            assert!(
                max_abs(&before, &base_out) > 1e-3,
                "adapter must change the output for a meaningful test"
            );
            let report = merge(&mut model);
            let after = to_vec(model.embed_image(x.clone()));
            assert_close(
                &format!("{enc} {m:?} {p:?} op {op:?} merged"),
                &after,
                &before,
                1e-4,
            );
            if op == Some(1) {
                assert!(report.folded.is_empty() && !report.side_branches.is_empty());
            } else {
                assert!(report.side_branches.is_empty() && !report.folded.is_empty());
            }
        }
    }
}

#[test]
fn adapter_file_round_trip_is_bit_exact_and_checks_base() {
    let dir = tempfile::tempdir().unwrap();
    let (base, info) = tiny("vit");
    for m in METHODS {
        let mut model = base.clone();
        let c = cfg(m, Placement::Qv);
        apply_adapters(&mut model, &c, &cpu());
        randomise_b(&mut model, 21);
        set_cell_states(&mut model, CellState::Discrete(0));
        let path = dir.path().join(format!("{}.safetensors", m.name()));
        let card = AdapterCard::new(&model, &info, &c, false);
        save_adapter(&model, &card, &path).unwrap();
        let mut loaded = base.clone();
        let card2 = load_adapter(&mut loaded, &info, &path, &cpu()).unwrap();
        assert_eq!(card2.adapter, c);
        let a = segadapt::adapt::adapters(&model);
        let b = segadapt::adapt::adapters(&loaded);
        assert_eq!(a.len(), b.len());
        for ((_, x), (_, y)) in a.iter().zip(&b) {
            for (bx, by) in x.branches.iter().zip(&y.branches) {
                assert_eq!(to_vec(bx.lora_a.val()), to_vec(by.lora_a.val()));
                assert_eq!(to_vec(bx.lora_b.val()), to_vec(by.lora_b.val()));
                if let (Some(cx), Some(cy)) = (&bx.cell, &by.cell) {
                    assert_eq!(to_vec(cx.alpha.val()), to_vec(cy.alpha.val()));
                    assert_eq!(cx.state, cy.state);
                }
            }
        }
        let xin = input(&base, 8);
        assert_eq!(
            to_vec(model.embed_image(xin.clone())),
            to_vec(loaded.embed_image(xin)),
            "{m:?}"
        );
        // A different base checkpoint is refused with a clear message.
        let mut other = info.clone();
        other.sha256 = "0".repeat(64);
        let err = load_adapter(&mut base.clone(), &other, &path, &cpu())
            .unwrap_err()
            .to_string();
        assert!(err.contains("trained on base model"), "{err}");
    }
}

#[test]
fn nas_cell_matches_independent_pytorch_reference() {
    let refs = Refs::load("nas_cell_ref.safetensors");
    let device = cpu();
    for tag in ["full", "pc"] {
        let meta = refs.vec(&format!("{tag}_meta"));
        let (scale, temp, k) = (meta[0] as f64, meta[1] as f64, meta[2] as usize);
        let a: Tensor<2> = refs.tensor(&format!("{tag}_A"), &device);
        let [d_in, r] = a.dims();
        let b: Tensor<2> = refs.tensor(&format!("{tag}_B"), &device);
        let d_out = b.dims()[1];
        let method = if k > 1 {
            Method::NasPcLora
        } else {
            Method::NasLora
        };
        let c = AdapterConfig {
            method,
            rank: r,
            alpha: scale * r as f64,
            pc_k: k.max(1),
            alpha_temperature: temp,
            ..Default::default()
        };
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0);
        let mut br = segadapt::adapt::Branch::new(d_in, d_out, &c, &mut rng, &device);
        br.lora_a = Param::from_tensor(a);
        br.lora_b = Param::from_tensor(b);
        let cell = br.cell.as_mut().unwrap();
        cell.alpha = Param::from_tensor(refs.tensor(&format!("{tag}_alpha"), &device));
        for (i, op) in OpKind::ALL.iter().enumerate() {
            let key = format!("{tag}_w_{}", op.name());
            if refs.has(&key) {
                cell.op_weights[i] = Some(Param::from_tensor(refs.tensor(&key, &device)));
            }
        }
        cell.state = CellState::Mixed;
        let y = br.forward(refs.tensor(&format!("{tag}_x"), &device));
        assert_close(
            &format!("nas cell ({tag})"),
            &to_vec(y),
            refs.vec(&format!("{tag}_y")),
            1e-5,
        );
    }
}
