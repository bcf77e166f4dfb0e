//! Mirrors `segment_anything/modeling/prompt_encoder.py`.

use std::f64::consts::PI;

use burn::module::Param;
use burn::nn::conv::Conv2d;
use burn::nn::{Embedding, EmbeddingConfig};
use burn::prelude::*;

use super::common::{LayerNorm2d, conv2d, gelu};
use super::config::PromptEncoderConfig;

/// Positional encoding using random spatial frequencies.
#[derive(Module, Debug)]
pub struct PositionEmbeddingRandom {
    pub positional_encoding_gaussian_matrix: Param<Tensor<2>>,
}

impl PositionEmbeddingRandom {
    /// coords in [0, 1], shape (..., 2) -> (..., 2·F)
    fn pe_encoding<const D: usize>(&self, coords: Tensor<D>) -> Tensor<D> {
        let coords = coords * 2.0 - 1.0;
        let g = self.positional_encoding_gaussian_matrix.val();
        let [two, f] = g.dims();
        let dims = coords.dims();
        let lead: usize = dims[..D - 1].iter().product();
        let c = coords.reshape([lead, two]).matmul(g) * (2.0 * PI);
        let out = Tensor::cat(vec![c.clone().sin(), c.cos()], 1);
        let mut shape = dims;
        shape[D - 1] = 2 * f;
        out.reshape(shape)
    }

    /// Dense encoding of an (h, w) grid: (C, h, w)
    pub fn forward(&self, [h, w]: [usize; 2]) -> Tensor<3> {
        let device = self.positional_encoding_gaussian_matrix.device();
        let mut grid = Vec::with_capacity(h * w * 2);
        for i in 0..h {
            for j in 0..w {
                // (cumsum - 0.5) / size, computed in f32 like the reference.
                grid.push((j as f32 + 1.0 - 0.5) / w as f32);
                grid.push((i as f32 + 1.0 - 0.5) / h as f32);
            }
        }
        let coords = Tensor::<3>::from_data(TensorData::new(grid, [h, w, 2]), &device);
        self.pe_encoding(coords).permute([2, 0, 1])
    }

    /// coords in input-image pixels, (B, N, 2) -> (B, N, C)
    pub fn forward_with_coords(&self, coords: Tensor<3>, [ih, iw]: [usize; 2]) -> Tensor<3> {
        let [b, n, _] = coords.dims();
        let device = coords.device();
        let scale = Tensor::<3>::from_data(
            TensorData::new(vec![1.0 / iw as f32, 1.0 / ih as f32], [1, 1, 2]),
            &device,
        );
        let _ = (b, n);
        self.pe_encoding(coords * scale)
    }
}

#[derive(Module, Debug)]
pub struct MaskDownscaling {
    pub conv0: Conv2d,
    pub ln1: LayerNorm2d,
    pub conv3: Conv2d,
    pub ln4: LayerNorm2d,
    pub conv6: Conv2d,
}

impl MaskDownscaling {
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = gelu(self.ln1.forward(self.conv0.forward(x)));
        let x = gelu(self.ln4.forward(self.conv3.forward(x)));
        self.conv6.forward(x)
    }
}

/// Prompts for one batch, in the model's input frame (after `ResizeLongestSide`).
#[derive(Clone, Debug, Default)]
pub struct Prompts {
    /// (B, N, 2) point coordinates and (B, N) labels (1 foreground, 0 background, -1 padding).
    pub points: Option<(Tensor<3>, Tensor<2>)>,
    /// (B, 4) boxes as x0, y0, x1, y1.
    pub boxes: Option<Tensor<2>>,
    /// (B, 1, 4·h, 4·w) low-resolution mask logits from an earlier prediction.
    pub masks: Option<Tensor<4>>,
}

#[derive(Module, Debug)]
pub struct PromptEncoder {
    pub pe_layer: PositionEmbeddingRandom,
    pub point_embeddings: Vec<Embedding>,
    pub not_a_point_embed: Embedding,
    pub mask_downscaling: MaskDownscaling,
    pub no_mask_embed: Embedding,
    pub embed_dim: usize,
    pub image_embedding_size: [usize; 2],
    pub input_image_size: [usize; 2],
}

