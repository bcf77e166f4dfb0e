//! `segadapt eval` (a data dir, box or point prompts) and `segadapt check-parity` (this port
//! against reference outputs of the official code).

use std::path::PathBuf;

use anyhow::{Context, Result};

use super::{bar, ensure_output_folder};
use crate::device::ComputeDevice;
use crate::eval::{EvalPrompt, evaluate, list_pairs};
use crate::fsutil::atomic_write;

#[derive(clap::Args)]
pub struct EvalArgs {
    #[arg(long)]
    pub model: PathBuf,
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// Model family: sam, mobilesam, litemedsam or medsam (default: detected from the
    /// checkpoint; MedSAM has SAM ViT-B's tensors, so say `medsam` unless the file is
    /// named medsam_vit_b.pth).
    #[arg(long, value_parser = super::parse_family)]
    pub family: Option<crate::sam::ModelFamily>,
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long, value_enum, default_value = "box")]
    pub prompt: EvalPrompt,
    /// Skip objects smaller than this many pixels.
    #[arg(long, default_value_t = 0)]
    pub min_area: usize,
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[command(flatten)]
    pub tiles: super::TileArgs,
}

#[derive(clap::Args)]
pub struct CheckParityArgs {
    #[arg(long)]
    pub model: PathBuf,
    /// Configuration json written with the reference (for non-official configs).
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[arg(long)]
    pub refs: PathBuf,
    #[arg(long, default_value_t = 1e-4)]
    pub tol: f32,
}

pub fn run(a: EvalArgs, dev: ComputeDevice) -> Result<()> {
    let EvalArgs {
        model,
        adapter,
        family,
        data,
        prompt,
        min_area,
        json,
        tiles,
    } = a;
    let tiles = tiles.config();
    tiles.validate()?;
    let pairs = list_pairs(&data)?;
    if let Some(j) = &json {
        ensure_output_folder(j)?;
    }
    eprintln!("device: {}", dev.description);
    let m = crate::engine::load_as(&model, adapter.as_deref(), None, family, dev)?;
    eprintln!("{}", super::describe_model(&m));
    let pb = bar(0, "eval");
    let report = evaluate(
        &m.predictor,
        &pairs,
        prompt,
        min_area,
        &tiles,
        |done, total| {
            pb.set_length(total as u64);
            pb.set_position(done as u64);
        },
    )?;
    pb.finish_and_clear();
    println!(
        "{:<30} {:>8} {:>9} {:>9}",
        "image", "objects", "mean IoU", "mean Dice"
    );
    for r in &report.per_image {
        let tiled = if r.tiles > 1 {
            format!("  ({} tiles)", r.tiles)
        } else {
            String::new()
        };
        println!(
            "{:<30} {:>8} {:>9.4} {:>9.4}{tiled}",
            r.image, r.n_objects, r.mean_iou, r.mean_dice
        );
    }
    println!(
        "{:<30} {:>8} {:>9.4} {:>9.4}",
        "ALL", report.n_objects, report.mean_iou, report.mean_dice
    );
    if let Some(j) = json {
        atomic_write(&j, serde_json::to_string_pretty(&report)?.as_bytes())
            .with_context(|| format!("cannot write {}", j.display()))?;
    }
    Ok(())
}

pub fn check_parity(a: CheckParityArgs, dev: ComputeDevice) -> Result<()> {
    let CheckParityArgs {
        model,
        config,
        refs,
        tol,
    } = a;
    let cfg = match config {
        Some(c) => {
            let j: serde_json::Value = serde_json::from_slice(
                &std::fs::read(&c).with_context(|| format!("cannot read {}", c.display()))?,
            )?;
            Some(crate::sam::SamConfig::from_reference_json(&j).map_err(anyhow::Error::msg)?)
        }
        None => None,
    };
    eprintln!("device: {}", dev.description);
    let (sam, _) = crate::sam::load_sam(&model, cfg, &dev.device)?;
    let refs = crate::parity::RefTensors::load(&refs)?;
    let t = std::time::Instant::now();
    let diffs = crate::parity::compare_all(&sam, &refs, &dev.device);
    let mut worst = 0f32;
    for d in &diffs {
        println!(
            "{:<28} max abs err {:.3e}  (max |ref| {:.3})",
            d.name, d.max_abs_err, d.max_abs_ref
        );
        worst = worst.max(d.max_abs_err);
    }
    println!(
        "worst {worst:.3e} (tolerance {tol:.0e}); {:.1} s",
        t.elapsed().as_secs_f64()
    );
    // NaN must fail the check too, hence the negated comparison.
    if worst.is_nan() || worst > tol {
        anyhow::bail!("parity check failed: max abs error {worst:.3e} > {tol:.0e}");
    }
    Ok(())
}
