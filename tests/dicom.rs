//! DICOM import against pydicom: the files are pydicom's own test files and the expected 8-bit
//! images are pydicom + numpy's (tools/make_dicom_ref.py), not this crate's output.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use segadapt::eval::list_pairs;
use segadapt::project::import::{
    ImportOptions, Limits, Window, is_dicom_file, load_rgb, load_rgb_with, slice_count,
};
use segadapt::project::project::list_images;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/dicom")
        .join(name)
}

/// The expected image as RGB bytes (gray references are copied to R, G, B).
fn reference(name: &str) -> (u32, u32, Vec<u8>) {
    let img = image::open(fixture(name)).unwrap();
    let rgb = img.to_rgb8();
    (rgb.width(), rgb.height(), rgb.into_raw())
}

/// (pixels that differ, largest difference) between the import of `dcm` and `png`.
fn compare(dcm: &Path, png: &str) -> (usize, u8) {
    let got = load_rgb(dcm).unwrap_or_else(|e| panic!("{}: {e:#}", dcm.display()));
    compare_img(&got, png)
}

fn compare_img(got: &image::RgbImage, png: &str) -> (usize, u8) {
    let (w, h, want) = reference(png);
    assert_eq!((got.width(), got.height()), (w, h), "{png}: size");
    let diffs: Vec<u8> = got
        .as_raw()
        .iter()
        .zip(&want)
        .map(|(a, b)| a.abs_diff(*b))
        .collect();
    (
        diffs.iter().filter(|&&d| d > 0).count(),
        diffs.into_iter().max().unwrap_or(0),
    )
}

#[test]
fn dicom_images_match_pydicom() {
    // Uncompressed, deflated, RLE and big-endian files, Modality LUT then the percentile
    // rule, 8-bit gray as is, 32-bit gray, MONOCHROME1 and multi-frame (frame 0): the same
    // numbers as pydicom, exactly.
    for name in [
        "CT_small",
        "MR_small",
        "MR_small_RLE",
        "MR_small_bigendian",
        "MR_small_mono1",
        "rtdose",
        "SC_rgb_small_odd",
        "SC_rgb_rle",
        "image_dfl",
    ] {
        let (n, max) = compare(&fixture(&format!("{name}.dcm")), &format!("{name}.png"));
        println!("{name}: {n} differing samples, max difference {max}");
        assert_eq!((n, max), (0, 0), "{name}");
    }
    // JPEG baseline: two decoders (jpeg-decoder here, libjpeg through Pillow in pydicom)
    // may differ by rounding in the IDCT and colour conversion; a small bound is stated.
    let (n, max) = compare(&fixture("SC_rgb_jpeg_dcmtk.dcm"), "SC_rgb_jpeg_dcmtk.png");
    println!("SC_rgb_jpeg_dcmtk: {n} of 30000 samples differ, max difference {max}");
    assert!(max <= 2, "JPEG decode differs from pydicom by {max}");
    // JPEG Lossless of the same picture as SC_rgb_rle: identical pixels.
    let lossless = compare(&fixture("SC_rgb_jpeg_gdcm.dcm"), "SC_rgb_rle.png");
    assert_eq!(lossless, (0, 0), "JPEG Lossless");
}

#[test]
fn same_window_rule_as_other_formats_in_modality_units() {
    // MR_small carries Window Center 600 / Width 1600; like every >8-bit image it gets the
    // percentile rule instead (MR_small.png), not the file's window.
    let mr = fixture("MR_small.dcm");
    let file_window = ImportOptions {
        window: Some(Window::level_width(600.0, 1600.0)),
        ..Default::default()
    };
    assert_ne!(
        load_rgb(&mr).unwrap(),
        load_rgb_with(&mr, &file_window).unwrap()
    );
    // A user window is in modality units: CT_small in HU (intercept -1024), level 40 width
    // 400, as pydicom + numpy compute it.
    let ct = ImportOptions {
        window: Some(Window::level_width(40.0, 400.0)),
        ..Default::default()
    };
    let got = load_rgb_with(&fixture("CT_small.dcm"), &ct).unwrap();
    assert_eq!(compare_img(&got, "CT_small_window.png"), (0, 0));
}

#[test]
fn dicom_without_extension_is_found_by_its_marker() {
    let d = tempfile::tempdir().unwrap();
    let images = d.path().join("images");
    let masks = d.path().join("masks");
    std::fs::create_dir_all(&images).unwrap();
    std::fs::create_dir_all(&masks).unwrap();
    let noext = images.join("IM0001");
    std::fs::copy(fixture("MR_small.dcm"), &noext).unwrap();
    std::fs::copy(fixture("CT_small.dcm"), images.join("ct.dcm")).unwrap();
    std::fs::write(images.join("README"), b"not an image").unwrap();
    assert!(is_dicom_file(&noext));
    assert!(!is_dicom_file(&images.join("README")));
    assert_eq!(compare(&noext, "MR_small.png"), (0, 0));
    assert_eq!(slice_count(&noext, Default::default()).unwrap(), 1);

    // Project folders and data dirs (eval, training) list both.
    let listed = list_images(&images).unwrap();
    assert_eq!(listed, vec![noext.clone(), images.join("ct.dcm")]);
    image::GrayImage::new(64, 64)
        .save(masks.join("IM0001.png"))
        .unwrap();
    image::GrayImage::new(128, 128)
        .save(masks.join("ct.png"))
        .unwrap();
    let pairs = list_pairs(d.path()).unwrap();
    assert_eq!(pairs.len(), 2);
    assert_eq!(pairs[0], (noext, masks.join("IM0001.png")));
}

