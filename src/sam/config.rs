//! Model configurations, mirroring `build_sam.py` of the official packages.

use serde::{Deserialize, Serialize};

/// Configuration of the ViT image encoder (`ImageEncoderViT`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VitConfig {
    pub img_size: usize,
    pub patch_size: usize,
    pub in_chans: usize,
    pub embed_dim: usize,
    pub depth: usize,
    pub num_heads: usize,
    pub mlp_ratio: f64,
    pub out_chans: usize,
    pub qkv_bias: bool,
    pub use_rel_pos: bool,
    pub window_size: usize,
    pub global_attn_indexes: Vec<usize>,
}

/// Configuration of MobileSAM's TinyViT image encoder (`tiny_vit_sam.TinyViT`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TinyVitConfig {
    pub img_size: usize,
    pub in_chans: usize,
    pub embed_dims: Vec<usize>,
    pub depths: Vec<usize>,
    pub num_heads: Vec<usize>,
    pub window_sizes: Vec<usize>,
    pub mlp_ratio: f64,
    pub mbconv_expand_ratio: f64,
    pub local_conv_size: usize,
    pub out_chans: usize,
    /// The convolutional stem; configurations written before LiteMedSAM read as MobileSAM's.
    #[serde(default)]
    pub stem: TinyVitStem,
}

/// TinyViT's `PatchEmbed`: two `Conv2d_BN` with a GELU between them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TinyVitStem {
    /// MobileSAM: 3×3 kernels, stride 2, padding 1 (the stem divides the side by 4).
    #[default]
    Strided3x3,
    /// LiteMedSAM: 1×1 kernels, stride 1 (full resolution; 256² in, 64×64 embedding out).
    Pointwise1x1,
}

impl TinyVitStem {
    /// (kernel, stride, padding) of both stem convolutions.
    pub fn conv(&self) -> (usize, usize, usize) {
        match self {
            TinyVitStem::Strided3x3 => (3, 2, 1),
            TinyVitStem::Pointwise1x1 => (1, 1, 0),
        }
    }
}

