//! Loads the official checkpoints (`sam_vit_{b,l,h}_*.pth`, `mobile_sam.pt`, `lite_medsam.pth`,
//! MedSAM's `medsam_vit_b.pth`) as they are, by their own key names, and detects the model type
//! and family from the tensor shapes (MedSAM has SAM ViT-B's shapes: it is named, not detected).

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::store::pytorch_reader::PytorchReader;
use burn::store::{ModuleSnapshot, PytorchStore};
use sha2::{Digest, Sha256};

use super::config::{
    EncoderConfig, MaskDecoderConfig, ModelFamily, ModelType, PIXEL_MEAN, PIXEL_STD,
    PromptEncoderConfig, SamConfig, TinyVitConfig, TinyVitStem, TwoWayTransformerConfig, VitConfig,
};
use super::sam::Sam;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint {path}: file not found")]
    NotFound { path: PathBuf },
    #[error("checkpoint {path}: cannot read file: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "checkpoint {path}: not a readable PyTorch checkpoint ({reason}). Expected an official SAM \
         .pth file or MobileSAM's mobile_sam.pt; the file may be truncated or of another format"
    )]
    NotPytorch { path: PathBuf, reason: String },
    #[error(
        "checkpoint {path}: not a SAM checkpoint: matches no supported model family (SAM \
         ViT-B/L/H, MobileSAM, LiteMedSAM, MedSAM): {reason}"
    )]
    NotSam { path: PathBuf, reason: String },
    #[error("checkpoint {path}: {reason}")]
    WrongFamily { path: PathBuf, reason: String },
    #[error("checkpoint {path}: tensors do not fit the {model} model: {reason}")]
    Mismatch {
        path: PathBuf,
        model: String,
        reason: String,
    },
}

/// What was loaded, for model cards, caches and the UI.
#[derive(Clone, Debug)]
pub struct CheckpointInfo {
    pub path: PathBuf,
    pub sha256: String,
    pub config: SamConfig,
    pub num_tensors: usize,
}

type Shapes = HashMap<String, Vec<usize>>;

/// sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("{:x}", h.finalize()))
}

/// Opens a `.pth` for reading. The reader parses untrusted pickle data; a malformed file must
/// give an error, never take the app down.
fn open_reader(path: &Path) -> Result<PytorchReader, CheckpointError> {
    let p = path.to_path_buf();
    std::panic::catch_unwind(move || PytorchReader::new(&p))
        .map_err(|_| CheckpointError::NotPytorch {
            path: path.into(),
            reason: "the reader failed on malformed data".into(),
        })?
        .map_err(|e| CheckpointError::NotPytorch {
            path: path.into(),
            reason: e.to_string(),
        })
}

/// Reads tensor names and shapes without loading any data.
fn read_shapes(path: &Path) -> Result<Shapes, CheckpointError> {
    if !path.exists() {
        return Err(CheckpointError::NotFound { path: path.into() });
    }
    std::fs::File::open(path).map_err(|source| CheckpointError::Io {
        path: path.into(),
        source,
    })?;
    let reader = open_reader(path)?;
    Ok(reader
        .tensors()
        .iter()
        .map(|(k, t)| (k.clone(), t.shape().to_vec()))
        .collect())
}

/// Key prefix in front of `image_encoder.` etc. (e.g. `model.` in wrapped checkpoints).
fn find_prefix(shapes: &Shapes) -> Option<String> {
    shapes.keys().find_map(|k| {
        k.strip_suffix("mask_decoder.iou_token.weight")
            .map(str::to_string)
    })
}

fn count_indexed(shapes: &Shapes, prefix: &str) -> usize {
    (0..)
        .take_while(|i| {
            shapes
                .keys()
                .any(|k| k.starts_with(&format!("{prefix}{i}.")))
        })
        .count()
}

