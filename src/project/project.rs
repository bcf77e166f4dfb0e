//! The project folder: `project.json` (versioned serde), `images/` (copied images; others are
//! referenced by absolute path), `annotations/<image id>/` (one binary PNG per object version),
//! `adapters/` (trained adapters + model cards), `cache/` (image embeddings), `export/`.
//!
//! Crash safety: every file is written with [`atomic_write`]; a mask PNG is always written
//! before the `project.json` that references it, and an object's mask file is never
//! overwritten (an edit writes a new version), so the project on disk is consistent at every
//! instant. Files no longer referenced are removed by [`OpenProject::collect_garbage`] when a
//! project is opened.
#![allow(clippy::module_inception)]

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::fsutil::atomic_write;
use crate::project::import::{load_labels, load_rgb};

pub const PROJECT_FILE: &str = "project.json";
pub const FORMAT: &str = "segadapt-project";
/// Current `project.json` version. Older versions are migrated on open; newer ones are refused.
pub const VERSION: u32 = 1;

pub const IMAGES_DIR: &str = "images";
pub const ANNOTATIONS_DIR: &str = "annotations";
pub const ADAPTERS_DIR: &str = "adapters";
pub const CACHE_DIR: &str = "cache";
pub const EXPORT_DIR: &str = "export";

