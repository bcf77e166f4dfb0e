//! `segadapt`: parses the command line, dispatches to `segadapt::cli` (one module per
//! subcommand family) and turns the result into the exit code. Without a subcommand it
//! starts the desktop app.

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use segadapt::cli;
use segadapt::device::{self, DeviceChoice};

#[derive(Parser)]
#[command(
    name = "segadapt",
    version,
    about = "Adapt Segment Anything to your images with NAS-LoRA"
)]
struct Cli {
    /// Compute device: a GPU when one exists (default), or force cpu / gpu.
    #[arg(long, global = true, value_enum, default_value = "auto")]
    device: DeviceChoice,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Segment one object in one image from a box and/or points.
    Segment(cli::segment::SegmentArgs),
    /// Segment everything: every object in one image from a grid of point prompts (the
    /// official SamAutomaticMaskGenerator), written as a label PNG, object PNGs or COCO JSON.
    Everything(cli::everything::EverythingArgs),
    /// Segment every image of a folder (or a project) from a prompt file (CSV or COCO JSON),
    /// or with segment everything: label images (PNG/TIFF), object PNGs and one COCO file.
    /// Resumable: images whose outputs exist are skipped (--overwrite redoes them).
    Predict(cli::predict::PredictArgs),
    /// Evaluate on a data dir (images/ + masks/ label images) with box or point prompts.
    Eval(cli::eval::EvalArgs),
    /// Fine-tune an adapter on a data dir (images/ + masks/ label images).
    Train(cli::train::TrainArgs),
    /// Compare this port with reference outputs of the official code (tools/make_fixtures.py).
    CheckParity(cli::eval::CheckParityArgs),
    /// Benchmarks: encoder, prompt→mask, training step, throughput (optionally vs PyTorch).
    Bench(segadapt::bench::BenchArgs),
    /// Manage the official checkpoints in the per-user model folder.
    Models {
        #[command(subcommand)]
        action: cli::models::ModelsAction,
    },
    /// Fold an adapter into its base model and write the merged model for the official code.
    ///
    /// The merged file (safetensors) holds every tensor of the base checkpoint under its
    /// official name and dtype, with the folded weights (and a trained mask decoder) replaced:
    /// the official SamPredictor loads it with `load_state_dict(sd, strict=True)`. A JSON
    /// report goes beside it (<merged>.json); the adapter file stays the small form of the model.
    /// Spatial NAS cells (conv / pool ops) cannot fold and have no place in the official model:
    /// export refuses them unless --drop-side-branches is given.
    Export(cli::export::ExportArgs),
}

fn run(cli: Cli) -> Result<()> {
    let Some(command) = cli.command else {
        // No subcommand: the desktop app.
        return segadapt::app::run(segadapt::service::device::select(cli.device)?);
    };
    if let Command::Models { action } = &command {
        return cli::models::run(action);
    }
    let dev = device::select(cli.device).map_err(anyhow::Error::msg)?;
    match command {
        Command::Models { .. } => unreachable!("handled above"),
        Command::Bench(args) => segadapt::bench::run(args, dev)?,
        Command::Segment(a) => cli::segment::run(a, dev)?,
        Command::Everything(a) => cli::everything::run(a, dev)?,
        Command::Predict(a) => cli::predict::run(a, dev)?,
        Command::Eval(a) => cli::eval::run(a, dev)?,
        Command::Train(a) => cli::train::run(a, dev)?,
        Command::CheckParity(a) => cli::eval::check_parity(a, dev)?,
        Command::Export(a) => cli::export::run(a, dev)?,
    }
    Ok(())
}

/// Log records go to stderr only when `RUST_LOG` asks for them (e.g. `RUST_LOG=segadapt=info`
/// prints the app's embedding and click-to-mask times), so default output stays the program's.
fn init_logging() {
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init();
    }
}

fn main() -> ExitCode {
    init_logging();
    device::keep_shader_cache();
    device::tune_allocator();
    segadapt::kernels::configure_from_env();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
