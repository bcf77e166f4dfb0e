//! Pre/post-processing and the interactive predictor.

pub mod predictor;
pub mod transforms;

pub use predictor::{ImageEmbedding, Point, Prediction, Predictor, PromptInput};
