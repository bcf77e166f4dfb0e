//! `cargo bench --bench segadapt_bench -- [BENCH ARGS]`: the same benchmark as
//! `segadapt bench` (src/bench.rs), as a standalone binary for CI boxes and device machines.

use clap::Parser;
use segadapt::bench::{BenchArgs, run};
use segadapt::device::{DeviceChoice, select};

#[derive(Parser)]
#[command(
    name = "segadapt_bench",
    about = "Benchmark segadapt (and optionally the official PyTorch code)"
)]
struct Cli {
    /// Compute device: a GPU when one exists (default), or force cpu / gpu.
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceChoice,
    #[command(flatten)]
    bench: BenchArgs,
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` appends `--bench`; it means nothing here.
    let cli = Cli::parse_from(std::env::args().filter(|a| a != "--bench"));
    let dev = select(cli.device).map_err(anyhow::Error::msg)?;
    run(cli.bench, dev)
}
