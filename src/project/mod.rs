//! Project data: image import and mask export.

pub mod coco;
pub mod export;
pub mod import;
pub mod project;
