//! Project data: image import and mask export.

pub mod coco;
pub mod coco_polygon;
pub mod demo;
pub mod export;
pub mod folder;
pub mod import;
pub mod objects;
pub mod project;
pub mod schema;