/// File extensions offered when adding images.
pub const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "tif", "tiff", "bmp", "webp"];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Project {
    pub format: String,
    pub version: u32,
    pub name: String,
    /// Seconds since the Unix epoch.
    pub created: u64,
    pub images: Vec<ImageEntry>,
    #[serde(default)]
    pub classes: Vec<ClassEntry>,
    #[serde(default)]
    pub adapters: Vec<AdapterEntry>,
    /// Next free id for images and objects (ids are never reused).
    pub next_id: u64,
    /// Base model last used with this project.
    #[serde(default)]
    pub model: Option<PathBuf>,
    /// Adapter (relative path in `adapters/`) last selected, if any.
    #[serde(default)]
    pub active_adapter: Option<String>,
    /// Training settings last used (a `TrainConfig` as JSON; kept as a value so that a
    /// project stays readable when the trainer gains fields).
    #[serde(default)]
    pub train_config: Option<serde_json::Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageEntry {
    pub id: u64,
    pub name: String,
    /// Relative to the project folder when copied, absolute when referenced.
    pub path: PathBuf,
    pub copied: bool,
    /// sha256 of the image file (key of the embedding cache).
    pub sha256: String,
    pub width: u32,
    pub height: u32,
    #[serde(default)]
    pub objects: Vec<ObjectEntry>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PointEntry {
    pub x: f64,
    pub y: f64,
    pub positive: bool,
}

/// The prompts that produced an object's mask.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PromptRecord {
    #[serde(default)]
    pub points: Vec<PointEntry>,
    #[serde(default)]
    pub bbox: Option<[f64; 4]>,
    /// Which of SAM's candidate masks was chosen.
    #[serde(default)]
    pub candidate: usize,
    /// Brush/eraser strokes changed the mask after SAM.
    #[serde(default)]
    pub painted: bool,
    /// The model (file name, plus adapter name) that predicted it.
    #[serde(default)]
    pub model: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ObjectEntry {
    pub id: u64,
    pub label: String,
    #[serde(default = "default_class")]
    pub class: String,
    pub color: [u8; 3],
    /// Binary PNG (0/255), relative to the project folder.
    pub mask: PathBuf,
    pub area: u64,
    /// x0, y0, x1, y1 (inclusive pixel bounds).
    pub bbox: [u32; 4],
    #[serde(default)]
    pub prompts: PromptRecord,
    /// "sam", "brush", "import"
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub hidden: bool,
    #[serde(default)]
    pub created: u64,
}

fn default_class() -> String {
    "object".to_string()
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassEntry {
    pub name: String,
    pub color: [u8; 3],
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdapterEntry {
    /// Display name.
    pub name: String,
    /// Relative to the project folder (`adapters/…safetensors`).
    pub path: PathBuf,
    pub method: String,
    pub created: u64,
    #[serde(default)]
    pub base_dice: Option<f64>,
    #[serde(default)]
    pub best_dice: Option<f64>,
    #[serde(default)]
    pub improved: bool,
    #[serde(default)]
    pub message: String,
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A distinct, readable colour for object `k` (golden-angle hue walk).
pub fn palette_color(k: u64) -> [u8; 3] {
    let h = (k as f64 * 137.508).rem_euclid(360.0);
    let (s, v) = (0.75, 0.95);
    let c = v * s;
    let x = c * (1.0 - ((h / 60.0).rem_euclid(2.0) - 1.0).abs());
    let m = v - c;
    let (r, g, b) = match (h / 60.0) as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    [
        ((r + m) * 255.0).round() as u8,
        ((g + m) * 255.0).round() as u8,
        ((b + m) * 255.0).round() as u8,
    ]
}

/// Area and inclusive bounding box of a mask; None when empty.
pub fn mask_stats(mask: &[bool], width: usize) -> Option<(u64, [u32; 4])> {
    let mut area = 0u64;
    let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0usize, 0usize);
    for (i, _) in mask.iter().enumerate().filter(|(_, m)| **m) {
        let (x, y) = (i % width, i / width);
        area += 1;
        x0 = x0.min(x);
        y0 = y0.min(y);
        x1 = x1.max(x);
        y1 = y1.max(y);
    }
    (area > 0).then_some((area, [x0 as u32, y0 as u32, x1 as u32, y1 as u32]))
}

/// sha256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    crate::sam::checkpoint::sha256_file(path)
        .with_context(|| format!("cannot read {}", path.display()))
}

/// A project and the folder it lives in.
#[derive(Clone, Debug)]
pub struct OpenProject {
    pub root: PathBuf,
    pub project: Project,
}

impl Project {
    pub fn new(name: &str) -> Self {
        Project {
            format: FORMAT.to_string(),
            version: VERSION,
            name: name.to_string(),
            created: now_secs(),
            images: Vec::new(),
            classes: vec![ClassEntry {
                name: default_class(),
                color: palette_color(0),
            }],
            adapters: Vec::new(),
            next_id: 1,
            model: None,
            active_adapter: None,
            train_config: None,
        }
    }

    pub fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Parses `project.json` bytes, migrating older versions.
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        let v: serde_json::Value =
            serde_json::from_slice(bytes).context("project.json is not valid JSON")?;
        let format = v.get("format").and_then(|f| f.as_str()).unwrap_or("");
        if format != FORMAT {
            bail!("not a segadapt project (format '{format}', expected '{FORMAT}')");
        }
        let version = v.get("version").and_then(|f| f.as_u64()).unwrap_or(0) as u32;
        if version > VERSION {
            bail!(
                "project.json version {version} is newer than this segadapt understands ({VERSION}); update segadapt"
            );
        }
        // Version 0 → 1: no structural change; fields added since default through serde.
        let mut p: Project =
            serde_json::from_value(v).context("project.json does not match the project format")?;
        p.version = VERSION;
        // Ids must stay unique even if the file was edited by hand.
        let max_id = p
            .images
            .iter()
            .flat_map(|i| std::iter::once(i.id).chain(i.objects.iter().map(|o| o.id)))
            .max()
            .unwrap_or(0);
        p.next_id = p.next_id.max(max_id + 1);
        Ok(p)
    }

    pub fn to_json(&self) -> Result<Vec<u8>> {
        Ok(serde_json::to_vec_pretty(self)?)
    }

    pub fn image(&self, id: u64) -> Option<&ImageEntry> {
        self.images.iter().find(|i| i.id == id)
    }
    pub fn image_mut(&mut self, id: u64) -> Option<&mut ImageEntry> {
        self.images.iter_mut().find(|i| i.id == id)
    }
    pub fn n_objects(&self) -> usize {
        self.images.iter().map(|i| i.objects.len()).sum()
    }
}

fn unique_name(dir: &Path, name: &str) -> String {
    let p = Path::new(name);
    let stem = p
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "image".into());
    let ext = p
        .extension()
        .map(|s| format!(".{}", s.to_string_lossy()))
        .unwrap_or_default();
    let mut candidate = format!("{stem}{ext}");
    let mut k = 1;
    while dir.join(&candidate).exists() {
        candidate = format!("{stem}_{k}{ext}");
        k += 1;
    }
    candidate
}

impl OpenProject {
    /// Creates a new, empty project folder (the folder may exist but must not hold a project).
    pub fn create(root: &Path, name: &str) -> Result<Self> {
        if root.join(PROJECT_FILE).exists() {
            bail!(
                "{} already holds a project; open it instead",
                root.display()
            );
        }
        for d in ["", IMAGES_DIR, ANNOTATIONS_DIR, ADAPTERS_DIR, CACHE_DIR] {
            std::fs::create_dir_all(root.join(d))
                .with_context(|| format!("cannot create folder {}", root.join(d).display()))?;
        }
        let p = OpenProject {
            root: root.to_path_buf(),
            project: Project::new(name),
        };
        p.save()?;
        Ok(p)
    }

    /// Opens `root/project.json` (or a path to the json itself).
    pub fn open(path: &Path) -> Result<Self> {
        let (root, file) = if path.is_file() {
            (
                path.parent().map(Path::to_path_buf).unwrap_or_default(),
                path.to_path_buf(),
            )
        } else {
            (path.to_path_buf(), path.join(PROJECT_FILE))
        };
        let bytes = std::fs::read(&file).with_context(|| {
            format!(
                "no project at {} (cannot read {})",
                root.display(),
                file.display()
            )
        })?;
        let project = Project::from_json(&bytes).with_context(|| format!("{}", file.display()))?;
        for d in [IMAGES_DIR, ANNOTATIONS_DIR, ADAPTERS_DIR, CACHE_DIR] {
            let _ = std::fs::create_dir_all(root.join(d));
        }
        Ok(OpenProject { root, project })
    }

    /// Atomically writes `project.json`.
    pub fn save(&self) -> Result<()> {
        atomic_write(&self.root.join(PROJECT_FILE), &self.project.to_json()?)
    }

    pub fn json_path(&self) -> PathBuf {
        self.root.join(PROJECT_FILE)
    }

    /// Absolute path of a path stored in the project (relative ones are under the folder).
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.root.join(p)
        }
    }

    pub fn image_path(&self, img: &ImageEntry) -> PathBuf {
        self.resolve(&img.path)
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.root.join(CACHE_DIR)
    }
    pub fn adapters_dir(&self) -> PathBuf {
        self.root.join(ADAPTERS_DIR)
    }

    /// Adds an image file. `copy` puts a copy in `images/` (the project then travels as one
    /// folder); otherwise the image is referenced by its absolute path. Returns the new id.
    pub fn add_image(&mut self, src: &Path, copy: bool) -> Result<u64> {
        let entry = prepare_image(&self.root, src, copy)?;
        self.insert_image(entry)
    }

    /// Adds an image prepared by [`prepare_image`] (refusing duplicates). Returns its id.
    pub fn insert_image(&mut self, mut entry: ImageEntry) -> Result<u64> {
        if let Some(dup) = self
            .project
            .images
            .iter()
            .find(|i| i.sha256 == entry.sha256)
        {
            if entry.copied {
                let _ = std::fs::remove_file(self.resolve(&entry.path));
            }
            bail!(
                "'{}' is already in the project (as '{}')",
                entry.name,
                dup.name
            );
        }
        entry.id = self.project.take_id();
        let id = entry.id;
        self.project.images.push(entry);
        Ok(id)
    }

    /// Adds every image file of a folder (not recursive), sorted by name. Returns the ids
    /// added and the (file, error) pairs that were skipped.
    pub fn add_folder(
        &mut self,
        dir: &Path,
        copy: bool,
    ) -> Result<(Vec<u64>, Vec<(PathBuf, String)>)> {
        let files = list_images(dir)?;
        let (mut ok, mut skipped) = (Vec::new(), Vec::new());
        for f in files {
            match self.add_image(&f, copy) {
                Ok(id) => ok.push(id),
                Err(e) => skipped.push((f, format!("{e:#}"))),
            }
        }
        Ok((ok, skipped))
    }

    /// Relative path for a new version of an object's mask; never an existing file.
    pub fn new_mask_path(&self, image_id: u64, object_id: u64) -> PathBuf {
        let dir = PathBuf::from(ANNOTATIONS_DIR).join(format!("img{image_id}"));
        let mut v = 1;
        loop {
            let rel = dir.join(format!("obj{object_id}_v{v}.png"));
            if !self.root.join(&rel).exists() {
                return rel;
            }
            v += 1;
        }
    }

    /// Writes a binary mask PNG (creating the image's annotation folder).
    pub fn write_mask(&self, rel: &Path, mask: &[bool], width: usize, height: usize) -> Result<()> {
        let abs = self.resolve(rel);
        if let Some(d) = abs.parent() {
            std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
        }
        crate::project::export::write_mask_png(&abs, mask, width, height)
    }

    /// Reads an object's mask (any nonzero pixel is inside).
    pub fn read_mask(&self, obj: &ObjectEntry, width: usize, height: usize) -> Result<Vec<bool>> {
        read_mask_file(&self.resolve(&obj.mask), width, height)
    }

    /// Removes annotation files no object references (left by deletes and edits) and stale
    /// temp files. Returns how many files were removed.
    pub fn collect_garbage(&self) -> usize {
        let referenced: HashSet<PathBuf> = self
            .project
            .images
            .iter()
            .flat_map(|i| i.objects.iter().map(|o| self.resolve(&o.mask)))
            .collect();
        let mut removed = 0;
        let Ok(dirs) = std::fs::read_dir(self.root.join(ANNOTATIONS_DIR)) else {
            return 0;
        };
        for d in dirs.flatten() {
            let Ok(files) = std::fs::read_dir(d.path()) else {
                continue;
            };
            for f in files.flatten() {
                let p = f.path();
                if p.is_file() && !referenced.contains(&p) && std::fs::remove_file(&p).is_ok() {
                    removed += 1;
                }
            }
        }
        removed
    }

    /// Adds an object to an image from a mask, writing its PNG. Returns the object id.
    pub fn add_object(
        &mut self,
        image_id: u64,
        mask: &[bool],
        label: Option<String>,
        source: &str,
        prompts: PromptRecord,
    ) -> Result<u64> {
        let (w, h) = {
            let img = self.project.image(image_id).context("no such image")?;
            (img.width as usize, img.height as usize)
        };
        if mask.len() != w * h {
            bail!("mask has {} pixels, the image {}", mask.len(), w * h);
        }
        let (area, bbox) = mask_stats(mask, w).context("the mask is empty")?;
        let id = self.project.take_id();
        let rel = self.new_mask_path(image_id, id);
        self.write_mask(&rel, mask, w, h)?;
        let class = self
            .project
            .classes
            .first()
            .map(|c| c.name.clone())
            .unwrap_or_else(default_class);
        let img = self.project.image_mut(image_id).context("no such image")?;
        let k = img.objects.len() + 1;
        img.objects.push(ObjectEntry {
            id,
            label: label.unwrap_or_else(|| format!("{class} {k}")),
            class,
            color: palette_color(id),
            mask: rel,
            area,
            bbox,
            prompts,
            source: source.to_string(),
            hidden: false,
            created: now_secs(),
        });
        Ok(id)
    }

    /// Adds one object per label of a label image (0 = background), e.g. existing
    /// ground truth. Returns how many were added.
    pub fn import_labels(&mut self, image_id: u64, label_file: &Path) -> Result<usize> {
        let labels = load_labels(label_file)?;
        let img = self.project.image(image_id).context("no such image")?;
        if (labels.width, labels.height) != (img.width as usize, img.height as usize) {
            bail!(
                "label image {} is {}×{}, the image {}×{}",
                label_file.display(),
                labels.width,
                labels.height,
                img.width,
                img.height
            );
        }
        let mut n = 0;
        for id in labels.ids() {
            let m = labels.mask_of(id);
            self.add_object(image_id, &m, None, "import", PromptRecord::default())?;
            n += 1;
        }
        Ok(n)
    }
}

