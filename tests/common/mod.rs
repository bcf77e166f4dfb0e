//! Shared helpers for the integration tests: fixture paths, reference tensors and configs
//! written by `tools/make_fixtures.py` from the official PyTorch code.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use burn::prelude::*;
use segadapt::sam::config::{
    EncoderConfig, MaskDecoderConfig, ModelType, PromptEncoderConfig, SamConfig, TinyVitConfig,
    TwoWayTransformerConfig, VitConfig,
};

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

pub struct Refs {
    pub map: HashMap<String, (Vec<f32>, Vec<usize>)>,
}

impl Refs {
    pub fn load(name: &str) -> Refs {
        Self::load_path(&fixture(name))
    }
    pub fn load_path(path: &std::path::Path) -> Refs {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
        let mut map = HashMap::new();
        for (k, v) in st.tensors() {
            assert_eq!(v.dtype(), safetensors::Dtype::F32, "{k} must be f32");
            let data: Vec<f32> = v.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            map.insert(k, (data, v.shape().to_vec()));
        }
        Refs { map }
    }
    pub fn has(&self, k: &str) -> bool {
        self.map.contains_key(k)
    }
    pub fn vec(&self, k: &str) -> &Vec<f32> {
        &self.map.get(k).unwrap_or_else(|| panic!("reference '{k}' missing")).0
    }
    pub fn shape(&self, k: &str) -> &Vec<usize> {
        &self.map[k].1
    }
    pub fn tensor<const D: usize>(&self, k: &str, device: &Device) -> Tensor<D> {
        let (v, s) = &self.map.get(k).unwrap_or_else(|| panic!("reference '{k}' missing"));
        Tensor::from_data(TensorData::new(v.clone(), s.clone()), device)
    }
}

pub fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().unwrap()
}

/// Max |a - b|, asserting equal length.
pub fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

pub fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    let d = max_abs(got, want);
    let scale = want.iter().map(|v| v.abs()).fold(0.0, f32::max);
    println!("{what}: max abs err {d:.3e} (max |ref| {scale:.3})");
    assert!(d <= tol, "{what}: max abs error {d} > {tol}");
}

fn us(v: &serde_json::Value) -> usize {
    v.as_u64().expect("integer") as usize
}
fn usv(v: &serde_json::Value) -> Vec<usize> {
    v.as_array().expect("array").iter().map(us).collect()
}

/// The SamConfig of a tiny fixture model, from the json `make_fixtures.py` wrote.
pub fn fixture_config(json_name: &str) -> SamConfig {
    let j: serde_json::Value = serde_json::from_slice(&std::fs::read(fixture(json_name)).unwrap()).unwrap();
    let ie = &j["image_encoder"];
    let encoder = if ie.get("embed_dims").is_some() {
        EncoderConfig::TinyVit(TinyVitConfig {
            img_size: us(&ie["img_size"]),
            in_chans: us(&ie["in_chans"]),
            embed_dims: usv(&ie["embed_dims"]),
            depths: usv(&ie["depths"]),
            num_heads: usv(&ie["num_heads"]),
            window_sizes: usv(&ie["window_sizes"]),
            mlp_ratio: ie["mlp_ratio"].as_f64().unwrap(),
            mbconv_expand_ratio: ie["mbconv_expand_ratio"].as_f64().unwrap(),
            local_conv_size: us(&ie["local_conv_size"]),
            out_chans: us(&ie["neck_out_chans"]),
        })
    } else {
        EncoderConfig::Vit(VitConfig {
            img_size: us(&ie["img_size"]),
            patch_size: us(&ie["patch_size"]),
            in_chans: ie.get("in_chans").map(us).unwrap_or(3),
            embed_dim: us(&ie["embed_dim"]),
            depth: us(&ie["depth"]),
            num_heads: us(&ie["num_heads"]),
            mlp_ratio: ie["mlp_ratio"].as_f64().unwrap(),
            out_chans: us(&ie["out_chans"]),
            qkv_bias: ie.get("qkv_bias").and_then(|v| v.as_bool()).unwrap_or(true),
            use_rel_pos: ie.get("use_rel_pos").and_then(|v| v.as_bool()).unwrap_or(true),
            window_size: us(&ie["window_size"]),
            global_attn_indexes: usv(&ie["global_attn_indexes"]),
        })
    };
    let pe = &j["prompt_encoder"];
    let md = &j["mask_decoder"];
    let tr = &md["transformer"];
    let mean: Vec<f32> = j["pixel_mean"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
    let std: Vec<f32> = j["pixel_std"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
    SamConfig {
        model_type: ModelType::Custom,
        encoder,
        prompt_encoder: PromptEncoderConfig {
            embed_dim: us(&pe["embed_dim"]),
            image_embedding_size: usv(&pe["image_embedding_size"]).try_into().unwrap(),
            input_image_size: usv(&pe["input_image_size"]).try_into().unwrap(),
            mask_in_chans: us(&pe["mask_in_chans"]),
        },
        mask_decoder: MaskDecoderConfig {
            transformer_dim: us(&md["transformer_dim"]),
            transformer: TwoWayTransformerConfig {
                depth: us(&tr["depth"]),
                embedding_dim: us(&tr["embedding_dim"]),
                num_heads: us(&tr["num_heads"]),
                mlp_dim: us(&tr["mlp_dim"]),
                attention_downsample_rate: us(&tr["attention_downsample_rate"]),
            },
            num_multimask_outputs: us(&md["num_multimask_outputs"]),
            iou_head_depth: us(&md["iou_head_depth"]),
            iou_head_hidden_dim: us(&md["iou_head_hidden_dim"]),
        },
        pixel_mean: [mean[0], mean[1], mean[2]],
        pixel_std: [std[0], std[1], std[2]],
    }
}

/// The `flex` CPU device tests run on.
pub fn cpu() -> Device {
    Device::flex()
}
