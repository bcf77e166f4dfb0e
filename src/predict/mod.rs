//! Pre/post-processing, the interactive predictor, and batch prediction over many images
//! (`batch`: one image's objects; `prompt_file`: prompts per image; `outputs`: the files;
//! `tiling`: large images by tiles, `tiled_everything`: segment everything on them; `run`: a
//! whole folder).

pub mod batch;
pub mod cv_resize;
pub mod outputs;
pub mod predictor;
pub mod prompt_file;
pub mod run;
pub mod sk_resize;
pub mod tiled_everything;
pub mod tiling;
pub mod transforms;

pub use predictor::{ImageEmbedding, Point, Prediction, Predictor, PromptInput};