/// Image files of a folder (not recursive), sorted by name.
pub fn list_images(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .map(|e| {
                        IMAGE_EXTENSIONS.contains(&e.to_string_lossy().to_lowercase().as_str())
                    })
                    .unwrap_or(false)
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Validates an image file, hashes it and (with `copy`) copies it into `root/images/`: the
/// slow part of adding an image, safe to run off the UI thread. The entry's id is 0 until
/// [`OpenProject::insert_image`].
pub fn prepare_image(root: &Path, src: &Path, copy: bool) -> Result<ImageEntry> {
    let img = load_rgb(src)?; // validates and gives the size
    let sha256 = sha256_file(src)?;
    let name = src
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "image".into());
    let path = if copy {
        let dir = root.join(IMAGES_DIR);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let file = unique_name(&dir, &name);
        let bytes = std::fs::read(src).with_context(|| format!("cannot read {}", src.display()))?;
        atomic_write(&dir.join(&file), &bytes)?;
        PathBuf::from(IMAGES_DIR).join(file)
    } else {
        std::fs::canonicalize(src).unwrap_or_else(|_| src.to_path_buf())
    };
    Ok(ImageEntry {
        id: 0,
        name,
        path,
        copied: copy,
        sha256,
        width: img.width(),
        height: img.height(),
        objects: Vec::new(),
    })
}

