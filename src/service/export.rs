//! The export job: per-object mask PNGs, one label image per image, COCO JSON
//! (compressed RLE or polygons), the adapter file + model card, and the merged model.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::device::ComputeDevice;
use crate::fsutil::atomic_write;
use crate::project::coco::{self, CocoImage, CocoObject};
use crate::project::export::{write_label_png, write_mask_png};
use crate::project::project::OpenProject;

use super::context::JobContext;
use super::worker::ModelSpec;

#[derive(Clone, Debug)]
pub struct ExportOptions {
    pub masks: bool,
    pub labels: bool,
    pub coco: bool,
    /// COCO masks as polygons rather than RLE.
    pub coco_polygons: bool,
    pub adapter: bool,
    pub merged: bool,
}

impl ExportOptions {
    pub fn coco_segmentation(&self) -> coco::CocoSegmentation {
        if self.coco_polygons {
            coco::CocoSegmentation::Polygon
        } else {
            coco::CocoSegmentation::Rle
        }
    }
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            masks: true,
            labels: true,
            coco: true,
            coco_polygons: false,
            adapter: true,
            merged: false,
        }
    }
}

pub struct ExportRequest {
    pub project: OpenProject,
    pub out: PathBuf,
    pub options: ExportOptions,
    /// Active adapter (absolute path) for the adapter/merged exports.
    pub adapter: Option<PathBuf>,
    pub model: Option<ModelSpec>,
    pub device: ComputeDevice,
    pub flushed: Option<std::sync::mpsc::Receiver<()>>,
}

#[derive(Clone, Debug, Default)]
pub struct ExportReport {
    pub out: PathBuf,
    pub files: Vec<PathBuf>,
    pub notes: Vec<String>,
}

pub fn sanitize(s: &str) -> String {
    let t: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if t.is_empty() { "x".into() } else { t }
}

fn stem(name: &str) -> String {
    sanitize(
        Path::new(name)
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .as_deref()
            .unwrap_or(name),
    )
}

/// One image for the COCO file: id, name, width, height and its objects (id, class, mask).
type CocoMasks = (u64, String, usize, usize, Vec<(u64, String, Vec<bool>)>);

/// Runs an export on the calling thread, reporting the fraction of images done.
pub fn export(req: &ExportRequest, progress: impl Fn(f32)) -> Result<ExportReport> {
    if let Some(f) = &req.flushed {
        let _ = f.recv_timeout(std::time::Duration::from_secs(30));
    }
    let p = &req.project;
    let out = &req.out;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut rep = ExportReport {
        out: out.clone(),
        ..Default::default()
    };
    let mut coco_masks: Vec<CocoMasks> = Vec::new();
    let n_images = p.project.images.len().max(1);
    for (i, img) in p.project.images.iter().enumerate() {
        progress(i as f32 / n_images as f32);
        let (w, h) = (img.width as usize, img.height as usize);
        let mut masks = Vec::new();
        for o in &img.objects {
            let m = p
                .read_mask(o, w, h)
                .with_context(|| format!("object '{}' of {}", o.label, img.name))?;
            masks.push((o, m));
        }
        if req.options.masks && !masks.is_empty() {
            let dir = out.join("masks").join(stem(&img.name));
            std::fs::create_dir_all(&dir)?;
            for (o, m) in &masks {
                let f = dir.join(format!("{}_{}.png", sanitize(&o.label), o.id));
                write_mask_png(&f, m, w, h)?;
                rep.files.push(f);
            }
        }
        if req.options.labels {
            if masks.len() > u16::MAX as usize {
                rep.notes.push(format!(
                    "{}: more than 65535 objects; label image skipped",
                    img.name
                ));
            } else {
                let dir = out.join("labels");
                std::fs::create_dir_all(&dir)?;
                let mut lab = vec![0u16; w * h];
                for (k, (_, m)) in masks.iter().enumerate() {
                    for (d, &v) in lab.iter_mut().zip(m.iter()) {
                        if v {
                            *d = (k + 1) as u16;
                        }
                    }
                }
                let f = dir.join(format!("{}.png", stem(&img.name)));
                write_label_png(&f, &lab, w, h)?;
                rep.files.push(f);
            }
        }
        if req.options.coco {
            coco_masks.push((
                img.id,
                img.name.clone(),
                w,
                h,
                masks
                    .into_iter()
                    .map(|(o, m)| (o.id, o.class.clone(), m))
                    .collect(),
            ));
        }
    }
    if req.options.coco {
        let images: Vec<CocoImage> = coco_masks
            .iter()
            .map(|(id, name, w, h, objs)| CocoImage {
                id: *id,
                file_name: name,
                width: *w,
                height: *h,
                objects: objs
                    .iter()
                    .map(|(oid, cat, m)| CocoObject {
                        id: *oid,
                        category: cat,
                        mask: m,
                    })
                    .collect(),
            })
            .collect();
        let kind = req.options.coco_segmentation();
        let json = coco::build(
            &images,
            &format!("segadapt project '{}'", p.project.name),
            kind,
        );
        let f = out.join("coco.json");
        atomic_write(&f, serde_json::to_string_pretty(&json)?.as_bytes())?;
        rep.files.push(f);
    }
    if req.options.adapter || req.options.merged {
        match &req.adapter {
            None => rep
                .notes
                .push("no adapter selected: adapter and merged model not exported".into()),
            Some(a) => {
                if req.options.adapter {
                    let dir = out.join("adapter");
                    std::fs::create_dir_all(&dir)?;
                    let name = a.file_name().context("adapter file name")?;
                    let f = dir.join(name);
                    std::fs::copy(a, &f).with_context(|| format!("cannot copy {}", a.display()))?;
                    rep.files.push(f.clone());
                    let card = crate::adapt::file::card_path(a);
                    if card.exists() {
                        let cf = crate::adapt::file::card_path(&f);
                        std::fs::copy(&card, &cf)?;
                        rep.files.push(cf);
                    }
                }
                if req.options.merged {
                    match export_merged(req, a, out) {
                        Ok((f, note)) => {
                            rep.files.push(f);
                            rep.notes.push(note);
                        }
                        Err(e) => rep.notes.push(format!("merged model not exported: {e:#}")),
                    }
                }
            }
        }
    }
    Ok(rep)
}

fn export_merged(req: &ExportRequest, adapter: &Path, out: &Path) -> Result<(PathBuf, String)> {
    let spec = req.model.as_ref().context("no base model loaded")?;
    let loaded = crate::engine::load(
        &spec.path,
        Some(adapter),
        spec.config.clone(),
        req.device.clone(),
    )?;
    let mut sam = loaded.predictor.model;
    let report = crate::adapt::merge::merge(&mut sam);
    let dir = out.join("merged");
    std::fs::create_dir_all(&dir)?;
    let stem = adapter
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "model".into());
    let f = dir.join(format!("{stem}.merged.safetensors"));
    // Every tensor of the base checkpoint under its official name; refuses side branches.
    crate::adapt::export::write_merged(&sam, &spec.path, &f, false, None)?;
    Ok((
        f,
        format!(
            "merged model: {} projections folded, {} side branches",
            report.folded.len(),
            report.side_branches.len()
        ),
    ))
}

/// The job for [`super::tasks::Tasks::spawn`].
pub fn job(req: ExportRequest) -> impl FnOnce(&JobContext) -> Result<ExportReport> + Send {
    move |ctx| export(&req, |f| ctx.progress(f))
}
