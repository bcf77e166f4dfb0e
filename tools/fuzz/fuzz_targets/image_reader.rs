//! Any bytes as an image file (PNG/JPEG/TIFF/BMP/WebP/NIfTI are recognised by content):
//! reading must return Ok or Err, never panic, hang or allocate beyond the limits.
#![no_main]
use libfuzzer_sys::fuzz_target;
use segadapt_fuzz::project::import::{Axis, ImportOptions, Limits, Window, load_rgb_with, slice_count};

fuzz_target!(|data: &[u8]| {
    segadapt_fuzz::init();
    if data.is_empty() {
        return;
    }
    // The first byte picks the file name (NIfTI .gz detection uses it), slice and window.
    let sel = data[0];
    let name = ["img", "img.nii", "img.nii.gz", "img.tif"][(sel & 3) as usize];
    let (_dir, path) = segadapt_fuzz::temp_file(name, &data[1..]);
    let limits = Limits {
        max_pixels: 1 << 20,
        max_bytes: 64 << 20,
    };
    let axis = [Axis::X, Axis::Y, Axis::Z, Axis::Z][((sel >> 2) & 3) as usize];
    let window = if sel & 0x10 != 0 {
        Some(Window::Percentile { low: 1.0, high: 99.0 })
    } else {
        None
    };
    let slice = ((sel >> 5) & 3) as usize;
    let opts = ImportOptions {
        slice,
        axis,
        window,
        limits,
    };
    if let Ok(img) = load_rgb_with(&path, &opts) {
        assert!(img.width() > 0 && img.height() > 0);
        assert!(img.width() as u64 * img.height() as u64 <= limits.max_pixels);
    }
    let _ = slice_count(&path, axis);
});
