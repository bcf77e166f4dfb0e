//! `segadapt predict`: every image of a folder (or of a segadapt project) segmented from a
//! prompt file, or with segment everything when there is none. Per image a 16-bit label
//! image (PNG and/or TIFF), optionally one PNG per object, and a per-image COCO record;
//! one COCO file for the whole run. Resumable: an image whose files exist and were made with
//! the same settings is skipped. A failing image is reported and the run goes on.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::everything::AmgArgs;
use super::{bar, say};
use crate::device::ComputeDevice;
use crate::engine::LoadedModel;
use crate::fsutil::{atomic_write, check_writable_dir, remove_stale_temps};
use crate::predict::batch::{ImagePrompts, MaskSource, predict_image};
use crate::predict::outputs::{ImageState, OutputSpec, prompt_json, run_coco};
use crate::predict::prompt_file::PromptFile;
use crate::project::coco::CocoSegmentation;
use crate::project::import::load_rgb;
use crate::project::schema::PROJECT_FILE;

/// Set by Ctrl-C: the run stops after the current prompt / point batch, keeping every
/// finished image.
static CANCEL: AtomicBool = AtomicBool::new(false);

/// The run's COCO file in the output folder.
pub const RUN_COCO: &str = "coco.json";

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LabelsFormat {
    /// <stem>_labels.png (16-bit gray PNG).
    Png,
    /// <stem>_labels.tif (16-bit gray TIFF, deflate).
    Tiff,
}

#[derive(clap::Args, Debug)]
pub struct PredictArgs {
    /// Base checkpoint (official SAM or MobileSAM file).
    #[arg(long)]
    pub model: PathBuf,
    /// Adapter file trained on that base (the masks then come from the adapted model).
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// A folder of images (not recursive), or a segadapt project folder (its images).
    #[arg(long)]
    pub input: PathBuf,
    /// Output folder (created if missing; not the input folder).
    #[arg(long)]
    pub out: PathBuf,
    /// Prompt file: CSV (image,x0,y0,x1,y1 or image,x,y,label) or COCO JSON with boxes /
    /// point_coords, matched to images by file name. Without it: segment everything.
    #[arg(long)]
    pub prompts: Option<PathBuf>,
    /// Decode each prompt into SAM's 3 candidates and keep the best-scoring one.
    #[arg(long)]
    pub multimask: bool,
    /// Label image format(s), comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "png")]
    pub labels_format: Vec<LabelsFormat>,
    /// Also write one 0/255 PNG per object (<stem>_objects/<stem>_NNNN.png).
    #[arg(long)]
    pub objects: bool,
    /// COCO masks as compressed RLE (exact) or pixel-edge polygons (exact without holes;
    /// holes come back filled).
    #[arg(long, value_enum, default_value = "rle")]
    pub coco_segmentation: CocoSegmentation,
    /// Redo images whose outputs exist (by default they are skipped).
    #[arg(long)]
    pub overwrite: bool,
    /// Segment-everything parameters (used only without --prompts).
    #[command(flatten)]
    pub amg: AmgArgs,
    #[command(flatten)]
    pub tiles: super::TileArgs,
}

/// One image of the run.
struct Item {
    path: PathBuf,
    /// File name in the COCO files and the key of the prompt file.
    name: String,
    /// Output file prefix.
    stem: String,
}

/// The images of a plain folder or of a project folder.
fn list_inputs(input: &Path) -> Result<Vec<Item>> {
    if !input.is_dir() {
        bail!("--input {} is not a folder", input.display());
    }
    let pairs: Vec<(PathBuf, String)> = if input.join(PROJECT_FILE).is_file() {
        let p = crate::project::folder::OpenProject::open(input)?;
        p.project
            .images
            .iter()
            .map(|e| (p.image_path(e), e.name.clone()))
            .collect()
    } else {
        crate::project::folder::list_images(input)?
            .into_iter()
            .map(|p| {
                let n = p
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .to_string();
                (p, n)
            })
            .collect()
    };
    if pairs.is_empty() {
        bail!("no images in {}", input.display());
    }
    let mut by_stem: BTreeMap<String, String> = BTreeMap::new();
    let mut items = Vec::new();
    for (path, name) in pairs {
        let stem = Path::new(&name)
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| "image".into());
        if let Some(other) = by_stem.insert(stem.clone(), name.clone()) {
            bail!("{other} and {name} would write the same outputs ({stem}_…); rename one");
        }
        items.push(Item { path, name, stem });
    }
    Ok(items)
}

