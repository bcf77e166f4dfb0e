//! `segadapt export`: fold an adapter into its base model; the work is in
//! `adapt::export::export`, this prints its report.

use std::path::PathBuf;

use anyhow::Result;

use crate::device::{self, ComputeDevice};

#[derive(clap::Args)]
pub struct ExportArgs {
    /// The base checkpoint the adapter was trained on.
    #[arg(long)]
    pub model: PathBuf,
    #[arg(long)]
    pub adapter: PathBuf,
    /// Output path of the merged model (must end in .safetensors).
    #[arg(long)]
    pub merged: PathBuf,
    /// Write the merged model even though spatial side branches remain; they are left out
    /// (listed in the report), so the file is NOT equivalent to the adapted model.
    #[arg(long)]
    pub drop_side_branches: bool,
    /// Encoder runs per model for the inference-cost measurement (0 skips it).
    #[arg(long, default_value_t = 3)]
    pub timing_runs: usize,
}

pub fn run(a: ExportArgs, dev: ComputeDevice) -> Result<()> {
    export_cmd(
        &a.model,
        &a.adapter,
        &a.merged,
        a.drop_side_branches,
        a.timing_runs,
        dev,
    )
}

/// `segadapt export`: the work is in `adapt::export::export`; this prints its report.
fn export_cmd(
    model: &std::path::Path,
    adapter: &std::path::Path,
    merged: &std::path::Path,
    drop_side_branches: bool,
    timing_runs: usize,
    dev: device::ComputeDevice,
) -> Result<()> {
    use crate::adapt::export::{EXPORT_KEY, export, report_path};
    let report = export(model, adapter, merged, drop_side_branches, timing_runs, dev)?;
    println!(
        "folded into the weights: {} projections",
        report.merge.folded.len()
    );
    for (name, op) in &report.merge.side_branches {
        println!("side branch (cannot fold): {name} ({op})");
    }
    if !report.merge.side_branches.is_empty() {
        println!(
            "side branches cost {} multiply-accumulates per token",
            report.merge.side_macs_per_token
        );
    }
    println!(
        "merged model: {} ({} tensors of the base checkpoint, {} changed, {} copied as stored)",
        merged.display(),
        report.file.tensors,
        report.file.changed.len(),
        report.file.copied_from_base.len()
    );
    if !report.file.side_branches_left_out.is_empty() {
        println!(
            "WARNING: {} side branches are NOT in the merged model (--drop-side-branches): {}",
            report.file.side_branches_left_out.len(),
            report.file.side_branches_left_out.join(", ")
        );
    }
    if let Some(line) = report.timing_line() {
        println!("{line}");
    }
    println!(
        "report: {} (also in the file's '{EXPORT_KEY}' metadata)",
        report_path(merged).display()
    );
    Ok(())
}
