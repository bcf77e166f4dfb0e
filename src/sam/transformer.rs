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
    pub fn new(
        embedding_dim: usize,
        num_heads: usize,
        downsample_rate: usize,
        device: &Device,
    ) -> Self {
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
        x.reshape([b, n, self.num_heads, c / self.num_heads])
            .swap_dims(1, 2)
    }

    pub fn forward(&self, q: Tensor<3>, k: Tensor<3>, v: Tensor<3>) -> Tensor<3> {
        let (nq, nk) = (q.dims()[1], k.dims()[1]);
        let hd = self.q_proj.weight.dims()[1] / self.num_heads;
        // The decoder's cross-attentions pair a handful of prompt tokens with 4096 image
        // tokens. Folding the projections on the image side into the few tokens' side does
        // the same arithmetic with about half the multiply-adds (exact up to rounding).
        if nq < hd && nk >= 8 * hd {
            return self.forward_fold_kv(q, k, v);
        }
        if nk < hd && nq >= 8 * hd {
            return self.forward_fold_qo(q, k, v);
        }
        self.forward_plain(q, k, v)
    }

    /// Few queries, many keys (tokens → image). Per head, `q_h·(k W_k,h + b_k,h)ᵀ =
    /// (q_h W_k,hᵀ)·kᵀ + const`: the constant is the same for every key, so softmax drops it;
    /// and `P_h (v W_v,h + b_v,h) = (P_h v) W_v,h + b_v,h` because rows of `P_h` sum to 1.
    /// So the key and value projections never run on the many rows.
    fn forward_fold_kv(&self, q: Tensor<3>, k: Tensor<3>, v: Tensor<3>) -> Tensor<3> {
        let [b, nq, _] = q.dims();
        let c = k.dims()[2];
        let nh = self.num_heads;
        let q = self.q_proj.forward(q);
        let d = q.dims()[2];
        let hd = d / nh;
        let qh = q.reshape([b, nq, nh, hd]).swap_dims(1, 2); // (b, nh, nq, hd)
        let wk_t = self
            .k_proj
            .weight
            .val()
            .reshape([c, nh, hd])
            .permute([1, 2, 0]); // (nh, hd, c)
        let qk = qh.matmul(wk_t.unsqueeze_dim::<4>(0)); // (b, nh, nq, c)
        let scores = qk.reshape([b, nh * nq, c]).matmul(k.swap_dims(1, 2)); // (b, nh·nq, nk)
        let p = softmax(scores / (hd as f64).sqrt(), 2);
        let pv = p.matmul(v).reshape([b, nh, nq, c]); // (b, nh, nq, c)
        let wv = self
            .v_proj
            .weight
            .val()
            .reshape([c, nh, hd])
            .swap_dims(0, 1); // (nh, c, hd)
        let mut out = pv.matmul(wv.unsqueeze_dim::<4>(0)); // (b, nh, nq, hd)
        if let Some(bv) = &self.v_proj.bias {
            out = out + bv.val().reshape([1, nh, 1, hd]);
        }
        self.out_proj
            .forward(out.swap_dims(1, 2).reshape([b, nq, d]))
    }

    /// Many queries, few keys (image → tokens). Per head, `(x W_q,h + b_q,h)·k_hᵀ =
    /// x·(W_q,h k_hᵀ) + b_q,h·k_hᵀ`, and the output projection distributes over heads:
    /// `Σ_h P_h (v_h W_o,h) + b_o`. So the query and output projections never run on the
    /// many rows.
    fn forward_fold_qo(&self, q: Tensor<3>, k: Tensor<3>, v: Tensor<3>) -> Tensor<3> {
        let [b, nq, c] = q.dims();
        let nk = k.dims()[1];
        let nh = self.num_heads;
        let k = self.k_proj.forward(k);
        let d = k.dims()[2];
        let hd = d / nh;
        let kh_t = k.reshape([b, nk, nh, hd]).permute([0, 2, 3, 1]); // (b, nh, hd, nk)
        let wq = self
            .q_proj
            .weight
            .val()
            .reshape([c, nh, hd])
            .swap_dims(0, 1); // (nh, c, hd)
        let m = wq.unsqueeze_dim::<4>(0).matmul(kh_t.clone()); // (b, nh, c, nk)
        let m = m.permute([0, 2, 1, 3]).reshape([b, c, nh * nk]);
        let mut scores = q.matmul(m); // (b, nq, nh·nk)
        if let Some(bq) = &self.q_proj.bias {
            let bk = bq.val().reshape([1, nh, 1, hd]).matmul(kh_t); // (b, nh, 1, nk)
            scores = scores + bk.reshape([b, 1, nh * nk]);
        }
        let scores = (scores / (hd as f64).sqrt()).reshape([b, nq, nh, nk]);
        let p = softmax(scores, 3).reshape([b, nq, nh * nk]);
        let vh = self
            .v_proj
            .forward(v)
            .reshape([b, nk, nh, hd])
            .swap_dims(1, 2); // (b, nh, nk, hd)
        let wo = self.out_proj.weight.val().reshape([nh, hd, c]);
        let vo = vh.matmul(wo.unsqueeze_dim::<4>(0)).reshape([b, nh * nk, c]); // (b, nh·nk, c)
        let out = p.matmul(vo); // (b, nq, c)
        match &self.out_proj.bias {
            Some(bo) => out + bo.val().reshape([1, 1, c]),
            None => out,
        }
    }

    /// `Attention.forward` of the official code, step by step.
    pub fn forward_plain(&self, q: Tensor<3>, k: Tensor<3>, v: Tensor<3>) -> Tensor<3> {
        let q = self.separate_heads(self.q_proj.forward(q));
        let k = self.separate_heads(self.k_proj.forward(k));
        let v = self.separate_heads(self.v_proj.forward(v));
        let [b, nh, nq, cph] = q.dims();
        let attn = q.matmul(k.permute([0, 1, 3, 2])) / (cph as f64).sqrt();
        let out = softmax(attn, 3).matmul(v);
        self.out_proj
            .forward(out.swap_dims(1, 2).reshape([b, nq, nh * cph]))
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
    pub fn forward(
        &self,
        queries: Tensor<3>,
        keys: Tensor<3>,
        query_pe: Tensor<3>,
        key_pe: Tensor<3>,
    ) -> (Tensor<3>, Tensor<3>) {
        let queries = if self.skip_first_layer_pe {
            self.self_attn
                .forward(queries.clone(), queries.clone(), queries)
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
        let keys = keys
            + self
                .cross_attn_image_to_token
                .forward(k, q, queries.clone());
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
        let (d, h, r) = (
            cfg.embedding_dim,
            cfg.num_heads,
            cfg.attention_downsample_rate,
        );
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
    pub fn forward(
        &self,
        image_embedding: Tensor<4>,
        image_pe: Tensor<4>,
        point_embedding: Tensor<3>,
    ) -> (Tensor<3>, Tensor<3>) {
        let image_embedding = image_embedding.flatten::<3>(2, 3).permute([0, 2, 1]);
        let image_pe = image_pe.flatten::<3>(2, 3).permute([0, 2, 1]);
        let mut queries = point_embedding.clone();
        let mut keys = image_embedding;
        for layer in &self.layers {
            (queries, keys) =
                layer.forward(queries, keys, point_embedding.clone(), image_pe.clone());
        }
        let q = queries.clone() + point_embedding;
        let k = keys.clone() + image_pe;
        let queries = queries + self.final_attn_token_to_image.forward(q, k, keys.clone());
        (self.norm_final_attn.forward(queries), keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn max_rel_err(a: Tensor<3>, b: Tensor<3>) -> f32 {
        let scale = b.clone().abs().max().into_scalar::<f32>().max(1e-6);
        (a - b).abs().max().into_scalar::<f32>() / scale
    }

    /// The folded cross-attentions compute the official attention (the decoder's shapes:
    /// 7 prompt tokens against a 64×64 image, width 256, 8 heads, downsample 2).
    #[test]
    fn folded_cross_attention_matches_plain() {
        let device = Device::flex();
        let attn = Attention::new(256, 8, 2, &device);
        let rnd = |s: [usize; 3]| {
            Tensor::<3>::random(s, burn::tensor::Distribution::Normal(0.0, 1.0), &device)
        };
        let (tokens, image) = (rnd([2, 7, 256]), rnd([2, 4096, 256]));
        let plain = attn.forward_plain(tokens.clone(), image.clone(), image.clone() * 0.5);
        let fold = attn.forward(tokens.clone(), image.clone(), image.clone() * 0.5);
        assert!(max_rel_err(fold, plain) < 1e-4);
        let plain = attn.forward_plain(image.clone(), tokens.clone(), tokens.clone() * 0.5);
        let fold = attn.forward(image, tokens.clone(), tokens * 0.5);
        assert!(max_rel_err(fold, plain) < 1e-4);
    }
}