fn canonical(p: &Path) -> String {
    std::fs::canonicalize(p)
        .unwrap_or_else(|_| p.to_path_buf())
        .to_string_lossy()
        .to_string()
}

pub fn run(a: PredictArgs, dev: ComputeDevice) -> Result<()> {
    // Everything that can be refused is checked before the model loads or a file is written.
    let prompts = a.prompts.as_deref().map(PromptFile::load).transpose()?;
    let params = a.amg.params();
    let tiles = a.tiles.config();
    tiles.validate()?;
    if prompts.is_none() {
        params
            .validate()
            .map_err(|e| anyhow::anyhow!("segment everything: {e}"))?;
    }
    for (flag, p) in [
        ("--model", Some(&a.model)),
        ("--adapter", a.adapter.as_ref()),
    ] {
        if let Some(p) = p.filter(|p| !p.is_file()) {
            bail!("{flag} {} is not a file", p.display());
        }
    }
    let items = list_inputs(&a.input)?;
    if let Some(pf) = &prompts {
        let unknown: Vec<&String> = pf
            .images
            .keys()
            .filter(|k| !items.iter().any(|i| &i.name == *k))
            .collect();
        if !unknown.is_empty() {
            bail!(
                "the prompt file names images that are not in {}: {}",
                a.input.display(),
                unknown
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    if a.out.exists() && !a.out.is_dir() {
        bail!("--out {} exists and is not a folder", a.out.display());
    }
    if a.out.is_dir() && canonical(&a.out) == canonical(&a.input) {
        bail!("--out must not be the input folder (its outputs would be read as images)");
    }
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create output folder {}", a.out.display()))?;
    check_writable_dir(&a.out)?;
    remove_stale_temps(&a.out);

    let spec = OutputSpec {
        dir: a.out.clone(),
        labels_png: a.labels_format.contains(&LabelsFormat::Png),
        labels_tiff: a.labels_format.contains(&LabelsFormat::Tiff),
        objects: a.objects,
        coco_segmentation: a.coco_segmentation,
    };
    let run_settings = json!({
        "model": canonical(&a.model),
        "adapter": a.adapter.as_deref().map(canonical),
        "multimask": a.multimask,
        "coco_segmentation": format!("{:?}", a.coco_segmentation),
        "everything": prompts.is_none().then_some(&params),
        "tiles": { "tile": tiles.tile, "halo": tiles.halo, "tile_above": tiles.tile_above },
    });
    let _ = super::ctrlc_hook(|| CANCEL.store(true, Ordering::Relaxed));

    eprintln!("device: {}", dev.description);
    let mut model: Option<LoadedModel> = None;
    let pb = bar(items.len() as u64, "predict");
    let (mut done, mut skipped, mut no_prompts) = (0usize, 0usize, 0usize);
    let mut failed: Vec<(String, String)> = Vec::new();
    let mut records: Vec<Value> = Vec::new();
    let t_run = std::time::Instant::now();
    for item in &items {
        if CANCEL.load(Ordering::Relaxed) {
            break;
        }
        pb.set_message(item.name.clone());
        let image_prompts = match &prompts {
            Some(pf) => {
                let list = pf.for_image(&item.name);
                if list.is_empty() {
                    no_prompts += 1;
                    pb.inc(1);
                    continue;
                }
                ImagePrompts::Objects(list)
            }
            None => ImagePrompts::Everything(&params),
        };
        let mut settings = run_settings.clone();
        if let ImagePrompts::Objects(list) = &image_prompts {
            settings["prompts"] = list.iter().map(prompt_json).collect();
        }
        if !a.overwrite {
            match spec.state(&item.stem, &settings) {
                ImageState::Done(record) => {
                    records.push(record);
                    skipped += 1;
                    pb.inc(1);
                    continue;
                }
                ImageState::Conflict => {
                    let why = format!(
                        "its outputs in {} were made with other settings (prompts, model or \
                         parameters); pass --overwrite to redo them",
                        a.out.display()
                    );
                    say(&pb, format!("{}: {why}", item.name));
                    failed.push((item.name.clone(), why));
                    pb.inc(1);
                    continue;
                }
                ImageState::Redo(_) => {}
            }
        }
        let img = match load_rgb(&item.path) {
            Ok(img) => img,
            Err(e) => {
                say(&pb, format!("{}: FAILED: {e:#}", item.name));
                failed.push((item.name.clone(), format!("{e:#}")));
                pb.inc(1);
                continue;
            }
        };
        if model.is_none() {
            // Loaded on the first image that needs it (a finished run loads nothing); a model
            // that cannot load would fail every image, so it ends the run.
            let t_load = std::time::Instant::now();
            let loaded = crate::engine::load(&a.model, a.adapter.as_deref(), None, dev.clone());
            model = Some(loaded.inspect_err(|_| pb.finish_and_clear())?);
            let secs = t_load.elapsed().as_secs_f64();
            say(&pb, format!("model loaded in {secs:.1} s"));
        }
        // Per-image time without the one-off model load.
        let t = std::time::Instant::now();
        let m = model.as_ref().expect("loaded above");
        let result = (|| -> Result<Option<Value>> {
            let (name, pbc) = (item.name.clone(), pb.clone());
            let mut progress = |d: usize, n: usize| pbc.set_message(format!("{name} {d}/{n}"));
            let cancel = &CANCEL;
            let Some(objects) = predict_image(
                &m.predictor,
                &img,
                &image_prompts,
                a.multimask,
                &tiles,
                cancel,
                &mut progress,
            )?
            else {
                return Ok(None);
            };
            let size = [img.height() as usize, img.width() as usize];
            for (k, o) in objects.iter().enumerate() {
                if o.source == MaskSource::SqueezedFallback {
                    say(
                        &pb,
                        format!(
                            "{name}: object {}: prompt larger than a tile; segmented on the \
                             whole image squeezed into the model input",
                            k + 1
                        ),
                    );
                }
            }
            Ok(Some(spec.write(
                &item.stem, &item.name, size, &objects, &settings,
            )?))
        })();
        match result {
            Ok(Some(record)) => {
                let n = record["annotations"].as_array().map_or(0, Vec::len);
                let secs = t.elapsed().as_secs_f64();
                say(&pb, format!("{}: {n} objects in {secs:.1} s", item.name));
                records.push(record);
                done += 1;
            }
            Ok(None) => break,
            Err(e) => {
                say(&pb, format!("{}: FAILED: {e:#}", item.name));
                failed.push((item.name.clone(), format!("{e:#}")));
            }
        }
        pb.inc(1);
    }
    pb.finish_and_clear();

    let info = json!({ "description": "segadapt predict", "settings": run_settings });
    let coco = serde_json::to_vec(&run_coco(&records, info)?)?;
    let coco_path = a.out.join(RUN_COCO);
    // Unchanged content is not rewritten: a run that skips everything touches nothing.
    let changed = std::fs::read(&coco_path).ok().as_deref() != Some(coco.as_slice());
    if changed {
        atomic_write(&coco_path, &coco)
            .with_context(|| format!("cannot write {}", coco_path.display()))?;
    }
    let secs = t_run.elapsed().as_secs_f64();
    let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    let mut summary = format!(
        "{}: {done} segmented, {skipped} skipped (already done), {} failed",
        plural(items.len(), "image"),
        failed.len()
    );
    if no_prompts > 0 {
        summary += &format!(", {no_prompts} without prompts");
    }
    summary += &format!("; {secs:.1} s");
    if done > 0 {
        summary += &format!(" ({:.1} s per segmented image)", secs / done as f64);
    }
    println!("{summary}");
    println!(
        "{} {} ({})",
        if changed { "wrote" } else { "unchanged:" },
        coco_path.display(),
        plural(records.len(), "image")
    );
    for (name, why) in &failed {
        eprintln!("failed: {name}: {why}");
    }
    if CANCEL.load(Ordering::Relaxed) {
        bail!("stopped by Ctrl-C; run the same command again to continue");
    }
    if !failed.is_empty() {
        bail!("{} of {} images failed", failed.len(), items.len());
    }
    Ok(())
}