impl PromptEncoder {
    pub fn new(cfg: &PromptEncoderConfig, device: &Device) -> Self {
        let (c, m) = (cfg.embed_dim, cfg.mask_in_chans);
        let emb = |n: usize| EmbeddingConfig::new(n, c).init(device);
        Self {
            pe_layer: PositionEmbeddingRandom {
                positional_encoding_gaussian_matrix: Param::from_tensor(Tensor::random(
                    [2, c / 2],
                    burn::tensor::Distribution::Normal(0.0, 1.0),
                    device,
                )),
            },
            point_embeddings: (0..4).map(|_| emb(1)).collect(),
            not_a_point_embed: emb(1),
            mask_downscaling: MaskDownscaling {
                conv0: conv2d(1, m / 4, 2, 2, 0, 1, true, device),
                ln1: LayerNorm2d::new(m / 4, device),
                conv3: conv2d(m / 4, m, 2, 2, 0, 1, true, device),
                ln4: LayerNorm2d::new(m, device),
                conv6: conv2d(m, c, 1, 1, 0, 1, true, device),
            },
            no_mask_embed: emb(1),
            embed_dim: c,
            image_embedding_size: cfg.image_embedding_size,
            input_image_size: cfg.input_image_size,
        }
    }

    pub fn get_dense_pe(&self) -> Tensor<4> {
        self.pe_layer
            .forward(self.image_embedding_size)
            .unsqueeze_dim(0)
    }

    fn embed_points(&self, points: Tensor<3>, labels: Tensor<2>, pad: bool) -> Tensor<3> {
        let [b, _, _] = points.dims();
        let device = points.device();
        let mut points = points + 0.5;
        let mut labels = labels;
        if pad {
            points = Tensor::cat(vec![points, Tensor::zeros([b, 1, 2], &device)], 1);
            labels = Tensor::cat(vec![labels, Tensor::ones([b, 1], &device).neg()], 1);
        }
        let pe = self
            .pe_layer
            .forward_with_coords(points, self.input_image_size);
        let is = |v: f32| labels.clone().equal_elem(v).float().unsqueeze_dim::<3>(2);
        let row = |e: &Embedding| e.weight.val().unsqueeze_dim::<3>(0);
        let (pad_m, neg_m, pos_m) = (is(-1.0), is(0.0), is(1.0));
        pe * (pad_m.clone().neg() + 1.0)
            + pad_m * row(&self.not_a_point_embed)
            + neg_m * row(&self.point_embeddings[0])
            + pos_m * row(&self.point_embeddings[1])
    }

    fn embed_boxes(&self, boxes: Tensor<2>) -> Tensor<3> {
        let [b, _] = boxes.dims();
        let coords = (boxes + 0.5).reshape([b, 2, 2]);
        let pe = self
            .pe_layer
            .forward_with_coords(coords, self.input_image_size);
        let corners = Tensor::cat(
            vec![
                self.point_embeddings[2].weight.val(),
                self.point_embeddings[3].weight.val(),
            ],
            0,
        );
        pe + corners.unsqueeze_dim(0)
    }

    fn batch_size(p: &Prompts) -> usize {
        if let Some((pts, _)) = &p.points {
            pts.dims()[0]
        } else if let Some(b) = &p.boxes {
            b.dims()[0]
        } else if let Some(m) = &p.masks {
            m.dims()[0]
        } else {
            1
        }
    }

    /// Returns (sparse (B, N, C) or None when there is no point/box, dense (B, C, h, w)).
    pub fn forward(&self, p: &Prompts, device: &Device) -> (Option<Tensor<3>>, Tensor<4>) {
        let bs = Self::batch_size(p);
        let mut parts = Vec::new();
        if let Some((coords, labels)) = &p.points {
            parts.push(self.embed_points(coords.clone(), labels.clone(), p.boxes.is_none()));
        }
        if let Some(boxes) = &p.boxes {
            parts.push(self.embed_boxes(boxes.clone()));
        }
        let sparse = (!parts.is_empty()).then(|| Tensor::cat(parts, 1));
        let dense = match &p.masks {
            Some(m) => self.mask_downscaling.forward(m.clone()),
            None => {
                let [h, w] = self.image_embedding_size;
                self.no_mask_embed
                    .weight
                    .val()
                    .to_device(device)
                    .reshape([1, self.embed_dim, 1, 1])
                    .expand([bs, self.embed_dim, h, w])
            }
        };
        (sparse, dense)
    }
}
