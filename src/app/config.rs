//! How the app starts and what it remembers between runs.

use std::path::{Path, PathBuf};

use crate::device::ComputeDevice;
use crate::service::io::WriteJob;
use crate::service::worker::ModelSpec;

use super::SegApp;

/// How the app starts.
pub struct AppConfig {
    pub device: ComputeDevice,
    /// Model to load at start; None = last used, else the default in the model folder.
    pub model: Option<ModelSpec>,
    pub model_dir: PathBuf,
    /// Where settings (recent projects, last model) persist; None = not persisted.
    pub settings_file: Option<PathBuf>,
    /// Where "Open demo project" creates/opens the demo.
    pub demo_dir: PathBuf,
}

impl AppConfig {
    pub fn new(device: ComputeDevice) -> Self {
        let cache = crate::service::cache_dir();
        AppConfig {
            device,
            model: None,
            model_dir: crate::models::models_dir(),
            settings_file: Some(cache.join("app-settings.json")),
            demo_dir: cache.join("projects").join("nuclei-demo"),
        }
    }
}

#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Settings {
    #[serde(default)]
    pub recent: Vec<PathBuf>,
    #[serde(default)]
    pub model: Option<PathBuf>,
    /// Large images by tiles: clicks on an image whose longer side exceeds `tile_above` are
    /// decoded in their tile (as `segadapt segment --tile-above`).
    #[serde(default)]
    pub tiles: crate::predict::tiling::TileConfig,
}

/// Reads the settings file: missing means defaults, silently. A file that does not parse is
/// kept beside as `<name>.unreadable` (the next save would replace it) and unusable tile
/// values fall back to the defaults; either way the message says so, for the user to see.
/// Checked once here, so every use of the tile settings can trust them.
pub fn load_settings(file: Option<&Path>) -> (Settings, Option<String>) {
    let Some(file) = file else {
        return (Settings::default(), None);
    };
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (Settings::default(), None),
        Err(e) => {
            let msg = format!(
                "Settings file {} unreadable ({e}); defaults used",
                file.display()
            );
            return (Settings::default(), Some(msg));
        }
    };
    let mut settings: Settings = match serde_json::from_slice(&bytes) {
        Ok(s) => s,
        Err(e) => {
            let mut keep = file.as_os_str().to_owned();
            keep.push(".unreadable");
            let kept = std::fs::copy(file, &keep).is_ok();
            let msg = format!(
                "Settings file {} is not valid ({e}); defaults used{}",
                file.display(),
                if kept {
                    format!(", the file kept as {}", Path::new(&keep).display())
                } else {
                    String::new()
                }
            );
            return (Settings::default(), Some(msg));
        }
    };
    if let Err(e) = settings.tiles.validate() {
        settings.tiles = Default::default();
        return (
            settings,
            Some(format!(
                "Settings file {}: {e:#}; the default tile settings are used",
                file.display()
            )),
        );
    }
    (settings, None)
}

impl SegApp {
    pub(crate) fn save_settings(&mut self) {
        if let Some(f) = &self.config.settings_file
            && let Ok(b) = serde_json::to_vec_pretty(&self.settings)
        {
            if let Some(d) = f.parent() {
                let _ = std::fs::create_dir_all(d);
            }
            self.service.writer.send(WriteJob::Bytes {
                path: f.clone(),
                bytes: b,
            });
        }
    }
}
