//! Any bytes as a checkpoint file given to `load_sam`: must return a CheckpointError, never
//! panic. Seed it with tests/fixtures/*.pth (see tools/fuzz/README.md).
#![no_main]
use burn::prelude::*;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    segadapt_fuzz::init();
    let (_dir, path) = segadapt_fuzz::temp_file("model.pth", data);
    let device = Device::flex();
    let _ = segadapt_fuzz::sam::load_sam(&path, None, &device);
});
