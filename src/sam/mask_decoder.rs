//! Mirrors `segment_anything/modeling/mask_decoder.py`.

use burn::nn::conv::{ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::{Embedding, EmbeddingConfig, Linear};
use burn::prelude::*;
use burn::tensor::activation::{relu, sigmoid};

use super::common::{LayerNorm2d, gelu, linear};
use super::config::MaskDecoderConfig;
use super::transformer::TwoWayTransformer;

#[derive(Module, Debug)]
pub struct Mlp {
    pub layers: Vec<Linear>,
    pub sigmoid_output: bool,
}

impl Mlp {
    pub fn new(
        input: usize,
        hidden: usize,
        output: usize,
        num_layers: usize,
        device: &Device,
    ) -> Self {
        let mut dims = vec![input];
        dims.extend(std::iter::repeat_n(hidden, num_layers - 1));
        dims.push(output);
        Self {
            layers: dims
                .windows(2)
                .map(|w| linear(w[0], w[1], true, device))
                .collect(),
            sigmoid_output: false,
        }
    }
    pub fn forward<const D: usize>(&self, mut x: Tensor<D>) -> Tensor<D> {
        let n = self.layers.len();
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(x);
            if i < n - 1 {
                x = relu(x);
            }
        }
        if self.sigmoid_output { sigmoid(x) } else { x }
    }
}

#[derive(Module, Debug)]
pub struct OutputUpscaling {
    pub conv0: ConvTranspose2d,
    pub ln1: LayerNorm2d,
    pub conv3: ConvTranspose2d,
}

impl OutputUpscaling {
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = gelu(self.ln1.forward(self.conv0.forward(x)));
        gelu(self.conv3.forward(x))
    }
}

#[derive(Module, Debug)]
pub struct MaskDecoder {
    pub transformer: TwoWayTransformer,
    pub iou_token: Embedding,
    pub mask_tokens: Embedding,
    pub output_upscaling: OutputUpscaling,
    pub output_hypernetworks_mlps: Vec<Mlp>,
    pub iou_prediction_head: Mlp,
    pub num_mask_tokens: usize,
}

impl MaskDecoder {
    pub fn new(cfg: &MaskDecoderConfig, device: &Device) -> Self {
        let d = cfg.transformer_dim;
        let t = cfg.num_multimask_outputs + 1;
        let convt = |a: usize, b: usize| {
            ConvTranspose2dConfig::new([a, b], [2, 2])
                .with_stride([2, 2])
                .init(device)
        };
        Self {
            transformer: TwoWayTransformer::new(&cfg.transformer, device),
            iou_token: EmbeddingConfig::new(1, d).init(device),
            mask_tokens: EmbeddingConfig::new(t, d).init(device),
            output_upscaling: OutputUpscaling {
                conv0: convt(d, d / 4),
                ln1: LayerNorm2d::new(d / 4, device),
                conv3: convt(d / 4, d / 8),
            },
            output_hypernetworks_mlps: (0..t).map(|_| Mlp::new(d, d, d / 8, 3, device)).collect(),
            iou_prediction_head: Mlp::new(
                d,
                cfg.iou_head_hidden_dim,
                t,
                cfg.iou_head_depth,
                device,
            ),
            num_mask_tokens: t,
        }
    }

    /// Returns (masks (B, 3 or 1, 4h, 4w) logits, iou_pred (B, 3 or 1)).
    pub fn forward(
        &self,
        image_embeddings: Tensor<4>,
        image_pe: Tensor<4>,
        sparse: Option<Tensor<3>>,
        dense: Tensor<4>,
        multimask_output: bool,
    ) -> (Tensor<4>, Tensor<2>) {
        let (masks, iou) = self.predict_masks(image_embeddings, image_pe, sparse, dense);
        let [b, t, h, w] = masks.dims();
        if multimask_output {
            (masks.slice(s![.., 1..t, .., ..]), iou.slice(s![.., 1..t]))
        } else {
            let _ = (b, h, w);
            (masks.slice(s![.., 0..1, .., ..]), iou.slice(s![.., 0..1]))
        }
    }

    /// All mask tokens: (B, T, 4h, 4w) and (B, T).
    pub fn predict_masks(
        &self,
        image_embeddings: Tensor<4>,
        image_pe: Tensor<4>,
        sparse: Option<Tensor<3>>,
        dense: Tensor<4>,
    ) -> (Tensor<4>, Tensor<2>) {
        let bs = dense.dims()[0];
        let output_tokens = Tensor::cat(
            vec![self.iou_token.weight.val(), self.mask_tokens.weight.val()],
            0,
        );
        let [nt, c] = output_tokens.dims();
        let output_tokens = output_tokens.unsqueeze_dim::<3>(0).expand([bs, nt, c]);
        let tokens = match sparse {
            Some(s) => Tensor::cat(vec![output_tokens, s], 1),
            None => output_tokens,
        };
        let [ib, _, h, w] = image_embeddings.dims();
        // One image embedding serves every prompt of the batch (repeat_interleave in the reference).
        let src = if ib == bs {
            image_embeddings
        } else {
            image_embeddings.expand([bs, c, h, w])
        };
        let src = src + dense;
        let pos_src = image_pe.expand([bs, c, h, w]);
        let (hs, src) = self.transformer.forward(src, pos_src, tokens);
        let iou_token_out = hs.clone().narrow(1, 0, 1).reshape([bs, c]);
        let src = src.swap_dims(1, 2).reshape([bs, c, h, w]);
        let up = self.output_upscaling.forward(src);
        let [_, cu, hu, wu] = up.dims();
        let hyper: Vec<Tensor<2>> = (0..self.num_mask_tokens)
            .map(|i| {
                self.output_hypernetworks_mlps[i]
                    .forward(hs.clone().narrow(1, 1 + i, 1).reshape([bs, c]))
            })
            .collect();
        let hyper_in = Tensor::stack::<3>(hyper, 1);
        let masks = hyper_in.matmul(up.reshape([bs, cu, hu * wu])).reshape([
            bs,
            self.num_mask_tokens,
            hu,
            wu,
        ]);
        let iou_pred = self.iou_prediction_head.forward(iou_token_out);
        (masks, iou_pred)
    }
}