/// Derives the model configuration from tensor shapes (keys without prefix).
pub fn detect_config(shapes: &Shapes) -> Result<SamConfig, String> {
    let get = |k: &str| shapes.get(k).ok_or_else(|| format!("missing tensor '{k}'"));
    let iou = get("mask_decoder.iou_token.weight")?;
    let d = iou[1];
    let no_mask = get("prompt_encoder.no_mask_embed.weight")?;
    let md = get("prompt_encoder.mask_downscaling.3.weight")?;
    let tokens = get("mask_decoder.mask_tokens.weight")?[0];
    let t_depth = count_indexed(shapes, "mask_decoder.transformer.layers.");
    let mlp_dim = get("mask_decoder.transformer.layers.0.mlp.lin1.weight")?[0];
    let cross_q =
        get("mask_decoder.transformer.layers.0.cross_attn_token_to_image.q_proj.weight")?[0];
    let iou_depth = count_indexed(shapes, "mask_decoder.iou_prediction_head.layers.");
    let iou_hidden = get("mask_decoder.iou_prediction_head.layers.0.weight")?[0];

    let (model_type, encoder) = if shapes.contains_key("image_encoder.patch_embed.proj.weight") {
        let pe = get("image_encoder.patch_embed.proj.weight")?;
        let (embed_dim, in_chans, patch) = (pe[0], pe[1], pe[2]);
        let pos = get("image_encoder.pos_embed")?;
        let grid = pos[1];
        let depth = count_indexed(shapes, "image_encoder.blocks.");
        let rel0 = get("image_encoder.blocks.0.attn.rel_pos_h")?;
        let head_dim = rel0[1];
        let mut window_size = 0;
        let mut global = Vec::new();
        for i in 0..depth {
            let r = get(&format!("image_encoder.blocks.{i}.attn.rel_pos_h"))?[0];
            if r == 2 * grid - 1 {
                global.push(i);
            } else {
                window_size = r.div_ceil(2);
            }
        }
        let mlp = get("image_encoder.blocks.0.mlp.lin1.weight")?[0];
        let cfg = VitConfig {
            img_size: grid * patch,
            patch_size: patch,
            in_chans,
            embed_dim,
            depth,
            num_heads: embed_dim / head_dim,
            mlp_ratio: mlp as f64 / embed_dim as f64,
            out_chans: get("image_encoder.neck.0.weight")?[0],
            qkv_bias: shapes.contains_key("image_encoder.blocks.0.attn.qkv.bias"),
            use_rel_pos: true,
            window_size,
            global_attn_indexes: global,
        };
        let mt = match (embed_dim, depth, grid * patch) {
            (768, 12, 1024) => ModelType::VitB,
            (1024, 24, 1024) => ModelType::VitL,
            (1280, 32, 1024) => ModelType::VitH,
            _ => ModelType::Custom,
        };
        (mt, EncoderConfig::Vit(cfg))
    } else if shapes.contains_key("image_encoder.patch_embed.seq.0.c.weight") {
        let n = count_indexed(shapes, "image_encoder.layers.");
        let mut dims = Vec::new();
        let mut depths = Vec::new();
        let mut heads = Vec::new();
        let mut windows = Vec::new();
        for i in 0..n {
            let p = format!("image_encoder.layers.{i}.blocks.");
            depths.push(count_indexed(shapes, &p));
            if i == 0 {
                dims.push(get(&format!("{p}0.conv1.c.weight"))?[1]);
                heads.push(1);
                windows.push(7);
            } else {
                let ab = get(&format!("{p}0.attn.attention_biases"))?;
                dims.push(get(&format!("{p}0.attn.qkv.weight"))?[1]);
                heads.push(ab[0]);
                windows.push((ab[1] as f64).sqrt().round() as usize);
            }
        }
        let stem_w = get("image_encoder.patch_embed.seq.0.c.weight")?;
        // The stem kernel tells MobileSAM (3×3, stride 2) from LiteMedSAM (1×1, stride 1).
        let (stem, img_size) = match stem_w[2] {
            3 => (TinyVitStem::Strided3x3, 1024),
            1 => (TinyVitStem::Pointwise1x1, 256),
            k => {
                return Err(format!(
                    "TinyViT stem kernel {k}×{k} is neither MobileSAM's 3×3 nor LiteMedSAM's 1×1"
                ));
            }
        };
        let hidden0 = get("image_encoder.layers.0.blocks.0.conv1.c.weight")?[0];
        let mlp = get("image_encoder.layers.1.blocks.0.mlp.fc1.weight")?[0];
        let ks = get("image_encoder.layers.1.blocks.0.local_conv.c.weight")?[2];
        let cfg = TinyVitConfig {
            // Not recorded in the weights: the official input size of the family.
            img_size,
            in_chans: stem_w[1],
            mbconv_expand_ratio: hidden0 as f64 / dims[0] as f64,
            mlp_ratio: mlp as f64 / dims[1] as f64,
            embed_dims: dims,
            depths,
            num_heads: heads,
            window_sizes: windows,
            local_conv_size: ks,
            out_chans: get("image_encoder.neck.0.weight")?[0],
            stem,
        };
        let mt = match (cfg.embed_dims == [64, 128, 160, 320], stem) {
            (true, TinyVitStem::Strided3x3) => ModelType::VitT,
            (true, TinyVitStem::Pointwise1x1) => ModelType::LiteMedSam,
            _ => ModelType::Custom,
        };
        (mt, EncoderConfig::TinyVit(cfg))
    } else {
        return Err("no ViT or TinyViT image encoder tensors (image_encoder.patch_embed.*)".into());
    };
    let img = encoder.img_size();
    let emb = encoder.embedding_size();
    let family = match &encoder {
        EncoderConfig::Vit(_) => ModelFamily::Sam,
        EncoderConfig::TinyVit(c) if c.stem == TinyVitStem::Pointwise1x1 => ModelFamily::LiteMedSam,
        EncoderConfig::TinyVit(_) => ModelFamily::MobileSam,
    };
    Ok(SamConfig {
        model_type,
        family,
        encoder,
        prompt_encoder: PromptEncoderConfig {
            embed_dim: no_mask[1],
            image_embedding_size: [emb, emb],
            input_image_size: [img, img],
            mask_in_chans: md[0],
        },
        mask_decoder: MaskDecoderConfig {
            transformer_dim: d,
            transformer: TwoWayTransformerConfig {
                depth: t_depth,
                embedding_dim: d,
                // Not recorded in the weights; every official model uses 8 heads.
                num_heads: 8,
                mlp_dim,
                attention_downsample_rate: d / cross_q,
            },
            num_multimask_outputs: tokens - 1,
            iou_head_depth: iou_depth,
            iou_head_hidden_dim: iou_hidden,
        },
        pixel_mean: PIXEL_MEAN,
        pixel_std: PIXEL_STD,
    })
}