impl TinyVitConfig {
    /// Side of the token grid entering stage `i` (and of the embedding for `i = n`).
    pub fn stage_resolution(&self, i: usize) -> usize {
        let (k, s, p) = self.stem.conv();
        let conv = |r: usize, s: usize| (r + 2 * p - k) / s + 1;
        let mut r = conv(conv(self.img_size, s), s);
        for d in self
            .embed_dims
            .iter()
            .skip(1)
            .take(i.min(self.embed_dims.len() - 1))
        {
            // `PatchMerging`: a 3×3, padding 1 conv; stride 1 into these widths (official).
            if !matches!(d, 320 | 448 | 576) {
                r = (r + 2 - 3) / 2 + 1;
            }
        }
        r
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EncoderConfig {
    Vit(VitConfig),
    TinyVit(TinyVitConfig),
}

impl EncoderConfig {
    pub fn img_size(&self) -> usize {
        match self {
            EncoderConfig::Vit(c) => c.img_size,
            EncoderConfig::TinyVit(c) => c.img_size,
        }
    }
    pub fn out_chans(&self) -> usize {
        match self {
            EncoderConfig::Vit(c) => c.out_chans,
            EncoderConfig::TinyVit(c) => c.out_chans,
        }
    }
    /// Side of the square image-embedding grid (img_size / 16 for SAM and MobileSAM,
    /// img_size / 4 for LiteMedSAM).
    pub fn embedding_size(&self) -> usize {
        match self {
            EncoderConfig::Vit(c) => c.img_size / c.patch_size,
            EncoderConfig::TinyVit(c) => c.stage_resolution(c.embed_dims.len()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PromptEncoderConfig {
    pub embed_dim: usize,
    pub image_embedding_size: [usize; 2],
    pub input_image_size: [usize; 2],
    pub mask_in_chans: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TwoWayTransformerConfig {
    pub depth: usize,
    pub embedding_dim: usize,
    pub num_heads: usize,
    pub mlp_dim: usize,
    pub attention_downsample_rate: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MaskDecoderConfig {
    pub transformer_dim: usize,
    pub transformer: TwoWayTransformerConfig,
    pub num_multimask_outputs: usize,
    pub iou_head_depth: usize,
    pub iou_head_hidden_dim: usize,
}

/// Which family a checkpoint belongs to; used in model cards and the UI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelType {
    VitB,
    VitL,
    VitH,
    VitT,
    /// LiteMedSAM's TinyViT (1×1 stem, 256² input).
    LiteMedSam,
    /// Any other configuration (e.g. the tiny random-weight test models).
    Custom,
}

impl ModelType {
    pub fn name(&self) -> &'static str {
        match self {
            ModelType::VitB => "vit_b",
            ModelType::VitL => "vit_l",
            ModelType::VitH => "vit_h",
            ModelType::VitT => "vit_t (MobileSAM)",
            ModelType::LiteMedSam => "lite_medsam (LiteMedSAM)",
            ModelType::Custom => "custom",
        }
    }
}

/// The model family: which pre- and post-processing the weights were trained with. It travels
/// with the loaded model (in [`SamConfig`]), so a model is never fed another family's input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelFamily {
    /// SAM ViT-B/L/H: longest side to `img_size` (PIL bilinear), ImageNet mean/std, zero pad.
    #[default]
    Sam,
    /// MobileSAM: SAM's processing with a TinyViT encoder.
    MobileSam,
    /// LiteMedSAM: longest side to 256 (OpenCV `INTER_AREA`), min-max to [0, 1], zero pad;
    /// boxes scaled by 256 / max(H, W) and truncated to integers.
    LiteMedSam,
    /// MedSAM (SAM ViT-B weights): stretched to `img_size`² (scikit-image cubic resize with
    /// anti-aliasing), min-max to [0, 1]; masks are sigmoid → bilinear resize → > 0.5.
    MedSam,
}

impl ModelFamily {
    pub const ALL: [ModelFamily; 4] = [
        ModelFamily::Sam,
        ModelFamily::MobileSam,
        ModelFamily::LiteMedSam,
        ModelFamily::MedSam,
    ];
    /// The name used on the command line (`--family`) and in reports.
    pub fn name(&self) -> &'static str {
        match self {
            ModelFamily::Sam => "sam",
            ModelFamily::MobileSam => "mobilesam",
            ModelFamily::LiteMedSam => "litemedsam",
            ModelFamily::MedSam => "medsam",
        }
    }
    /// For people: the family and the input processing it selects.
    pub fn title(&self) -> &'static str {
        match self {
            ModelFamily::Sam => "SAM (ImageNet-normalised, longest side resized)",
            ModelFamily::MobileSam => "MobileSAM (ImageNet-normalised, longest side resized)",
            ModelFamily::LiteMedSam => "LiteMedSAM (256², min-max normalised)",
            ModelFamily::MedSam => "MedSAM (stretched square, min-max normalised)",
        }
    }
    /// Parses `--family` values (case-insensitive; `-`/`_` ignored).
    pub fn parse(s: &str) -> Option<ModelFamily> {
        let n: String = s
            .trim()
            .to_ascii_lowercase()
            .chars()
            .filter(|c| *c != '-' && *c != '_')
            .collect();
        Self::ALL.into_iter().find(|f| f.name() == n)
    }
    /// Min-max normalisation instead of ImageNet mean/std.
    pub fn is_medical(&self) -> bool {
        matches!(self, ModelFamily::LiteMedSam | ModelFamily::MedSam)
    }
}

impl std::fmt::Display for ModelFamily {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SamConfig {
    pub model_type: ModelType,
    /// Configurations written before families existed read as SAM; the loader always sets it.
    #[serde(default)]
    pub family: ModelFamily,
    pub encoder: EncoderConfig,
    pub prompt_encoder: PromptEncoderConfig,
    pub mask_decoder: MaskDecoderConfig,
    pub pixel_mean: [f32; 3],
    pub pixel_std: [f32; 3],
}

pub const PIXEL_MEAN: [f32; 3] = [123.675, 116.28, 103.53];
pub const PIXEL_STD: [f32; 3] = [58.395, 57.12, 57.375];

impl SamConfig {
    /// The SAM prompt encoder and mask decoder shared by all official models.
    fn with_encoder(model_type: ModelType, encoder: EncoderConfig) -> Self {
        let img = encoder.img_size();
        let emb = encoder.embedding_size();
        let family = match &encoder {
            EncoderConfig::Vit(_) => ModelFamily::Sam,
            EncoderConfig::TinyVit(c) if c.stem == TinyVitStem::Pointwise1x1 => {
                ModelFamily::LiteMedSam
            }
            EncoderConfig::TinyVit(_) => ModelFamily::MobileSam,
        };
        SamConfig {
            model_type,
            family,
            encoder,
            prompt_encoder: PromptEncoderConfig {
                embed_dim: 256,
                image_embedding_size: [emb, emb],
                input_image_size: [img, img],
                mask_in_chans: 16,
            },
            mask_decoder: MaskDecoderConfig {
                transformer_dim: 256,
                transformer: TwoWayTransformerConfig {
                    depth: 2,
                    embedding_dim: 256,
                    num_heads: 8,
                    mlp_dim: 2048,
                    attention_downsample_rate: 2,
                },
                num_multimask_outputs: 3,
                iou_head_depth: 3,
                iou_head_hidden_dim: 256,
            },
            pixel_mean: PIXEL_MEAN,
            pixel_std: PIXEL_STD,
        }
    }

    fn vit(
        model_type: ModelType,
        embed_dim: usize,
        depth: usize,
        num_heads: usize,
        global: [usize; 4],
    ) -> Self {
        Self::with_encoder(
            model_type,
            EncoderConfig::Vit(VitConfig {
                img_size: 1024,
                patch_size: 16,
                in_chans: 3,
                embed_dim,
                depth,
                num_heads,
                mlp_ratio: 4.0,
                out_chans: 256,
                qkv_bias: true,
                use_rel_pos: true,
                window_size: 14,
                global_attn_indexes: global.to_vec(),
            }),
        )
    }

    /// A small random-weight ViT at 128² (8×8 embedding) with the full-size decoder: enough to
    /// exercise every kernel family of inference in seconds (cold-start counting, tests).
    pub fn vit_tiny() -> Self {
        let mut c = Self::vit(ModelType::Custom, 64, 2, 2, [1, 1, 1, 1]);
        if let EncoderConfig::Vit(v) = &mut c.encoder {
            v.img_size = 128;
            v.window_size = 4;
            v.global_attn_indexes = vec![1];
        }
        Self::with_encoder(ModelType::Custom, c.encoder)
    }
    pub fn vit_b() -> Self {
        Self::vit(ModelType::VitB, 768, 12, 12, [2, 5, 8, 11])
    }
    pub fn vit_l() -> Self {
        Self::vit(ModelType::VitL, 1024, 24, 16, [5, 11, 17, 23])
    }
    pub fn vit_h() -> Self {
        Self::vit(ModelType::VitH, 1280, 32, 16, [7, 15, 23, 31])
    }
    /// MobileSAM (`build_sam_vit_t`).
    pub fn vit_t() -> Self {
        Self::with_encoder(
            ModelType::VitT,
            EncoderConfig::TinyVit(TinyVitConfig {
                img_size: 1024,
                in_chans: 3,
                embed_dims: vec![64, 128, 160, 320],
                depths: vec![2, 2, 6, 2],
                num_heads: vec![2, 4, 5, 10],
                window_sizes: vec![7, 7, 14, 7],
                mlp_ratio: 4.0,
                mbconv_expand_ratio: 4.0,
                local_conv_size: 3,
                out_chans: 256,
                stem: TinyVitStem::Strided3x3,
            }),
        )
    }
    /// LiteMedSAM (`CVPR24_LiteMedSAM_infer.py`): MobileSAM's TinyViT widths with a 1×1 stem
    /// at 256², so the embedding is 64×64 as in MobileSAM.
    pub fn lite_medsam() -> Self {
        let mut c = Self::vit_t();
        if let EncoderConfig::TinyVit(t) = &mut c.encoder {
            t.img_size = 256;
            t.stem = TinyVitStem::Pointwise1x1;
        }
        Self::with_encoder(ModelType::LiteMedSam, c.encoder)
    }

    pub fn img_size(&self) -> usize {
        self.encoder.img_size()
    }
}

impl SamConfig {
    /// Reads the configuration json written beside reference models by
    /// `tools/make_fixtures.py` (sections `image_encoder`, `prompt_encoder`, `mask_decoder`).
    pub fn from_reference_json(j: &serde_json::Value) -> Result<SamConfig, String> {
        fn u(v: &serde_json::Value, k: &str) -> Result<usize, String> {
            v.get(k)
                .and_then(|x| x.as_u64())
                .map(|x| x as usize)
                .ok_or_else(|| format!("missing integer '{k}'"))
        }
        fn f(v: &serde_json::Value, k: &str) -> Result<f64, String> {
            v.get(k)
                .and_then(|x| x.as_f64())
                .ok_or_else(|| format!("missing number '{k}'"))
        }
        fn uv(v: &serde_json::Value, k: &str) -> Result<Vec<usize>, String> {
            v.get(k)
                .and_then(|x| x.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_u64())
                        .map(|x| x as usize)
                        .collect()
                })
                .ok_or_else(|| format!("missing list '{k}'"))
        }
        fn f3(v: &serde_json::Value, k: &str, default: [f32; 3]) -> [f32; 3] {
            match v.get(k).and_then(|x| x.as_array()) {
                Some(a) if a.len() == 3 => {
                    [0, 1, 2].map(|i| a[i].as_f64().unwrap_or(default[i] as f64) as f32)
                }
                _ => default,
            }
        }
        let ie = &j["image_encoder"];
        let encoder = if ie.get("embed_dims").is_some() {
            EncoderConfig::TinyVit(TinyVitConfig {
                img_size: u(ie, "img_size")?,
                in_chans: u(ie, "in_chans").unwrap_or(3),
                embed_dims: uv(ie, "embed_dims")?,
                depths: uv(ie, "depths")?,
                num_heads: uv(ie, "num_heads")?,
                window_sizes: uv(ie, "window_sizes")?,
                mlp_ratio: f(ie, "mlp_ratio")?,
                mbconv_expand_ratio: f(ie, "mbconv_expand_ratio").unwrap_or(4.0),
                local_conv_size: u(ie, "local_conv_size").unwrap_or(3),
                out_chans: u(ie, "neck_out_chans").or_else(|_| u(ie, "out_chans"))?,
                stem: match ie.get("stem").and_then(|v| v.as_str()) {
                    Some("pointwise1x1") => TinyVitStem::Pointwise1x1,
                    _ => TinyVitStem::Strided3x3,
                },
            })
        } else {
            EncoderConfig::Vit(VitConfig {
                img_size: u(ie, "img_size")?,
                patch_size: u(ie, "patch_size")?,
                in_chans: u(ie, "in_chans").unwrap_or(3),
                embed_dim: u(ie, "embed_dim")?,
                depth: u(ie, "depth")?,
                num_heads: u(ie, "num_heads")?,
                mlp_ratio: f(ie, "mlp_ratio")?,
                out_chans: u(ie, "out_chans")?,
                qkv_bias: ie.get("qkv_bias").and_then(|v| v.as_bool()).unwrap_or(true),
                use_rel_pos: ie
                    .get("use_rel_pos")
                    .and_then(|v| v.as_bool())
                    .unwrap_or(true),
                window_size: u(ie, "window_size")?,
                global_attn_indexes: uv(ie, "global_attn_indexes")?,
            })
        };
        let pe = &j["prompt_encoder"];
        let md = &j["mask_decoder"];
        let tr = &md["transformer"];
        let two = |k: &str| -> Result<[usize; 2], String> {
            let v = uv(pe, k)?;
            v.try_into()
                .map_err(|_| format!("'{k}' must have 2 entries"))
        };
        let family = match (&encoder, j.get("family").and_then(|v| v.as_str())) {
            (_, Some(f)) => ModelFamily::parse(f).ok_or_else(|| format!("unknown family '{f}'"))?,
            (EncoderConfig::Vit(_), None) => ModelFamily::Sam,
            (EncoderConfig::TinyVit(c), None) if c.stem == TinyVitStem::Pointwise1x1 => {
                ModelFamily::LiteMedSam
            }
            (EncoderConfig::TinyVit(_), None) => ModelFamily::MobileSam,
        };
        Ok(SamConfig {
            model_type: ModelType::Custom,
            family,
            encoder,
            prompt_encoder: PromptEncoderConfig {
                embed_dim: u(pe, "embed_dim")?,
                image_embedding_size: two("image_embedding_size")?,
                input_image_size: two("input_image_size")?,
                mask_in_chans: u(pe, "mask_in_chans")?,
            },
            mask_decoder: MaskDecoderConfig {
                transformer_dim: u(md, "transformer_dim")?,
                transformer: TwoWayTransformerConfig {
                    depth: u(tr, "depth")?,
                    embedding_dim: u(tr, "embedding_dim")?,
                    num_heads: u(tr, "num_heads")?,
                    mlp_dim: u(tr, "mlp_dim")?,
                    attention_downsample_rate: u(tr, "attention_downsample_rate")?,
                },
                num_multimask_outputs: u(md, "num_multimask_outputs")?,
                iou_head_depth: u(md, "iou_head_depth")?,
                iou_head_hidden_dim: u(md, "iou_head_hidden_dim")?,
            },
            pixel_mean: f3(j, "pixel_mean", PIXEL_MEAN),
            pixel_std: f3(j, "pixel_std", PIXEL_STD),
        })
    }
}
