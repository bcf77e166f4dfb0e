//! The flags of `segadapt bench` and the sections they select.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::ColdCase;
use crate::adapt::Method;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Section {
    Encoder,
    Prompt,
    Train,
    Throughput,
    /// Single ops at the decoder's and encoders' shapes (GFLOP/s), to see where time goes.
    Ops,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Checkpointing {
    Off,
    On,
    Both,
}

#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Sections to run.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "encoder,prompt,train,throughput"
    )]
    pub sections: Vec<Section>,
    /// Encoders for the encoder-latency section: vit_t (MobileSAM), vit_b, vit_l, vit_h.
    #[arg(long, value_delimiter = ',', default_value = "vit_t,vit_b,vit_h")]
    pub models: Vec<String>,
    /// Model whose decoder answers the prompt section (the decoder is the same for all).
    #[arg(long, value_delimiter = ',', default_value = "vit_t")]
    pub prompt_models: Vec<String>,
    /// Models for the training-step section.
    #[arg(long, value_delimiter = ',', default_value = "vit_t,vit_b")]
    pub train_models: Vec<String>,
    /// Adapter methods for the training-step section.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "nas-lora,nas-pc-lora,lora,conv-lora"
    )]
    pub methods: Vec<Method>,
    /// Training steps: adapt only these encoder blocks (comma-separated indices; default all).
    /// The blocks before the first adapted one run once, outside autodiff, as in the trainer.
    #[arg(long, value_delimiter = ',')]
    pub blocks: Vec<usize>,
    /// Gradient checkpointing for the training steps (`both` runs each case twice).
    #[arg(long, value_enum, default_value = "off")]
    pub checkpointing: Checkpointing,
    /// Models for the batch-segmentation throughput section.
    #[arg(long, value_delimiter = ',', default_value = "vit_t")]
    pub throughput_models: Vec<String>,
    /// Warm calls per case (after the cold one), unless the time budget runs out first.
    #[arg(long, default_value_t = 5)]
    pub iters: usize,
    /// Warm calls of the prompt → mask case.
    #[arg(long, default_value_t = 30)]
    pub prompt_iters: usize,
    /// Time budget per case in seconds, counted after the warm-up calls; at least one warm call
    /// always runs.
    #[arg(long, default_value_t = 60.0)]
    pub budget_s: f64,
    /// Calls after the cold one that are still warm-up and left out of the warm median
    /// (default: 3 on a GPU, where the 2nd and 3rd calls still compile and autotune kernels
    /// for shapes the first did not reach, e.g. the optimiser's state; 0 on the CPU).
    #[arg(long)]
    pub warmup: Option<usize>,
    /// Side of the square test image of the prompt and throughput sections.
    #[arg(long, default_value_t = 512)]
    pub image_size: usize,
    /// Box prompts (objects) per training step.
    #[arg(long, default_value_t = 4)]
    pub objects: usize,
    /// Images of the throughput section.
    #[arg(long, default_value_t = 8)]
    pub images: usize,
    /// Write the report (ours, and PyTorch's with ratios when run) as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Also run the official PyTorch code on the same cases (tools/bench_pytorch.py) and
    /// print ratios ours/PyTorch.
    #[arg(long)]
    pub pytorch: bool,
    /// Python interpreter for --pytorch.
    #[arg(long, default_value = "python3")]
    pub python: String,
    /// Path of bench_pytorch.py (default: tools/bench_pytorch.py next to the working
    /// directory or the executable, or $SEGADAPT_BENCH_PYTORCH).
    #[arg(long)]
    pub pytorch_script: Option<PathBuf>,
    /// Device for the PyTorch side: cpu, cuda (default: cuda when ours runs on a GPU).
    #[arg(long)]
    pub pytorch_device: Option<String>,
    /// Read PyTorch results from this JSON instead of running the script.
    #[arg(long)]
    pub pytorch_json: Option<PathBuf>,
    /// Where the cold start goes instead of the usual cases: each listed first call (default
    /// mask,train) in a fresh process, on an empty kernel cache and again on the cache it left,
    /// with the kernels compiled and the autotune candidates run (`--json` writes the table).
    #[arg(long, value_enum, value_delimiter = ',', num_args = 0.., default_missing_value = "mask,train")]
    pub cold: Option<Vec<ColdCase>>,
    /// Ops section: only the ops whose name contains this (e.g. "matmul 4096x256x128").
    #[arg(long)]
    pub ops_filter: Option<String>,
    /// Working folder of `--cold` (logs and kernel caches; default: a temporary folder).
    #[arg(long)]
    pub cold_dir: Option<PathBuf>,
}
