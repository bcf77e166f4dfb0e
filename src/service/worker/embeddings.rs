//! Embeddings kept for reuse: a few in memory, all on disk in the project's `cache/` folder
//! (magic, a JSON header line with dims and sizes, then little-endian f32).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use burn::prelude::*;

use crate::fsutil::atomic_write;
use crate::predict::ImageEmbedding;

use super::messages::ImageKey;

/// Embeddings kept in memory (all slots together).
const MEM_CACHE: usize = 8;

/// (slot ident, image sha) → embedding; most recent last.
#[derive(Default)]
pub struct MemoryCache(VecDeque<((String, String), ImageEmbedding)>);

impl MemoryCache {
    pub fn get(&self, ident: &str, sha: &str) -> Option<ImageEmbedding> {
        self.0
            .iter()
            .find(|((i, s), _)| i == ident && s == sha)
            .map(|(_, e)| e.clone())
    }

    pub fn put(&mut self, ident: String, sha: String, emb: ImageEmbedding) {
        self.0.retain(|((i, s), _)| !(i == &ident && s == &sha));
        self.0.push_back(((ident, sha), emb));
        while self.0.len() > MEM_CACHE {
            self.0.pop_front();
        }
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }
}

/// The embedding file of `key` for the model slot `ident` in the cache folder `dir`.
pub fn file_in(dir: &Path, key: &ImageKey, ident: &str) -> PathBuf {
    dir.join(format!("{}_{ident}.emb", short(&key.sha256)))
}

pub fn short(s: &str) -> &str {
    &s[..16.min(s.len())]
}

const EMB_MAGIC: &[u8; 8] = b"SEGEMB1\n";

pub fn write_embedding(path: &Path, e: &ImageEmbedding) -> anyhow::Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    let dims = e.embedding.dims();
    let data: Vec<f32> = e
        .embedding
        .clone()
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let header = serde_json::json!({ "dims": dims, "input_size": e.input_size, "original_size": e.original_size });
    let mut bytes = Vec::with_capacity(data.len() * 4 + 256);
    bytes.extend_from_slice(EMB_MAGIC);
    bytes.extend_from_slice(header.to_string().as_bytes());
    bytes.push(b'\n');
    for v in data {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    atomic_write(path, &bytes)
}

pub fn read_embedding(path: &Path, device: &Device) -> Option<ImageEmbedding> {
    let bytes = std::fs::read(path).ok()?;
    let rest = bytes.strip_prefix(EMB_MAGIC)?;
    let nl = rest.iter().position(|&b| b == b'\n')?;
    let header: serde_json::Value = serde_json::from_slice(&rest[..nl]).ok()?;
    let dims: Vec<usize> = serde_json::from_value(header.get("dims")?.clone()).ok()?;
    let input_size: [usize; 2] = serde_json::from_value(header.get("input_size")?.clone()).ok()?;
    let original_size: [usize; 2] =
        serde_json::from_value(header.get("original_size")?.clone()).ok()?;
    let body = &rest[nl + 1..];
    let n: usize = dims.iter().product();
    if dims.len() != 4 || body.len() != n * 4 {
        return None;
    }
    let data: Vec<f32> = body
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let embedding = Tensor::<4>::from_data(TensorData::new(data, dims), device);
    Some(ImageEmbedding {
        embedding,
        input_size,
        original_size,
    })
}
