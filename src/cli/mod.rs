//! The command line: one file per subcommand family, each with its flags (clap `Args`) and
//! its handler; `main.rs` only parses, dispatches and sets the exit code. This file holds
//! what they share: prompt parsing, the output-folder check, progress bars and Ctrl-C.
//!
//! * `segment`: `segadapt segment` (one object from a box and/or points).
//! * `everything`: `segadapt everything` (segment everything in one image).
//! * `predict`: `segadapt predict` (a folder of images, from a prompt file or everything).
//! * `eval`: `segadapt eval` and `segadapt check-parity`.
//! * `train`: `segadapt train` (flags → `TrainConfig`, the run and its report).
//! * `export`: `segadapt export` (fold an adapter into its base model).
//! * `models`: `segadapt models list | download | dir`.
//!
//! `segadapt bench` lives in [`crate::bench`].

use std::path::Path;

use anyhow::{Result, bail};
use indicatif::{ProgressBar, ProgressStyle};

use crate::predict::Point;

pub mod eval;
pub mod everything;
pub mod export;
pub mod models;
pub mod predict;
pub mod segment;
pub mod train;

/// `--tile`, `--halo`, `--tile-above`: large images by tiles (`segment`, `predict`, `train`).
#[derive(clap::Args, Clone, Copy, Debug)]
pub struct TileArgs {
    /// Core size of a tile (px) on images larger than --tile-above.
    #[arg(long, default_value_t = 1024)]
    pub tile: usize,
    /// Context around each tile (px), shared with its neighbours; clamped at the border.
    #[arg(long, default_value_t = 256)]
    pub halo: usize,
    /// Tile images whose longer side exceeds this (px); 0: never (squeeze every image whole
    /// into the model input).
    #[arg(long, default_value_t = 2048)]
    pub tile_above: usize,
}

impl TileArgs {
    pub fn config(&self) -> crate::predict::tiling::TileConfig {
        crate::predict::tiling::TileConfig {
            tile: self.tile,
            halo: self.halo,
            tile_above: self.tile_above,
        }
    }
}

/// `--family`: sam, mobilesam, litemedsam or medsam.
pub fn parse_family(s: &str) -> Result<crate::sam::ModelFamily, String> {
    crate::sam::ModelFamily::parse(s)
        .ok_or_else(|| format!("unknown model family '{s}' (sam, mobilesam, litemedsam, medsam)"))
}

/// The line the CLI prints about a loaded model: file, family and its processing.
pub fn describe_model(m: &crate::engine::LoadedModel) -> String {
    let f = m.family();
    format!(
        "model: {} ({}), family {} — {}",
        m.info.path.display(),
        m.info.config.model_type.name(),
        f.name(),
        f.title()
    )
}

/// `x0,y0,x1,y1`
pub fn parse_box(s: &str) -> Result<[f64; 4]> {
    let v = parse_numbers(s, "--box")?;
    if v.len() != 4 {
        bail!("--box expects x0,y0,x1,y1 (4 numbers), got '{s}'");
    }
    if v[2] < v[0] || v[3] < v[1] {
        bail!("--box '{s}': x1 must be ≥ x0 and y1 ≥ y0");
    }
    Ok([v[0], v[1], v[2], v[3]])
}

/// `x,y` or `x,y,label` with label 1 (foreground, default) or 0 (background).
pub fn parse_point(s: &str) -> Result<Point> {
    let v = parse_numbers(s, "--point")?;
    let positive = match v.len() {
        2 => true,
        3 if v[2] == 1.0 => true,
        3 if v[2] == 0.0 => false,
        3 => bail!("--point '{s}': label must be 1 (foreground) or 0 (background)"),
        _ => bail!("--point expects x,y or x,y,label, got '{s}'"),
    };
    Ok(Point {
        x: v[0],
        y: v[1],
        positive,
    })
}

fn parse_numbers(s: &str, what: &str) -> Result<Vec<f64>> {
    s.split(',')
        .map(|p| {
            let v: f64 = p
                .trim()
                .parse()
                .map_err(|_| anyhow::anyhow!("{what} '{s}': '{p}' is not a number"))?;
            if !v.is_finite() {
                bail!("{what} '{s}': '{p}' is not a finite number");
            }
            Ok(v)
        })
        .collect()
}

/// Refuses prompts that lie outside the image.
pub fn check_inside(points: &[Point], bbox: Option<[f64; 4]>, w: usize, h: usize) -> Result<()> {
    let inside =
        |x: f64, y: f64| x >= 0.0 && y >= 0.0 && x <= (w as f64 - 1.0) && y <= (h as f64 - 1.0);
    for p in points {
        if !inside(p.x, p.y) {
            bail!("point ({}, {}) lies outside the {w}×{h} image", p.x, p.y);
        }
    }
    if let Some(b) = bbox
        && (!inside(b[0], b[1]) || !inside(b[2], b[3]))
    {
        bail!("box {:?} lies outside the {w}×{h} image", b);
    }
    Ok(())
}

/// Refuses an output file whose folder does not exist (before any slow work starts).
pub fn ensure_output_folder(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.is_dir()
    {
        bail!("output folder {} does not exist", dir.display());
    }
    Ok(())
}

/// Ctrl-C requests a clean cancel (a resumable state is written) instead of killing the run.
pub fn ctrlc_hook(f: impl Fn() + Send + 'static) -> Result<()> {
    ctrlc::set_handler(f).map_err(|e| anyhow::anyhow!("{e}"))
}

/// A line above the bar, or on stderr when the bar is hidden (not a terminal).
pub fn say(pb: &ProgressBar, msg: String) {
    if pb.is_hidden() {
        eprintln!("{msg}");
    } else {
        pb.println(msg);
    }
}

/// A progress bar: `what [bar] pos/len elapsed ETA`.
pub fn bar(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {elapsed_precise} ETA {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb.set_message(what.to_string());
    pb
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        assert_eq!(parse_box("1,2,30,40").unwrap(), [1.0, 2.0, 30.0, 40.0]);
        assert!(parse_box("1,2,3").is_err());
        assert!(parse_box("5,5,1,1").is_err());
        assert!(parse_box("a,b,c,d").is_err());
        let p = parse_point("3.5,4,0").unwrap();
        assert_eq!((p.x, p.y, p.positive), (3.5, 4.0, false));
        assert!(parse_point("1,2,7").is_err());
        assert!(parse_point("nan,2").is_err());
        assert!(check_inside(&[parse_point("10,10").unwrap()], None, 5, 5).is_err());
    }
}