/// Reads a binary mask PNG; checks its size.
pub fn read_mask_file(path: &Path, width: usize, height: usize) -> Result<Vec<bool>> {
    let img = image::open(path).with_context(|| format!("cannot read mask {}", path.display()))?;
    let g = img.to_luma8();
    if (g.width() as usize, g.height() as usize) != (width, height) {
        bail!(
            "mask {} is {}×{}, the image {width}×{height}",
            path.display(),
            g.width(),
            g.height()
        );
    }
    Ok(g.as_raw().iter().map(|&v| v > 0).collect())
}

/// The bundled nuclei demo: four 256×256 crops of a real fluorescence image (the first three
/// with 12 ground-truth nuclei each, so Adapt can run right away; the fourth left to annotate).
pub mod demo {
    pub const IMAGES: [(&str, &[u8]); 4] = [
        (
            "nuclei_0.png",
            include_bytes!("../../assets/demo/nuclei/images/nuclei_0.png"),
        ),
        (
            "nuclei_1.png",
            include_bytes!("../../assets/demo/nuclei/images/nuclei_1.png"),
        ),
        (
            "nuclei_2.png",
            include_bytes!("../../assets/demo/nuclei/images/nuclei_2.png"),
        ),
        (
            "nuclei_3.png",
            include_bytes!("../../assets/demo/nuclei/images/nuclei_3.png"),
        ),
    ];
    pub const LABELS: [(&str, &[u8]); 3] = [
        (
            "nuclei_0.png",
            include_bytes!("../../assets/demo/nuclei/labels/nuclei_0.png"),
        ),
        (
            "nuclei_1.png",
            include_bytes!("../../assets/demo/nuclei/labels/nuclei_1.png"),
        ),
        (
            "nuclei_2.png",
            include_bytes!("../../assets/demo/nuclei/labels/nuclei_2.png"),
        ),
    ];
}

