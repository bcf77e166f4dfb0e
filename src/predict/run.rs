//! A prediction run over a folder (or a segadapt project): the engine behind `segadapt predict`
//! and the app's "Predict all images". Per image a 16-bit label image (PNG and/or TIFF),
//! optionally one PNG per object, and a per-image COCO record; one COCO file for the run.
//! Resumable: an image whose files exist and were made with the same settings is skipped. A
//! failing image is reported and the run goes on.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::device::ComputeDevice;
use crate::engine::LoadedModel;
use crate::fsutil::{atomic_write, check_writable_dir, remove_stale_temps};
use crate::predict::batch::{ImagePrompts, MaskSource, predict_image};
use crate::predict::outputs::{ImageState, OutputSpec, prompt_json, run_coco};
use crate::predict::prompt_file::PromptFile;
use crate::predict::tiling::TileConfig;
use crate::project::import::load_rgb;
use crate::project::schema::PROJECT_FILE;
use crate::sam::SamConfig;
use crate::sam::automatic_mask_generator::AmgParams;

/// The run's COCO file, in the output folder.
pub const RUN_COCO: &str = "coco.json";

/// What to segment, with what, and where the files go.
pub struct RunRequest {
    pub input: PathBuf,
    pub model: PathBuf,
    /// Overrides detection (non-official models whose head counts the weights do not record).
    pub config: Option<SamConfig>,
    pub adapter: Option<PathBuf>,
    /// Prompts per image; without them every image gets segment everything with `params`.
    pub prompts: Option<PromptFile>,
    pub params: AmgParams,
    pub multimask: bool,
    pub outputs: OutputSpec,
    /// Redo images whose outputs exist.
    pub overwrite: bool,
    pub tiles: TileConfig,
    pub device: ComputeDevice,
}

/// What a run reports while it works.
pub enum RunEvent {
    /// The images were listed: how many the run will go through.
    Started { images: usize },
    /// A line for the user (an image done or failed, the model loaded, a fallback).
    Message(String),
    /// What is being worked on now (image name, batch within it).
    Working(String),
    /// One more image finished (done, skipped or failed).
    ImageFinished,
}

/// How a run ended.
#[derive(Debug, Default)]
pub struct RunSummary {
    pub images: usize,
    pub done: usize,
    pub skipped: usize,
    pub no_prompts: usize,
    /// (image name, why)
    pub failed: Vec<(String, String)>,
    pub coco_path: PathBuf,
    /// Whether the run's COCO file was (re)written; unchanged content is left alone.
    pub coco_changed: bool,
    pub coco_images: usize,
    pub secs: f64,
    pub cancelled: bool,
}

impl RunSummary {
    /// `N images: d segmented, s skipped (already done), f failed; t s (…)`.
    pub fn line(&self) -> String {
        let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
        let mut s = format!(
            "{}: {} segmented, {} skipped (already done), {} failed",
            plural(self.images, "image"),
            self.done,
            self.skipped,
            self.failed.len()
        );
        if self.no_prompts > 0 {
            s += &format!(", {} without prompts", self.no_prompts);
        }
        if self.cancelled {
            let left = self.images
                - (self.done + self.skipped + self.failed.len() + self.no_prompts).min(self.images);
            s += &format!("; stopped with {left} not started");
        }
        s += &format!("; {:.1} s", self.secs);
        if self.done > 0 {
            s += &format!(
                " ({:.1} s per segmented image)",
                self.secs / self.done as f64
            );
        }
        s
    }
}

/// One image of the run.
pub struct Item {
    pub path: PathBuf,
    /// File name in the COCO files and the key of the prompt file.
    name: String,
    /// Output file prefix.
    stem: String,
}

