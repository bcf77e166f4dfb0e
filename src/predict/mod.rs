//! Pre/post-processing and the interactive predictor.

pub mod cv_resize;
pub mod predictor;
pub mod sk_resize;
pub mod transforms;

pub use predictor::{ImageEmbedding, Point, Prediction, Predictor, PromptInput};
