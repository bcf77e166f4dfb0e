//! Mirrors `segment_anything/modeling/transformer.py`: the two-way transformer of the decoder.

use burn::nn::{LayerNorm, Linear};
use burn::prelude::*;
use burn::tensor::activation::softmax;

use super::common::{Act, MlpBlock, layer_norm, linear};
use super::config::TwoWayTransformerConfig;

#[derive(Module, Debug)]
pub struct Attention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub out_proj: Linear,
    pub num_heads: usize,
}

impl Attention {
    pub fn new(embedding_dim: usize, num_heads: usize, downsample_rate: usize, device: &Device) -> Self {
        let internal = embedding_dim / downsample_rate;
        Self {
            q_proj: linear(embedding_dim, internal, true, device),
            k_proj: linear(embedding_dim, internal, true, device),
            v_proj: linear(embedding_dim, internal, true, device),
            out_proj: linear(internal, embedding_dim, true, device),
            num_heads,
        }
    }

    fn separate_heads(&self, x: Tensor<3>) -> Tensor<4> {
        let [b, n, c] = x.dims();
        x.reshape([b, n, self.num_heads, c / self.num_heads]).swap_dims(1, 2)
    }

    pub fn forward(&self, q: Tensor<3>, k: Tensor<3>, v: Tensor<3>) -> Tensor<3> {
        let q = self.separate_heads(self.q_proj.forward(q));
        let k = self.separate_heads(self.k_proj.forward(k));
        let v = self.separate_heads(self.v_proj.forward(v));
        let [b, nh, nq, cph] = q.dims();
        let attn = q.matmul(k.permute([0, 1, 3, 2])) / (cph as f64).sqrt();
        let out = softmax(attn, 3).matmul(v);
        self.out_proj.forward(out.swap_dims(1, 2).reshape([b, nq, nh * cph]))
    }
}

#[derive(Module, Debug)]
pub struct TwoWayAttentionBlock {
    pub self_attn: Attention,
    pub norm1: LayerNorm,
    pub cross_attn_token_to_image: Attention,
    pub norm2: LayerNorm,
    pub mlp: MlpBlock,
    pub norm3: LayerNorm,
    pub norm4: LayerNorm,
    pub cross_attn_image_to_token: Attention,
    pub skip_first_layer_pe: bool,
}

impl TwoWayAttentionBlock {
    pub fn forward(&self, queries: Tensor<3>, keys: Tensor<3>, query_pe: Tensor<3>, key_pe: Tensor<3>) -> (Tensor<3>, Tensor<3>) {
        let queries = if self.skip_first_layer_pe {
            self.self_attn.forward(queries.clone(), queries.clone(), queries)
        } else {
            let q = queries.clone() + query_pe.clone();
            queries.clone() + self.self_attn.forward(q.clone(), q, queries)
        };
        let queries = self.norm1.forward(queries);

        let q = queries.clone() + query_pe.clone();
        let k = keys.clone() + key_pe.clone();
        let queries = queries + self.cross_attn_token_to_image.forward(q, k, keys.clone());
        let queries = self.norm2.forward(queries);

        let queries = queries.clone() + self.mlp.forward(queries);
        let queries = self.norm3.forward(queries);

        let q = queries.clone() + query_pe;
        let k = keys.clone() + key_pe;
        let keys = keys + self.cross_attn_image_to_token.forward(k, q, queries.clone());
        let keys = self.norm4.forward(keys);
        (queries, keys)
    }
}

#[derive(Module, Debug)]
pub struct TwoWayTransformer {
    pub layers: Vec<TwoWayAttentionBlock>,
    pub final_attn_token_to_image: Attention,
    pub norm_final_attn: LayerNorm,
}

impl TwoWayTransformer {
    pub fn new(cfg: &TwoWayTransformerConfig, device: &Device) -> Self {
        let (d, h, r) = (cfg.embedding_dim, cfg.num_heads, cfg.attention_downsample_rate);
        Self {
            layers: (0..cfg.depth)
                .map(|i| TwoWayAttentionBlock {
                    self_attn: Attention::new(d, h, 1, device),
                    norm1: layer_norm(d, 1e-5, device),
                    cross_attn_token_to_image: Attention::new(d, h, r, device),
                    norm2: layer_norm(d, 1e-5, device),
                    mlp: MlpBlock::new(d, cfg.mlp_dim, Act::Relu, device),
                    norm3: layer_norm(d, 1e-5, device),
                    norm4: layer_norm(d, 1e-5, device),
                    cross_attn_image_to_token: Attention::new(d, h, r, device),
                    skip_first_layer_pe: i == 0,
                })
                .collect(),
            final_attn_token_to_image: Attention::new(d, h, r, device),
            norm_final_attn: layer_norm(d, 1e-5, device),
        }
    }

    /// image_embedding, image_pe: (B, C, h, w); point_embedding: (B, N, C).
    /// Returns (queries (B, N, C), keys (B, h·w, C)).
    pub fn forward(&self, image_embedding: Tensor<4>, image_pe: Tensor<4>, point_embedding: Tensor<3>) -> (Tensor<3>, Tensor<3>) {
        let image_embedding = image_embedding.flatten::<3>(2, 3).permute([0, 2, 1]);
        let image_pe = image_pe.flatten::<3>(2, 3).permute([0, 2, 1]);
        let mut queries = point_embedding.clone();
        let mut keys = image_embedding;
        for layer in &self.layers {
            (queries, keys) = layer.forward(queries, keys, point_embedding.clone(), image_pe.clone());
        }
        let q = queries.clone() + point_embedding;
        let k = keys.clone() + image_pe;
        let queries = queries + self.final_attn_token_to_image.forward(q, k, keys.clone());
        (self.norm_final_attn.forward(queries), keys)
    }
}
