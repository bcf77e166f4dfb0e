//! Mirrors `segment_anything/predictor.py`: compute the image embedding once, then answer
//! many prompts with the decoder only.

use burn::prelude::*;
use image::RgbImage;

use super::transforms::{Preprocessed, box_for, coords_for, preprocess_for};
use crate::sam::{ModelFamily, Prompts, Sam};

/// A click: image pixel coordinates (x right, y down) and its label.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    pub x: f64,
    pub y: f64,
    pub positive: bool,
}

/// Prompts in original image pixels.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PromptInput {
    pub points: Vec<Point>,
    /// x0, y0, x1, y1
    pub bbox: Option<[f64; 4]>,
    /// Low-resolution logits (1 × 4h × 4w) from an earlier prediction.
    pub mask_input: Option<Vec<f32>>,
}

impl PromptInput {
    pub fn is_empty(&self) -> bool {
        self.points.is_empty() && self.bbox.is_none() && self.mask_input.is_none()
    }
}

/// The embedding of one image plus the sizes post-processing needs.
#[derive(Clone, Debug)]
pub struct ImageEmbedding {
    pub embedding: Tensor<4>,
    pub input_size: [usize; 2],
    pub original_size: [usize; 2],
}

#[derive(Clone, Debug)]
pub struct Prediction {
    /// Mask logits at the original size, one `h·w` plane per mask.
    pub masks: Vec<Vec<f32>>,
    pub iou: Vec<f32>,
    /// Low-resolution logits, one `lh·lw` plane per mask (feed back as `mask_input`).
    pub low_res: Vec<Vec<f32>>,
    /// (h, w) of `masks`.
    pub size: [usize; 2],
    /// (lh, lw) of `low_res`.
    pub low_res_size: [usize; 2],
}

impl Prediction {
    /// Index of the mask with the highest predicted IoU.
    pub fn best(&self) -> usize {
        (0..self.iou.len()).fold(0, |b, i| if self.iou[i] > self.iou[b] { i } else { b })
    }
    /// Mask `i` thresholded at logit 0.
    pub fn binary(&self, i: usize) -> Vec<bool> {
        self.masks[i].iter().map(|&v| v > 0.0).collect()
    }
}

fn to_planes(t: Tensor<4>) -> (Vec<Vec<f32>>, [usize; 2]) {
    let [_, m, h, w] = t.dims();
    let v: Vec<f32> = t
        .into_data()
        .convert::<f32>()
        .try_to_vec()
        .unwrap_or_default();
    (
        (0..m)
            .map(|i| v[i * h * w..(i + 1) * h * w].to_vec())
            .collect(),
        [h, w],
    )
}

pub struct Predictor {
    pub model: Sam,
    pub device: Device,
    /// The decoder's dense positional encoding: fixed by the prompt encoder's weights, so it is
    /// computed on the first click instead of on every one (≈10% of a CPU decode).
    dense_pe: std::sync::OnceLock<Tensor<4>>,
}

impl Predictor {
    pub fn new(model: Sam, device: Device) -> Self {
        Self {
            model,
            device,
            dense_pe: std::sync::OnceLock::new(),
        }
    }

    pub fn img_size(&self) -> usize {
        self.model.img_size()
    }

    /// The family the model was loaded as: it selects the pre- and post-processing.
    pub fn family(&self) -> ModelFamily {
        self.model.config.family
    }

    /// The model input as the model's family expects it.
    pub fn preprocess(&self, img: &RgbImage) -> Preprocessed {
        preprocess_for(img, &self.model.config)
    }

    pub fn input_tensor(&self, p: &Preprocessed) -> Tensor<4> {
        let s = self.img_size();
        Tensor::from_data(TensorData::new(p.data.clone(), [1, 3, s, s]), &self.device)
    }

    /// `SamPredictor.set_image`.
    pub fn set_image(&self, img: &RgbImage) -> ImageEmbedding {
        let p = self.preprocess(img);
        let embedding = self.model.embed_image(self.input_tensor(&p));
        ImageEmbedding {
            embedding,
            input_size: p.input_size,
            original_size: p.original_size,
        }
    }

    /// Prompts in the model input frame, as tensors.
    pub fn prompt_tensors(&self, prompt: &PromptInput, original_size: [usize; 2]) -> Prompts {
        let c = &self.model.config;
        let d = &self.device;
        let points = (!prompt.points.is_empty()).then(|| {
            let n = prompt.points.len();
            let coords: Vec<f32> = prompt
                .points
                .iter()
                .flat_map(|p| coords_for([p.x, p.y], original_size, c))
                .collect();
            let labels: Vec<f32> = prompt
                .points
                .iter()
                .map(|p| if p.positive { 1.0 } else { 0.0 })
                .collect();
            (
                Tensor::<3>::from_data(TensorData::new(coords, [1, n, 2]), d),
                Tensor::<2>::from_data(TensorData::new(labels, [1, n]), d),
            )
        });
        let boxes = prompt.bbox.map(|b| {
            Tensor::<2>::from_data(
                TensorData::new(box_for(b, original_size, c).to_vec(), [1, 4]),
                d,
            )
        });
        let masks = prompt.mask_input.as_ref().map(|m| {
            let side = (m.len() as f64).sqrt() as usize;
            Tensor::<4>::from_data(TensorData::new(m.clone(), [1, 1, side, side]), d)
        });
        Prompts {
            points,
            boxes,
            masks,
        }
    }

    /// `SamPredictor.predict(..., return_logits=True)`.
    pub fn predict(
        &self,
        emb: &ImageEmbedding,
        prompt: &PromptInput,
        multimask_output: bool,
    ) -> Prediction {
        let prompts = self.prompt_tensors(prompt, emb.original_size);
        let pe = self
            .dense_pe
            .get_or_init(|| self.model.prompt_encoder.get_dense_pe())
            .clone();
        let out = self
            .model
            .decode_with_pe(emb.embedding.clone(), pe, &prompts, multimask_output);
        let masks = self.model.postprocess_masks(
            out.low_res_masks.clone(),
            emb.input_size,
            emb.original_size,
        );
        let iou: Vec<f32> = out
            .iou_predictions
            .into_data()
            .convert::<f32>()
            .try_to_vec()
            .unwrap_or_default();
        let (low_res, low_res_size) = to_planes(out.low_res_masks);
        let (masks, size) = to_planes(masks);
        Prediction {
            masks,
            iou,
            low_res,
            size,
            low_res_size,
        }
    }
}