/// Keys the official checkpoints carry that the SAM forward pass never uses.
fn is_unused_extra(key: &str) -> bool {
    key.ends_with("num_batches_tracked")
        || key.ends_with("attention_bias_idxs")
        || key.starts_with("image_encoder.norm_head.")
        || key.starts_with("image_encoder.head.")
}

/// Maps official key names onto this port's field names (numeric `nn.Sequential` slots).
fn store_for(path: &Path, prefix: &str) -> PytorchStore {
    let mut store = PytorchStore::from_file(path)
        .map_indices_contiguous(false)
        .allow_partial(true)
        .validate(true);
    if !prefix.is_empty() {
        store = store.with_key_remapping(format!("^{}", regex_escape(prefix)), "");
    }
    let rules = [
        (r"^image_encoder\.neck\.0\.", "image_encoder.neck.conv1."),
        (r"^image_encoder\.neck\.1\.", "image_encoder.neck.ln1."),
        (r"^image_encoder\.neck\.2\.", "image_encoder.neck.conv2."),
        (r"^image_encoder\.neck\.3\.", "image_encoder.neck.ln2."),
        (
            r"^image_encoder\.patch_embed\.seq\.0\.",
            "image_encoder.patch_embed.seq0.",
        ),
        (
            r"^image_encoder\.patch_embed\.seq\.2\.",
            "image_encoder.patch_embed.seq2.",
        ),
        (
            r"^prompt_encoder\.mask_downscaling\.0\.",
            "prompt_encoder.mask_downscaling.conv0.",
        ),
        (
            r"^prompt_encoder\.mask_downscaling\.1\.",
            "prompt_encoder.mask_downscaling.ln1.",
        ),
        (
            r"^prompt_encoder\.mask_downscaling\.3\.",
            "prompt_encoder.mask_downscaling.conv3.",
        ),
        (
            r"^prompt_encoder\.mask_downscaling\.4\.",
            "prompt_encoder.mask_downscaling.ln4.",
        ),
        (
            r"^prompt_encoder\.mask_downscaling\.6\.",
            "prompt_encoder.mask_downscaling.conv6.",
        ),
        (
            r"^mask_decoder\.output_upscaling\.0\.",
            "mask_decoder.output_upscaling.conv0.",
        ),
        (
            r"^mask_decoder\.output_upscaling\.1\.",
            "mask_decoder.output_upscaling.ln1.",
        ),
        (
            r"^mask_decoder\.output_upscaling\.3\.",
            "mask_decoder.output_upscaling.conv3.",
        ),
    ];
    for (from, to) in rules {
        store = store.with_key_remapping(from, to);
    }
    store
}