/// Creates the demo project in `root` (which must not hold a project yet).
pub fn create_demo(root: &Path) -> Result<OpenProject> {
    let mut p = OpenProject::create(root, "Nuclei demo")?;
    p.project.classes = vec![ClassEntry {
        name: "nucleus".into(),
        color: palette_color(0),
    }];
    let staging = root.join(CACHE_DIR).join("demo-src");
    std::fs::create_dir_all(&staging)?;
    for (name, bytes) in demo::IMAGES {
        let src = staging.join(name);
        atomic_write(&src, bytes)?;
        let id = p.add_image(&src, true)?;
        if let Some((_, lab)) = demo::LABELS.iter().find(|(n, _)| *n == name) {
            let lsrc = staging.join(format!("labels_{name}"));
            atomic_write(&lsrc, lab)?;
            p.import_labels(id, &lsrc)?;
        }
    }
    let _ = std::fs::remove_dir_all(&staging);
    p.save()?;
    Ok(p)
}

/// Opens the demo project at `root`, creating it first when absent.
pub fn open_or_create_demo(root: &Path) -> Result<OpenProject> {
    if root.join(PROJECT_FILE).exists() {
        OpenProject::open(root)
    } else {
        create_demo(root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_roundtrip_and_gc() {
        let dir = std::env::temp_dir().join(format!("segadapt-demo-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let p = create_demo(&dir).unwrap();
        assert_eq!(p.project.images.len(), 4);
        assert_eq!(p.project.n_objects(), 36);
        let q = OpenProject::open(&dir).unwrap();
        assert_eq!(p.project, q.project);
        let img = &q.project.images[0];
        let m = q
            .read_mask(&img.objects[0], img.width as usize, img.height as usize)
            .unwrap();
        assert_eq!(m.iter().filter(|&&v| v).count() as u64, img.objects[0].area);
        std::fs::write(
            dir.join(ANNOTATIONS_DIR).join("img1").join("stray.png"),
            b"x",
        )
        .unwrap();
        assert_eq!(q.collect_garbage(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn refuses_newer_versions() {
        let mut p = Project::new("x");
        p.version = VERSION + 1;
        let err = Project::from_json(&p.to_json().unwrap()).unwrap_err();
        assert!(format!("{err:#}").contains("newer"));
    }
}
