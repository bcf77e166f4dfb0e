//! Background file I/O: an ordered writer (masks before the project file that names them,
//! every write atomic) and a loader for images, masks and thumbnails.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender};
use std::time::Instant;

use image::RgbImage;

use super::thread::Waker;
use crate::fsutil::atomic_write;
use crate::project::project::read_mask_file;

pub enum WriteJob {
    Mask {
        path: PathBuf,
        mask: Arc<Vec<bool>>,
        width: usize,
        height: usize,
    },
    Bytes {
        path: PathBuf,
        bytes: Vec<u8>,
    },
    /// Answers once everything queued before it is on disk.
    Flush(Sender<()>),
}

pub struct WriteError {
    pub path: PathBuf,
    pub error: String,
}

/// The writer thread. Jobs are done in order, so a mask is on disk before the
/// `project.json` queued after it.
pub struct Writer {
    tx: Sender<WriteJob>,
    pub errors: Receiver<WriteError>,
}

impl Writer {
    pub fn spawn(waker: Waker) -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<WriteJob>();
        let (etx, errors) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("writer".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    let (path, res) = match job {
                        WriteJob::Flush(done) => {
                            let _ = done.send(());
                            continue;
                        }
                        WriteJob::Mask {
                            path,
                            mask,
                            width,
                            height,
                        } => {
                            let res = (|| {
                                if let Some(d) = path.parent() {
                                    std::fs::create_dir_all(d)?;
                                }
                                crate::project::export::write_mask_png(&path, &mask, width, height)
                            })();
                            (path, res)
                        }
                        WriteJob::Bytes { path, bytes } => {
                            let res = atomic_write(&path, &bytes);
                            (path, res)
                        }
                    };
                    if let Err(e) = res {
                        let _ = etx.send(WriteError {
                            path,
                            error: format!("{e:#}"),
                        });
                        waker.wake();
                    }
                }
            })
            .expect("spawn writer thread");
        Writer { tx, errors }
    }

    pub fn send(&self, job: WriteJob) {
        let _ = self.tx.send(job);
    }

    /// A receiver that fires when all writes queued so far are done.
    pub fn flush(&self) -> Receiver<()> {
        let (tx, rx) = std::sync::mpsc::channel();
        let _ = self.tx.send(WriteJob::Flush(tx));
        rx
    }

    /// Blocks until queued writes are on disk (used on exit and by tests).
    pub fn flush_blocking(&self) {
        let _ = self
            .flush()
            .recv_timeout(std::time::Duration::from_secs(30));
    }

    pub fn sender(&self) -> Sender<WriteJob> {
        self.tx.clone()
    }
}

pub enum LoadJob {
    Image {
        id: u64,
        path: PathBuf,
        masks: Vec<(u64, PathBuf)>,
    },
    Thumb {
        id: u64,
        path: PathBuf,
    },
}

/// A mask file as read: the mask, or why it could not be read.
pub type MaskRead = Result<Arc<Vec<bool>>, String>;

pub enum Loaded {
    Image {
        id: u64,
        rgb: Arc<RgbImage>,
        /// Display copy (at most `MAX_TEXTURE` per side).
        display: egui::ColorImage,
        masks: Vec<(u64, MaskRead)>,
        ms: f64,
    },
    Thumb {
        id: u64,
        image: egui::ColorImage,
    },
    Error {
        id: u64,
        error: String,
    },
}

/// Largest texture side used for display (wgpu's default limit is 8192).
pub const MAX_TEXTURE: u32 = 4096;
const THUMB: u32 = 72;

pub fn to_color_image(rgb: &RgbImage, max_side: u32) -> egui::ColorImage {
    let (w, h) = rgb.dimensions();
    let img = if w.max(h) > max_side {
        let s = max_side as f64 / w.max(h) as f64;
        let (nw, nh) = (
            ((w as f64 * s).round() as u32).max(1),
            ((h as f64 * s).round() as u32).max(1),
        );
        std::borrow::Cow::Owned(image::imageops::resize(
            rgb,
            nw,
            nh,
            image::imageops::FilterType::Triangle,
        ))
    } else {
        std::borrow::Cow::Borrowed(rgb)
    };
    egui::ColorImage::from_rgb([img.width() as usize, img.height() as usize], img.as_raw())
}

pub struct Loader {
    tx: Sender<LoadJob>,
    pub rx: Receiver<Loaded>,
}

impl Loader {
    pub fn spawn(waker: Waker) -> Self {
        let (tx, jrx) = std::sync::mpsc::channel::<LoadJob>();
        let (etx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("loader".into())
            .spawn(move || {
                // Image loads (the user waits for them) go before thumbnails.
                let mut queue: std::collections::VecDeque<LoadJob> = Default::default();
                loop {
                    if queue.is_empty() {
                        match jrx.recv() {
                            Ok(j) => queue.push_back(j),
                            Err(_) => return,
                        }
                    }
                    while let Ok(j) = jrx.try_recv() {
                        match j {
                            LoadJob::Image { .. } => queue.push_front(j),
                            LoadJob::Thumb { .. } => queue.push_back(j),
                        }
                    }
                    let Some(job) = queue.pop_front() else {
                        continue;
                    };
                    let out =
                        std::panic::catch_unwind(|| load(job)).unwrap_or_else(|_| Loaded::Error {
                            id: 0,
                            error: "image decoder failed".into(),
                        });
                    let _ = etx.send(out);
                    waker.wake();
                }
            })
            .expect("spawn loader thread");
        Loader { tx, rx }
    }

    pub fn send(&self, job: LoadJob) {
        let _ = self.tx.send(job);
    }
}

fn load(job: LoadJob) -> Loaded {
    match job {
        LoadJob::Image { id, path, masks } => {
            let t = Instant::now();
            match crate::project::import::load_rgb(&path) {
                Ok(rgb) => {
                    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
                    let display = to_color_image(&rgb, MAX_TEXTURE);
                    let masks = masks
                        .into_iter()
                        .map(|(oid, p)| {
                            (
                                oid,
                                read_mask_file(&p, w, h)
                                    .map(Arc::new)
                                    .map_err(|e| format!("{e:#}")),
                            )
                        })
                        .collect();
                    Loaded::Image {
                        id,
                        rgb: Arc::new(rgb),
                        display,
                        masks,
                        ms: t.elapsed().as_secs_f64() * 1e3,
                    }
                }
                Err(e) => Loaded::Error {
                    id,
                    error: format!("{e:#}"),
                },
            }
        }
        LoadJob::Thumb { id, path } => match crate::project::import::load_rgb(&path) {
            Ok(rgb) => {
                let (w, h) = rgb.dimensions();
                let s = THUMB as f64 / w.max(h) as f64;
                let (nw, nh) = (
                    ((w as f64 * s).round() as u32).max(1),
                    ((h as f64 * s).round() as u32).max(1),
                );
                let small = image::imageops::thumbnail(&rgb, nw, nh);
                Loaded::Thumb {
                    id,
                    image: egui::ColorImage::from_rgb([nw as usize, nh as usize], small.as_raw()),
                }
            }
            Err(e) => Loaded::Error {
                id,
                error: format!("{e:#}"),
            },
        },
    }
}
