//! `project.json`: the versioned, serde-described project (images, objects, classes,
//! adapters) and the names of the folders a project holds.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::objects::palette_color;

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
pub const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "tif", "tiff", "bmp", "webp", "dcm"];

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

pub(super) fn default_class() -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_newer_versions() {
        let mut p = Project::new("x");
        p.version = VERSION + 1;
        let err = Project::from_json(&p.to_json().unwrap()).unwrap_err();
        assert!(format!("{err:#}").contains("newer"));
    }
}
