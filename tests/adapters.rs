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

#[test]
fn gradients_reach_adapters_and_alpha_only() {
    let (base, _) = tiny("vit");
    for m in METHODS {
        let mut model = base.clone();
        apply_adapters(&mut model, &cfg(m, Placement::Qkv), &cpu());
        randomise_b(&mut model, 3);
        set_cell_states(&mut model, CellState::Mixed);
        let ad = cpu().autodiff();
        let model = model.fork(&ad).train().no_grad().set_require_grad_group(
            burn::module::ParamGroup::from_regex(r"_adapter\.").unwrap(),
            true,
        );
        let x = Tensor::<4>::from_data(input(&base, 2).into_data(), &ad);
        let loss = model.embed_image(x).square().mean();
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
        }
        assert!(
            blk.attn.qkv.weight.val().grad(&grads).is_none(),
            "{m:?}: frozen qkv weight got a gradient"
        );
        assert!(
            blk.mlp.lin1.weight.val().grad(&grads).is_none(),
            "{m:?}: frozen mlp weight got a gradient"
        );
        assert!(
            model
                .mask_decoder
                .iou_token
                .weight
                .val()
                .grad(&grads)
                .is_none()
        );
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

#[test]
fn discrete_cell_is_its_chosen_op_and_sharp_alpha_matches() {
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0);
    let mut cell = segadapt::adapt::NasCell::new(
        &OpKind::ALL,
        4,
        1,
        1.0,
        segadapt::adapt::OpInit::Random,
        &mut rng,
        &cpu(),
    );
    let z = rand_map(5, [2, 6, 5, 4]);
    for i in 0..OpKind::ALL.len() {
        cell.state = CellState::Discrete(i);
        let got = to_vec(cell.forward(z.clone()));
        let want = to_vec(
            cell.apply_op(i, z.clone().permute([0, 3, 1, 2]))
                .permute([0, 2, 3, 1]),
        );
        assert_eq!(max_abs(&got, &want), 0.0, "discrete cell {i}");
        // softmax of a very sharp α is the one-hot mix.
        let mut a = vec![0f32; OpKind::ALL.len()];
        a[i] = 40.0;
        cell.alpha = Param::from_tensor(Tensor::from_data(
            TensorData::new(a, [OpKind::ALL.len()]),
            &cpu(),
        ));
        cell.state = CellState::Mixed;
        let mixed = to_vec(cell.forward(z.clone()));
        assert!(max_abs(&mixed, &want) < 1e-5, "sharp mix of op {i}");
        assert_eq!(cell.argmax(), i);
    }
}

#[test]
fn partial_channel_cell_touches_only_its_subset() {
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(1);
    let r = 6;
    let k = 2;
    let cell = segadapt::adapt::NasCell::new(
        &OpKind::ALL,
        r,
        k,
        1.0,
        segadapt::adapt::OpInit::Random,
        &mut rng,
        &cpu(),
    );
    assert_eq!(cell.partial, 3);
    let z = rand_map(9, [1, 5, 4, r]);
    let out = cell.forward(z.clone());
    // Undo the shuffle: out[j·k + g] = pre[g·(r/k) + j].
    let out_v = to_vec(out);
    let z_v = to_vec(z);
    let per = r / k;
    let mut untouched = 0;
    for p in 0..20 {
        for c in 0..r {
            let g = c / per;
            let j = c % per;
            let o = out_v[p * r + j * k + g];
            if c >= cell.partial {
                assert_eq!(o, z_v[p * r + c], "pass-through channel {c} changed");
                untouched += 1;
            }
        }
    }
    assert_eq!(untouched, 20 * (r - 3));
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
