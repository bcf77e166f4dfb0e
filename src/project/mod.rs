//! Project data: image import and mask export.

pub mod export;
pub mod import;
pub mod coco;
pub mod project;
