//! Training: data, prompt sampling, losses, the stage-wise schedule and the trainer.

mod best;
pub mod config;
pub mod dataset;
pub mod events;
pub mod loss;
pub mod planner;
pub mod prompts;
pub mod report;
pub mod resume;
pub mod schedule;
mod selection;
pub mod step;
pub mod stepper;
pub mod tiles;
pub mod trainer;
mod validate;
pub mod validation;

pub use dataset::TrainData;
pub use events::{TrainEvent, TrainOutcome};
pub use resume::resume_dir;
pub use trainer::{TrainConfig, train};
