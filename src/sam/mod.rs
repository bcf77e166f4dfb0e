//! Segment Anything in Burn, file by file after `segment_anything/modeling`.

pub mod amg;
pub mod automatic_mask_generator;
pub mod checkpoint;
pub mod common;
pub mod config;
pub mod image_encoder;
pub mod mask_decoder;
pub mod prompt_encoder;
// Named after the official `modeling/sam.py`, which this module mirrors.
#[allow(clippy::module_inception)]
pub mod sam;
pub mod tiny_vit;
pub mod transformer;

pub use checkpoint::{CheckpointError, CheckpointInfo, load_sam, load_sam_as};
pub use config::{ModelFamily, ModelType, SamConfig};
pub use prompt_encoder::Prompts;
pub use sam::{DecoderOutput, Sam};
