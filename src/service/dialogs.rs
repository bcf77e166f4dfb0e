//! Native file dialogs, run as jobs: they block their own thread, never the UI's.

use std::path::{Path, PathBuf};

use super::context::JobContext;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DialogKind {
    OpenProject,
    NewProject,
    AddImages,
    AddFolder,
    PickModel,
    ExportDir,
}

/// The paths the user picked (none when the dialog was closed).
pub struct Picked {
    pub kind: DialogKind,
    pub paths: Vec<PathBuf>,
}

/// The job that shows the dialog `kind` (starting in `start`, or `model_dir` for checkpoints).
pub fn pick(
    kind: DialogKind,
    start: Option<PathBuf>,
    model_dir: PathBuf,
) -> impl FnOnce(&JobContext) -> anyhow::Result<Picked> + Send + 'static {
    move |_| {
        Ok(Picked {
            kind,
            paths: show(kind, start.as_deref(), &model_dir),
        })
    }
}

fn show(kind: DialogKind, start: Option<&Path>, model_dir: &Path) -> Vec<PathBuf> {
    let mut d = rfd::FileDialog::new();
    if let Some(s) = start {
        d = d.set_directory(s);
    }
    match kind {
        DialogKind::OpenProject => d
            .add_filter("segadapt project", &["json"])
            .set_title("Open project (project.json)")
            .pick_file()
            .into_iter()
            .collect(),
        DialogKind::NewProject => d
            .set_title("Folder for the new project")
            .pick_folder()
            .into_iter()
            .collect(),
        DialogKind::AddImages => d
            .add_filter("Images", crate::project::project::IMAGE_EXTENSIONS)
            .set_title("Add images")
            .pick_files()
            .unwrap_or_default(),
        DialogKind::AddFolder => d
            .set_title("Add a folder of images")
            .pick_folder()
            .into_iter()
            .collect(),
        DialogKind::PickModel => rfd::FileDialog::new()
            .set_directory(model_dir)
            .add_filter("SAM checkpoint", &["pt", "pth"])
            .set_title("Choose a SAM checkpoint")
            .pick_file()
            .into_iter()
            .collect(),
        DialogKind::ExportDir => d
            .set_title("Export to folder")
            .pick_folder()
            .into_iter()
            .collect(),
    }
}
