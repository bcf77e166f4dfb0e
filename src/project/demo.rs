//! The bundled nuclei demo: four 256×256 crops of a real fluorescence image (the first three
//! with 12 ground-truth nuclei each, so Adapt can run right away; the fourth left to annotate).

use std::path::Path;

use anyhow::Result;

use super::folder::OpenProject;
use super::objects::palette_color;
use super::schema::{CACHE_DIR, ClassEntry, PROJECT_FILE};
use crate::fsutil::atomic_write;

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

/// Creates the demo project in `root` (which must not hold a project yet).
pub fn create_demo(root: &Path) -> Result<OpenProject> {
    let mut p = OpenProject::create(root, "Nuclei demo")?;
    p.project.classes = vec![ClassEntry {
        name: "nucleus".into(),
        color: palette_color(0),
    }];
    let staging = root.join(CACHE_DIR).join("demo-src");
    std::fs::create_dir_all(&staging)?;
    for (name, bytes) in IMAGES {
        let src = staging.join(name);
        atomic_write(&src, bytes)?;
        let id = p.add_image(&src, true)?;
        if let Some((_, lab)) = LABELS.iter().find(|(n, _)| *n == name) {
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