/// The inverse of [`store_for`]'s renaming: this port's parameter path -> official key.
pub fn official_key(path: &str) -> String {
    let rules = [
        ("image_encoder.neck.conv1.", "image_encoder.neck.0."),
        ("image_encoder.neck.ln1.", "image_encoder.neck.1."),
        ("image_encoder.neck.conv2.", "image_encoder.neck.2."),
        ("image_encoder.neck.ln2.", "image_encoder.neck.3."),
        (
            "image_encoder.patch_embed.seq0.",
            "image_encoder.patch_embed.seq.0.",
        ),
        (
            "image_encoder.patch_embed.seq2.",
            "image_encoder.patch_embed.seq.2.",
        ),
        (
            "prompt_encoder.mask_downscaling.conv0.",
            "prompt_encoder.mask_downscaling.0.",
        ),
        (
            "prompt_encoder.mask_downscaling.ln1.",
            "prompt_encoder.mask_downscaling.1.",
        ),
        (
            "prompt_encoder.mask_downscaling.conv3.",
            "prompt_encoder.mask_downscaling.3.",
        ),
        (
            "prompt_encoder.mask_downscaling.ln4.",
            "prompt_encoder.mask_downscaling.4.",
        ),
        (
            "prompt_encoder.mask_downscaling.conv6.",
            "prompt_encoder.mask_downscaling.6.",
        ),
        (
            "mask_decoder.output_upscaling.conv0.",
            "mask_decoder.output_upscaling.0.",
        ),
        (
            "mask_decoder.output_upscaling.ln1.",
            "mask_decoder.output_upscaling.1.",
        ),
        (
            "mask_decoder.output_upscaling.conv3.",
            "mask_decoder.output_upscaling.3.",
        ),
    ];
    for (ours, theirs) in rules {
        if let Some(rest) = path.strip_prefix(ours) {
            return format!("{theirs}{rest}");
        }
    }
    path.to_string()
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                vec![c]
            } else {
                vec!['\\', c]
            }
        })
        .collect()
}

/// The official MedSAM release's file name: a SAM ViT-B by its shapes, so the name is what
/// says it needs MedSAM's processing.
pub const MEDSAM_FILE_NAME: &str = "medsam_vit_b.pth";

/// The family a checkpoint is run as: `requested` (`--family`), else MedSAM for the official
/// MedSAM file name, else what the shapes say. Asking a TinyViT file to be a ViT family (or
/// the reverse) is refused: the weights would get input they were never trained on.
pub fn resolve_family(
    path: &Path,
    detected: &SamConfig,
    requested: Option<ModelFamily>,
) -> Result<ModelFamily, CheckpointError> {
    let vit = matches!(detected.encoder, EncoderConfig::Vit(_));
    let by_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.eq_ignore_ascii_case(MEDSAM_FILE_NAME));
    let want = match requested {
        Some(f) => f,
        None if by_name && vit => ModelFamily::MedSam,
        None => return Ok(detected.family),
    };
    let fits = match want {
        ModelFamily::Sam | ModelFamily::MedSam => vit,
        other => other == detected.family,
    };
    if fits {
        Ok(want)
    } else {
        Err(CheckpointError::WrongFamily {
            path: path.into(),
            reason: format!(
                "the file is a {} checkpoint by its tensors; it cannot be run as {}",
                detected.family.name(),
                want.name()
            ),
        })
    }
}