/// The images of a plain folder or of a project folder.
pub fn list_inputs(input: &Path) -> Result<Vec<Item>> {
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

/// Runs `req`, stopping between images (and between prompt batches) once `cancel` is set.
/// Errors before any image (bad prompts, folders, a model that cannot load) end the run; an
/// image that fails is recorded in the summary and the run goes on.
pub fn run_folder(
    req: &RunRequest,
    cancel: &AtomicBool,
    on: &mut dyn FnMut(RunEvent),
) -> Result<RunSummary> {
    // Everything that can be refused is checked before the model loads or a file is written.
    let (prompts, params, tiles) = (req.prompts.as_ref(), &req.params, &req.tiles);
    tiles.validate()?;
    if prompts.is_none() {
        params
            .validate()
            .map_err(|e| anyhow::anyhow!("segment everything: {e}"))?;
    }
    for (flag, p) in [
        ("--model", Some(&req.model)),
        ("--adapter", req.adapter.as_ref()),
    ] {
        if let Some(p) = p.filter(|p| !p.is_file()) {
            bail!("{flag} {} is not a file", p.display());
        }
    }
    let items = list_inputs(&req.input)?;
    on(RunEvent::Started {
        images: items.len(),
    });
    if let Some(pf) = prompts {
        let unknown: Vec<&String> = pf
            .images
            .keys()
            .filter(|k| !items.iter().any(|i| &i.name == *k))
            .collect();
        if !unknown.is_empty() {
            bail!(
                "the prompt file names images that are not in {}: {}",
                req.input.display(),
                unknown
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    let spec = &req.outputs;
    let out = &spec.dir;
    if out.exists() && !out.is_dir() {
        bail!("--out {} exists and is not a folder", out.display());
    }
    if out.is_dir() && canonical(out) == canonical(&req.input) {
        bail!("--out must not be the input folder (its outputs would be read as images)");
    }
    std::fs::create_dir_all(out)
        .with_context(|| format!("cannot create output folder {}", out.display()))?;
    check_writable_dir(out)?;
    remove_stale_temps(out);

    let run_settings = json!({
        "model": canonical(&req.model),
        "adapter": req.adapter.as_deref().map(canonical),
        "multimask": req.multimask,
        "coco_segmentation": format!("{:?}", spec.coco_segmentation),
        "everything": prompts.is_none().then_some(params),
        "tiles": { "tile": tiles.tile, "halo": tiles.halo, "tile_above": tiles.tile_above },
    });
    let mut model: Option<LoadedModel> = None;
    let (mut done, mut skipped, mut no_prompts) = (0usize, 0usize, 0usize);
    let mut failed: Vec<(String, String)> = Vec::new();
    let mut records: Vec<Value> = Vec::new();
    let t_run = std::time::Instant::now();
    for item in &items {
        if cancel.load(Ordering::Relaxed) {
            break;
        }
        on(RunEvent::Working(item.name.clone()));
        let image_prompts = match &prompts {
            Some(pf) => {
                let list = pf.for_image(&item.name);
                if list.is_empty() {
                    no_prompts += 1;
                    on(RunEvent::ImageFinished);
                    continue;
                }
                ImagePrompts::Objects(list)
            }
            None => ImagePrompts::Everything(params),
        };
        let mut settings = run_settings.clone();
        if let ImagePrompts::Objects(list) = &image_prompts {
            settings["prompts"] = list.iter().map(prompt_json).collect();
        }
        if !req.overwrite {
            match spec.state(&item.stem, &settings) {
                ImageState::Done(record) => {
                    records.push(record);
                    skipped += 1;
                    on(RunEvent::ImageFinished);
                    continue;
                }
                ImageState::Conflict => {
                    let why = format!(
                        "its outputs in {} were made with other settings (prompts, model or \
                         parameters); pass --overwrite to redo them",
                        out.display()
                    );
                    on(RunEvent::Message(format!("{}: {why}", item.name)));
                    failed.push((item.name.clone(), why));
                    on(RunEvent::ImageFinished);
                    continue;
                }
                ImageState::Redo(_) => {}
            }
        }
        let img = match load_rgb(&item.path) {
            Ok(img) => img,
            Err(e) => {
                on(RunEvent::Message(format!("{}: FAILED: {e:#}", item.name)));
                failed.push((item.name.clone(), format!("{e:#}")));
                on(RunEvent::ImageFinished);
                continue;
            }
        };
        if model.is_none() {
            // Loaded on the first image that needs it (a finished run loads nothing); a model
            // that cannot load would fail every image, so it ends the run.
            let t_load = std::time::Instant::now();
            let loaded = crate::engine::load(
                &req.model,
                req.adapter.as_deref(),
                req.config.clone(),
                req.device.clone(),
            )?;
            model = Some(loaded);
            let secs = t_load.elapsed().as_secs_f64();
            on(RunEvent::Message(format!("model loaded in {secs:.1} s")));
        }
        // Per-image time without the one-off model load.
        let t = std::time::Instant::now();
        let m = model.as_ref().expect("loaded above");
        let result = (|| -> Result<Option<Value>> {
            let name = item.name.clone();
            let on_batch = &mut *on;
            let mut progress =
                |d: usize, n: usize| on_batch(RunEvent::Working(format!("{name} {d}/{n}")));
            let Some(objects) = predict_image(
                &m.predictor,
                &img,
                &image_prompts,
                req.multimask,
                tiles,
                cancel,
                &mut progress,
            )?
            else {
                return Ok(None);
            };
            let size = [img.height() as usize, img.width() as usize];
            for (k, o) in objects.iter().enumerate() {
                if o.source == MaskSource::SqueezedFallback {
                    on(RunEvent::Message(format!(
                        "{name}: object {}: prompt larger than a tile; segmented on the whole \
                         image squeezed into the model input",
                        k + 1
                    )));
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
                on(RunEvent::Message(format!(
                    "{}: {n} objects in {secs:.1} s",
                    item.name
                )));
                records.push(record);
                done += 1;
            }
            Ok(None) => break,
            Err(e) => {
                on(RunEvent::Message(format!("{}: FAILED: {e:#}", item.name)));
                failed.push((item.name.clone(), format!("{e:#}")));
            }
        }
        on(RunEvent::ImageFinished);
    }
    let info = json!({ "description": "segadapt predict", "settings": run_settings });
    let coco = serde_json::to_vec(&run_coco(&records, info)?)?;
    let coco_path = out.join(RUN_COCO);
    // Unchanged content is not rewritten: a run that skips everything touches nothing.
    let coco_changed = std::fs::read(&coco_path).ok().as_deref() != Some(coco.as_slice());
    if coco_changed {
        atomic_write(&coco_path, &coco)
            .with_context(|| format!("cannot write {}", coco_path.display()))?;
    }
    Ok(RunSummary {
        images: items.len(),
        done,
        skipped,
        no_prompts,
        failed,
        coco_path,
        coco_changed,
        coco_images: records.len(),
        secs: t_run.elapsed().as_secs_f64(),
        cancelled: cancel.load(Ordering::Relaxed),
    })
}
