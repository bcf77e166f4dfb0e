//! The open project folder: `images/` (copied images; others are referenced by absolute
//! path), `annotations/<image id>/` (one binary PNG per object version), `adapters/`, `cache/`.
//! Every file is written with `atomic_write`, masks before the `project.json` that names them.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::objects::{mask_stats, palette_color};
use super::schema::{
    ADAPTERS_DIR, ANNOTATIONS_DIR, CACHE_DIR, IMAGE_EXTENSIONS, IMAGES_DIR, ImageEntry,
    ObjectEntry, PROJECT_FILE, Project, PromptRecord, default_class, now_secs,
};
use crate::fsutil::atomic_write;
use crate::project::import::{is_dicom_file, load_labels, load_rgb};

/// A file an import skipped, with the reason.
pub type SkippedFile = (PathBuf, String);

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
    pub fn add_folder(&mut self, dir: &Path, copy: bool) -> Result<(Vec<u64>, Vec<SkippedFile>)> {
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
                && match p.extension() {
                    Some(e) => {
                        IMAGE_EXTENSIONS.contains(&e.to_string_lossy().to_lowercase().as_str())
                    }
                    // Scanners often write DICOM files without an extension.
                    None => is_dicom_file(p),
                }
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