/// Loads a SAM checkpoint. `config` overrides detection (needed for non-official models whose
/// head counts are not recorded in the weights).
pub fn load_sam(
    path: &Path,
    config: Option<SamConfig>,
    device: &Device,
) -> Result<(Sam, CheckpointInfo), CheckpointError> {
    load_sam_as(path, config, None, device)
}

/// [`load_sam`] with the family given (`--family`); `None` detects it (see [`resolve_family`]).
pub fn load_sam_as(
    path: &Path,
    config: Option<SamConfig>,
    family: Option<ModelFamily>,
    device: &Device,
) -> Result<(Sam, CheckpointInfo), CheckpointError> {
    let shapes = read_shapes(path)?;
    let prefix = find_prefix(&shapes).ok_or_else(|| CheckpointError::NotSam {
        path: path.into(),
        reason: format!(
            "no 'mask_decoder.iou_token.weight' among its {} tensors (first keys: {})",
            shapes.len(),
            shapes
                .keys()
                .take(3)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ),
    })?;
    let stripped: Shapes = shapes
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix(prefix.as_str())
                .map(|k| (k.to_string(), v.clone()))
        })
        .collect();
    let mut config = match config {
        Some(c) => c,
        None => detect_config(&stripped).map_err(|reason| CheckpointError::NotSam {
            path: path.into(),
            reason,
        })?,
    };
    config.family = resolve_family(path, &config, family)?;
    let mismatch = |reason: String| CheckpointError::Mismatch {
        path: path.into(),
        model: config.model_type.name().to_string(),
        reason,
    };
    let mut model = Sam::new(&config, device);
    let mut store = store_for(path, &prefix);
    let result = model
        .load_from(&mut store)
        .map_err(|e| mismatch(e.to_string()))?;
    if !result.errors.is_empty() {
        let msgs: Vec<String> = result
            .errors
            .iter()
            .take(5)
            .map(|e| e.to_string())
            .collect();
        return Err(mismatch(msgs.join("; ")));
    }
    if !result.missing.is_empty() {
        let miss: Vec<String> = result
            .missing
            .iter()
            .take(8)
            .map(|m| format!("{m:?}"))
            .collect();
        return Err(mismatch(format!(
            "{} tensors missing, e.g. {}",
            result.missing.len(),
            miss.join(", ")
        )));
    }
    let unused: Vec<&String> = result
        .unused
        .iter()
        .filter(|k| !is_unused_extra(k))
        .collect();
    if !unused.is_empty() {
        let u: Vec<String> = unused.iter().take(8).map(|s| s.to_string()).collect();
        return Err(mismatch(format!(
            "{} unexpected tensors, e.g. {}",
            unused.len(),
            u.join(", ")
        )));
    }
    let sha256 = sha256_file(path).map_err(|source| CheckpointError::Io {
        path: path.into(),
        source,
    })?;
    let info = CheckpointInfo {
        path: path.into(),
        sha256,
        config,
        num_tensors: shapes.len(),
    };
    Ok((model, info))
}

/// One tensor of a checkpoint exactly as stored: key, element type, shape and raw bytes
/// (row-major, little-endian), for writers that must reproduce the file's own tensors.
#[derive(Clone, Debug)]
pub struct RawTensor {
    pub key: String,
    pub dtype: burn::store::pytorch_reader::DType,
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
}

/// Every tensor of a checkpoint under its own key (prefix included), sorted by key.
pub fn read_raw_tensors(path: &Path) -> Result<Vec<RawTensor>, CheckpointError> {
    if !path.exists() {
        return Err(CheckpointError::NotFound { path: path.into() });
    }
    let reader = open_reader(path)?;
    let mut out = Vec::with_capacity(reader.len());
    for (key, t) in reader.tensors() {
        let bytes = t.read().map_err(|e| CheckpointError::NotPytorch {
            path: path.into(),
            reason: e.to_string(),
        })?;
        out.push(RawTensor {
            key: key.clone(),
            dtype: t.dtype(),
            shape: t.shape().to_vec(),
            bytes,
        });
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}
