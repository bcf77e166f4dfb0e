//! The project folder: `project.json` (versioned serde), `images/` (copied images; others are
//! referenced by absolute path), `annotations/<image id>/` (one binary PNG per object version),
//! `adapters/` (trained adapters + model cards), `cache/` (image embeddings), `export/`.
//!
//! Crash safety: every file is written with [`atomic_write`](crate::fsutil::atomic_write); a mask PNG is always written
//! before the `project.json` that references it, and an object's mask file is never
//! overwritten (an edit writes a new version), so the project on disk is consistent at every
//! instant. Files no longer referenced are removed by [`OpenProject::collect_garbage`] when a
//! project is opened.
//!
//! The code is split by responsibility, and this file re-exports it so that
//! `project::project::…` names everything: `schema` (`project.json` and its entries),
//! `folder` (the open project folder: images, masks, garbage collection), `objects` (an
//! object's colour, area and box) and `demo` (the bundled nuclei demo).
#![allow(clippy::module_inception)]

pub use super::demo::{self, create_demo, open_or_create_demo};
pub use super::folder::*;
pub use super::objects::*;
pub use super::schema::*;

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
}