#[test]
fn multi_frame_file_gives_frame_zero_and_one_slice() {
    let p = fixture("rtdose.dcm");
    assert_eq!(slice_count(&p, Default::default()).unwrap(), 1);
    let opts = ImportOptions {
        slice: 1,
        ..Default::default()
    };
    let e = format!("{:#}", load_rgb_with(&p, &opts).unwrap_err());
    assert!(e.contains("slice 1 does not exist"), "{e}");
}

#[test]
fn bad_dicom_files_give_clear_errors() {
    let d = tempfile::tempdir().unwrap();
    let cut = d.path().join("cut_header.dcm");
    let bytes = std::fs::read(fixture("MR_small.dcm")).unwrap();
    std::fs::write(&cut, &bytes[..300]).unwrap();
    let fake = d.path().join("fake.dcm");
    std::fs::write(&fake, b"just some text, not DICOM").unwrap();
    let cases: [(PathBuf, &[&str]); 5] = [
        (fixture("MR_truncated.dcm"), &["truncated"]),
        (cut, &["truncated"]),
        (fixture("rtplan.dcm"), &["without an image", "RTPLAN"]),
        (
            fixture("MR_small_jp2klossless.dcm"),
            &["JPEG 2000", "1.2.840.10008.1.2.4.90", "not supported"],
        ),
        (fake, &["not a DICOM"]),
    ];
    for (p, words) in cases {
        let e = format!("{:#}", load_rgb(&p).unwrap_err());
        println!("{}: {e}", p.file_name().unwrap().to_string_lossy());
        for w in words {
            assert!(e.contains(w), "{}: '{e}' lacks '{w}'", p.display());
        }
        assert!(!e.contains("decoder failed"), "a panic, not an error: {e}");
    }
    // Every file cut anywhere (header, data set, compressed pixel data) is an error, not a
    // panic and not a picture.
    for name in ["MR_small.dcm", "MR_small_RLE.dcm", "SC_rgb_jpeg_dcmtk.dcm"] {
        let bytes = std::fs::read(fixture(name)).unwrap();
        let cut = d.path().join(format!("cut_{name}"));
        for len in (0..bytes.len()).step_by(97) {
            std::fs::write(&cut, &bytes[..len]).unwrap();
            let e = format!(
                "{:#}",
                load_rgb(&cut).expect_err(&format!("{name}[..{len}]"))
            );
            assert!(
                !e.contains("decoder failed"),
                "{name}[..{len}]: a panic: {e}"
            );
        }
    }
    // The size limit applies before the pixel data are read.
    let small = ImportOptions {
        limits: Limits {
            max_pixels: 1000,
            max_bytes: 1 << 20,
        },
        ..Default::default()
    };
    let e = format!(
        "{:#}",
        load_rgb_with(&fixture("CT_small.dcm"), &small).unwrap_err()
    );
    assert!(e.contains("larger than the 1000-pixel limit"), "{e}");
}

/// The CLI binary; SEGADAPT_BIN for worktrees sharing one target folder (each build there
/// replaces the others' `segadapt`).
fn segadapt(args: &[&str]) -> (bool, String) {
    let bin = std::env::var_os("SEGADAPT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_segadapt")));
    let o = Command::new(bin)
        .args(["--device", "cpu"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run segadapt");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), text)
}

#[test]
fn cli_segments_and_predicts_dicom_files() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sam_vit_tiny.pth");
    let model = model.to_str().unwrap();
    let d = tempfile::tempdir().unwrap();
    let input = d.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let noext = input.join("IM0001");
    std::fs::copy(fixture("MR_small.dcm"), &noext).unwrap();
    std::fs::copy(fixture("CT_small.dcm"), input.join("ct.dcm")).unwrap();
    for (img, size) in [(&noext, 64), (&input.join("ct.dcm"), 128)] {
        let out = d.path().join("mask.png");
        let (ok, t) = segadapt(&[
            "segment",
            "--model",
            model,
            "--image",
            img.to_str().unwrap(),
            "--box",
            "10,10,40,40",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(ok, "{}: {t}", img.display());
        let m = image::open(&out).unwrap();
        assert_eq!((m.width(), m.height()), (size, size));
    }
    // A folder run (segment everything) takes both, the extensionless one by its marker.
    let out = d.path().join("out");
    let (ok, t) = segadapt(&[
        "predict",
        "--model",
        model,
        "--input",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--points-per-side",
        "2",
    ]);
    assert!(ok, "{t}");
    assert!(t.contains("2 images"), "{t}");
    for stem in ["IM0001", "ct"] {
        assert!(
            out.join(format!("{stem}_labels.png")).is_file(),
            "{stem}: {t}"
        );
    }
}
