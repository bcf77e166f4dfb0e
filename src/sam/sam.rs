//! Mirrors `segment_anything/modeling/sam.py`: the model that ties encoder, prompt encoder and
//! mask decoder together, plus mask post-processing.

use burn::prelude::*;
use burn::tensor::activation::sigmoid;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};

use super::config::{EncoderConfig, ModelFamily, SamConfig};
use super::image_encoder::ImageEncoderViT;
use super::mask_decoder::MaskDecoder;
use super::prompt_encoder::{PromptEncoder, Prompts};
use super::tiny_vit::TinyViT;

// One encoder per model, never in a collection: the variants' size difference costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum ImageEncoder {
    Vit(ImageEncoderViT),
    TinyVit(TinyViT),
}

impl ImageEncoder {
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match self {
            ImageEncoder::Vit(e) => e.forward(x),
            ImageEncoder::TinyVit(e) => e.forward(x),
        }
    }

    /// Number of adaptable stages (ViT blocks, or TinyViT stages).
    pub fn num_stages(&self) -> usize {
        match self {
            ImageEncoder::Vit(e) => e.blocks.len(),
            ImageEncoder::TinyVit(e) => e.layers.len(),
        }
    }

    /// The part before stage `first`: frozen when adapters start at `first`, so training may
    /// compute it once per image. Returns (B, h, w, C) tokens.
    pub fn forward_prefix(&self, x: Tensor<4>, first: usize) -> Tensor<4> {
        match self {
            ImageEncoder::Vit(e) => e.forward_blocks(e.embed(x), 0..first),
            ImageEncoder::TinyVit(e) => {
                let t = e.embed(x);
                e.forward_layers(t, 1..first.max(1))
            }
        }
    }

    /// The rest of the encoder after [`Self::forward_prefix`].
    pub fn forward_suffix(&self, x: Tensor<4>, first: usize) -> Tensor<4> {
        match self {
            ImageEncoder::Vit(e) => e.forward_neck(e.forward_blocks(x, first..e.blocks.len())),
            ImageEncoder::TinyVit(e) => {
                e.forward_neck(e.forward_layers(x, first.max(1)..e.layers.len()))
            }
        }
    }
}

#[derive(Module, Debug)]
pub struct Sam {
    pub image_encoder: ImageEncoder,
    pub prompt_encoder: PromptEncoder,
    pub mask_decoder: MaskDecoder,
    #[module(skip)]
    pub config: SamConfig,
}

/// Decoder output for a batch of prompts.
#[derive(Clone, Debug)]
pub struct DecoderOutput {
    /// (B, M, 4h, 4w) low-resolution mask logits (256×256 for the official models).
    pub low_res_masks: Tensor<4>,
    /// (B, M) predicted IoU of each mask.
    pub iou_predictions: Tensor<2>,
}

impl Sam {
    pub fn new(config: &SamConfig, device: &Device) -> Self {
        let image_encoder = match &config.encoder {
            EncoderConfig::Vit(c) => ImageEncoder::Vit(ImageEncoderViT::new(c, device)),
            EncoderConfig::TinyVit(c) => ImageEncoder::TinyVit(TinyViT::new(c, device)),
        };
        Self {
            image_encoder,
            prompt_encoder: PromptEncoder::new(&config.prompt_encoder, device),
            mask_decoder: MaskDecoder::new(&config.mask_decoder, device),
            config: config.clone(),
        }
    }

    pub fn img_size(&self) -> usize {
        self.config.img_size()
    }

    /// Normalised, padded input (B, 3, img, img) -> image embedding (B, C, img/16, img/16).
    pub fn embed_image(&self, x: Tensor<4>) -> Tensor<4> {
        self.image_encoder.forward(x)
    }

    /// Prompt encoder + mask decoder on a precomputed embedding.
    pub fn decode(
        &self,
        image_embeddings: Tensor<4>,
        prompts: &Prompts,
        multimask_output: bool,
    ) -> DecoderOutput {
        let pe = self.prompt_encoder.get_dense_pe();
        self.decode_with_pe(image_embeddings, pe, prompts, multimask_output)
    }

    /// `decode` with the dense positional encoding (`prompt_encoder.get_dense_pe()`) given,
    /// so a predictor can compute it once.
    pub fn decode_with_pe(
        &self,
        image_embeddings: Tensor<4>,
        image_pe: Tensor<4>,
        prompts: &Prompts,
        multimask_output: bool,
    ) -> DecoderOutput {
        let device = image_embeddings.device();
        let (sparse, dense) = self.prompt_encoder.forward(prompts, &device);
        let (low_res_masks, iou_predictions) =
            self.mask_decoder
                .forward(image_embeddings, image_pe, sparse, dense, multimask_output);
        DecoderOutput {
            low_res_masks,
            iou_predictions,
        }
    }

    /// Upscale low-res logits to the padded input, crop the padding, resize to the original.
    /// `input_size` and `original_size` are (H, W). MedSAM's official code resizes
    /// probabilities instead (sigmoid → bilinear to the original → > 0.5); its result is
    /// returned as logits again, so thresholding at 0 stays the same rule for every family.
    pub fn postprocess_masks(
        &self,
        masks: Tensor<4>,
        input_size: [usize; 2],
        original_size: [usize; 2],
    ) -> Tensor<4> {
        let img = self.img_size();
        let bilinear = |size: [usize; 2]| {
            InterpolateOptions::new(InterpolateMode::Bilinear)
                .with_output_size(size)
                .with_align_corners(false)
        };
        if self.config.family == ModelFamily::MedSam {
            let p = interpolate(sigmoid(masks), bilinear(original_size));
            // Clamped so that saturated probabilities stay finite logits.
            let p = p.clamp(1e-7, 1.0 - 1e-7);
            return (p.clone() / (p.neg() + 1.0)).log();
        }
        let [.., lh, lw] = masks.dims();
        // LiteMedSAM's low-res logits already are the padded input's size (256²).
        let masks = if [lh, lw] == [img, img] {
            masks
        } else {
            interpolate(masks, bilinear([img, img]))
        };
        let masks = masks.slice(s![.., .., 0..input_size[0], 0..input_size[1]]);
        interpolate(masks, bilinear(original_size))
    }
}
