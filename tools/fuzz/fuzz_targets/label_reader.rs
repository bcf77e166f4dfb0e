//! Any bytes as a label image.
#![no_main]
use libfuzzer_sys::fuzz_target;
use segadapt_fuzz::project::import::{ImportOptions, Limits, load_labels_with};

fuzz_target!(|data: &[u8]| {
    segadapt_fuzz::init();
    if data.is_empty() {
        return;
    }
    let name = ["mask.png", "mask.nii", "mask.nii.gz", "mask.tif"][(data[0] & 3) as usize];
    let (_dir, path) = segadapt_fuzz::temp_file(name, &data[1..]);
    let opts = ImportOptions {
        limits: Limits {
            max_pixels: 1 << 20,
            max_bytes: 64 << 20,
        },
        ..Default::default()
    };
    if let Ok(l) = load_labels_with(&path, &opts) {
        assert_eq!(l.labels.len(), l.width * l.height);
        let _ = l.ids();
    }
});
