//! `segadapt segment`: one object in one image from a box and/or points.

use std::path::PathBuf;

use anyhow::Result;

use super::{check_inside, ensure_output_folder, parse_box, parse_point};
use crate::device::ComputeDevice;
use crate::predict::PromptInput;
use crate::predict::tiling::{Placement, TiledPredictor};
use crate::project::export::write_mask_png;
use crate::project::import::load_rgb;

#[derive(clap::Args)]
pub struct SegmentArgs {
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
    pub image: PathBuf,
    /// x0,y0,x1,y1 in image pixels
    #[arg(long = "box", allow_hyphen_values = true)]
    pub bbox: Option<String>,
    /// x,y[,label] in image pixels; label 1 = foreground (default), 0 = background. Repeatable.
    #[arg(long = "point", allow_hyphen_values = true)]
    #[allow(rustdoc::broken_intra_doc_links)] // `[,label]` is help text, not a link
    pub points: Vec<String>,
    /// Return 3 candidate masks; the best-scoring goes to --out, all to --out with _0.._2.
    #[arg(long)]
    pub multimask: bool,
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub tiles: super::TileArgs,
}

pub fn run(a: SegmentArgs, dev: ComputeDevice) -> Result<()> {
    let SegmentArgs {
        model,
        adapter,
        family,
        image,
        bbox,
        points,
        multimask,
        out,
        tiles,
    } = a;
    let tiles = tiles.config();
    tiles.validate()?;
    let bbox = bbox.as_deref().map(parse_box).transpose()?;
    let points = points
        .iter()
        .map(|p| parse_point(p))
        .collect::<Result<Vec<_>>>()?;
    if bbox.is_none() && points.is_empty() {
        anyhow::bail!("give a prompt: --box x0,y0,x1,y1 and/or --point x,y[,label]");
    }
    let img = load_rgb(&image)?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    check_inside(&points, bbox, w, h)?;
    ensure_output_folder(&out)?;
    eprintln!("device: {}", dev.description);
    let m = crate::engine::load_as(&model, adapter.as_deref(), None, family, dev)?;
    eprintln!("{}", super::describe_model(&m));
    // Large images by tiles: only the tile the prompt needs is embedded.
    let mut tiled = TiledPredictor::new(&m.predictor, &img, &tiles)?;
    let t = std::time::Instant::now();
    let pred = tiled.predict(
        &PromptInput {
            points,
            bbox,
            mask_input: None,
        },
        multimask,
    );
    let t_dec = t.elapsed().saturating_sub(tiled.embed_time);
    let r = pred.region;
    match (tiled.is_tiled(), pred.placement) {
        (false, _) => {}
        (true, Placement::Tile(i)) => eprintln!(
            "tiled: {} tiles of {} px (halo {}); decoded in tile {} = x {}..{}, y {}..{} \
             (the mask is 0 outside it)",
            tiled.grid().len(),
            tiles.tile,
            tiles.halo,
            i + 1,
            r.x0,
            r.x1,
            r.y0,
            r.y1
        ),
        (true, Placement::Whole) => eprintln!(
            "tiled: the prompt is larger than a tile ({} px + halo {}); segmented on the whole \
             {w}×{h} image squeezed into the model input",
            tiles.tile, tiles.halo
        ),
    }
    let best = pred.best();
    write_mask_png(&out, &pred.masks[best], w, h)?;
    if multimask {
        for (i, mask) in pred.masks.iter().enumerate() {
            let stem = out.file_stem().unwrap_or_default().to_string_lossy();
            let p = out.with_file_name(format!("{stem}_{i}.png"));
            write_mask_png(&p, mask, w, h)?;
        }
    }
    for (i, s) in pred.iou.iter().enumerate() {
        println!(
            "mask {i}: predicted IoU {s:.4}{}",
            if i == best { "  (best, written)" } else { "" }
        );
    }
    eprintln!(
        "embedding {:.0} ms, decoder {:.0} ms; wrote {}",
        tiled.embed_time.as_secs_f64() * 1e3,
        t_dec.as_secs_f64() * 1e3,
        out.display()
    );
    Ok(())
}
