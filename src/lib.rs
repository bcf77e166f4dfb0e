//! segadapt: adapt the Segment Anything Model to your image domain with NAS-LoRA.

pub mod adapt;
pub mod app;
pub mod bench;
pub mod cli;
pub mod device;
pub mod engine;
pub mod eval;
pub mod fsutil;
pub mod kernels;
pub mod metrics;
pub mod models;
pub mod nn;
pub mod parity;
pub mod predict;
pub mod project;
pub mod sam;
pub mod service;
pub mod train;
