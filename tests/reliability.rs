//! Reliability battery (issue 7): every bad input gives a clear error and no panic, and
//! nothing already saved is lost. Checkpoints, adapters, images and label masks (incl. TIFF
//! stacks, float TIFF and NIfTI), the CLI's error paths, disk full, read-only folders, and
//! kill -9 during saves. Model downloads are in `reliability_models.rs`.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use segadapt::fsutil::{atomic_write, atomic_write_with, is_temp_file, remove_stale_temps};
use segadapt::project::import::{
    Axis, ImportOptions, Limits, Samples, Window, load_labels, load_labels_with, load_plane,
    load_rgb, load_rgb_with, slice_count,
};
use segadapt::sam::{CheckpointError, load_sam};

// ------------------------------------------------------------------------------------------
// helpers

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

fn err_text<T>(r: anyhow::Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => format!("{e:#}"),
    }
}

fn assert_msg(msg: &str, needles: &[&str]) {
    for n in needles {
        assert!(
            msg.to_lowercase().contains(&n.to_lowercase()),
            "message {msg:?} lacks {n:?}"
        );
    }
}

/// `load_sam` must fail with an error, not panic; returns the message.
fn ckpt_err(path: &Path) -> (String, CheckpointError) {
    let p = path.to_path_buf();
    let r = std::panic::catch_unwind(move || load_sam(&p, None, &cpu()).map(|_| ()));
    match r {
        Err(_) => panic!("load_sam panicked on {}", path.display()),
        Ok(Ok(())) => panic!("load_sam accepted {}", path.display()),
        Ok(Err(e)) => (e.to_string(), e),
    }
}

fn write_png_gray16(path: &Path, w: u32, h: u32, f: impl Fn(u32, u32) -> u16) {
    image::ImageBuffer::<image::Luma<u16>, _>::from_fn(w, h, |x, y| image::Luma([f(x, y)]))
        .save(path)
        .unwrap();
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut c = flate2::Crc::new();
    c.update(bytes);
    c.sum()
}

/// A PNG that declares `w`×`h` but carries no pixel data.
fn png_header_only(w: u32, h: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    out.extend_from_slice(&13u32.to_be_bytes());
    out.extend_from_slice(&ihdr);
    out.extend_from_slice(&crc32(&ihdr).to_be_bytes());
    // A short IDAT so decoders read the header; the pixel data is missing.
    let idat = b"IDAT\x78\x9c\x03\x00\x00\x00\x00\x01";
    out.extend_from_slice(&((idat.len() - 4) as u32).to_be_bytes());
    out.extend_from_slice(idat);
    out.extend_from_slice(&crc32(idat).to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(b"IEND");
    out.extend_from_slice(&crc32(b"IEND").to_be_bytes());
    out
}

/// TIFF writer for the tests (tiff crate encoder), one page per entry.
fn write_tiff_pages<C: tiff::encoder::colortype::ColorType>(
    path: &Path,
    w: u32,
    h: u32,
    pages: &[Vec<C::Inner>],
) where
    [C::Inner]: tiff::encoder::TiffValue,
{
    let f = std::fs::File::create(path).unwrap();
    let mut enc = tiff::encoder::TiffEncoder::new(f).unwrap();
    for p in pages {
        enc.write_image::<C>(w, h, p).unwrap();
    }
}

/// A NIfTI-1 single-file header (348 bytes) + 4-byte extension flag.
fn nifti_header(dims: &[u16], datatype: i16, bitpix: i16, slope: f32, inter: f32) -> Vec<u8> {
    let mut h = vec![0u8; 352];
    h[0..4].copy_from_slice(&348i32.to_le_bytes());
    let mut dim = [1u16; 8];
    dim[0] = dims.len() as u16;
    for (i, d) in dims.iter().enumerate() {
        dim[i + 1] = *d;
    }
    for (i, d) in dim.iter().enumerate() {
        h[40 + 2 * i..42 + 2 * i].copy_from_slice(&d.to_le_bytes());
    }
    h[70..72].copy_from_slice(&datatype.to_le_bytes());
    h[72..74].copy_from_slice(&bitpix.to_le_bytes());
    for i in 0..8 {
        h[76 + 4 * i..80 + 4 * i].copy_from_slice(&1f32.to_le_bytes());
    }
    h[108..112].copy_from_slice(&352f32.to_le_bytes()); // vox_offset
    h[112..116].copy_from_slice(&slope.to_le_bytes());
    h[116..120].copy_from_slice(&inter.to_le_bytes());
    h[344..348].copy_from_slice(b"n+1\0");
    h
}

/// An int16 volume nx×ny×nz with value = x + 10 y + 100 z.
fn nifti_i16_volume(nx: u16, ny: u16, nz: u16, slope: f32, inter: f32) -> Vec<u8> {
    let mut b = nifti_header(&[nx, ny, nz], 4, 16, slope, inter);
    for z in 0..nz {
        for y in 0..ny {
            for x in 0..nx {
                b.extend_from_slice(
                    &((x as i16) + 10 * (y as i16) + 100 * (z as i16)).to_le_bytes(),
                );
            }
        }
    }
    b
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// Rewrites a PyTorch zip checkpoint, replacing same-length byte strings in `data.pkl`
/// (keeps the pickle valid): a real PyTorch file of another model.
fn rewrite_pth(src: &Path, dst: &Path, replace: &[(&str, &str)]) {
    let mut za = zip::ZipArchive::new(std::fs::File::open(src).unwrap()).unwrap();
    let mut zw = zip::ZipWriter::new(std::fs::File::create(dst).unwrap());
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for i in 0..za.len() {
        let mut f = za.by_index(i).unwrap();
        let name = f.name().to_string();
        let mut data = Vec::new();
        f.read_to_end(&mut data).unwrap();
        if name.ends_with("data.pkl") {
            for (a, b) in replace {
                assert_eq!(a.len(), b.len());
                let mut i = 0;
                while let Some(pos) = data[i..].windows(a.len()).position(|w| w == a.as_bytes()) {
                    data[i + pos..i + pos + a.len()].copy_from_slice(b.as_bytes());
                    i += pos + a.len();
                }
            }
        }
        zw.start_file(name, opts).unwrap();
        zw.write_all(&data).unwrap();
    }
    zw.finish().unwrap();
}

/// A small tmpfs (root only); `None` where mounting is not allowed.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tmp();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        ok.then_some(Tmpfs { dir })
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
    fn remount_ro(&self) -> bool {
        Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(self.path())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

fn cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_segadapt"))
        .arg("--device")
        .arg("cpu")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run segadapt");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// The CLI must fail (exit ≠ 0, no panic) with a message containing all `needles`.
fn cli_fails(args: &[&str], needles: &[&str]) -> String {
    let (code, _out, err) = cli(args);
    assert_ne!(code, 0, "segadapt {args:?} succeeded; stderr: {err}");
    assert!(
        !err.contains("panicked"),
        "segadapt {args:?} panicked: {err}"
    );
    assert_msg(&err, needles);
    println!(
        "segadapt {} → exit {code}: {}",
        args.join(" "),
        err.trim().lines().last().unwrap_or("")
    );
    err
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

// ------------------------------------------------------------------------------------------
// checkpoints

#[test]
fn checkpoint_missing_or_not_a_file() {
    let d = tmp();
    let (msg, e) = ckpt_err(&d.path().join("nope.pth"));
    assert!(matches!(e, CheckpointError::NotFound { .. }), "{msg}");
    assert_msg(&msg, &["file not found"]);
    let (msg, _) = ckpt_err(d.path());
    println!("folder as checkpoint: {msg}");
}

#[test]
fn checkpoint_truncated_copies_are_refused() {
    let d = tmp();
    for name in ["sam_vit_tiny.pth", "mobilesam_tiny.pth"] {
        let full = std::fs::read(fixture(name)).unwrap();
        let n = full.len();
        for cut in [0, 1, 22, 100, 4096, n / 4, n / 2, n - 4096, n - 23, n - 1] {
            let p = d.path().join(format!("cut_{cut}_{name}"));
            std::fs::write(&p, &full[..cut]).unwrap();
            let (msg, e) = ckpt_err(&p);
            assert!(
                matches!(
                    e,
                    CheckpointError::NotPytorch { .. }
                        | CheckpointError::Mismatch { .. }
                        | CheckpointError::NotSam { .. }
                ),
                "{msg}"
            );
            assert!(
                msg.contains(&p.display().to_string()),
                "message names the file: {msg}"
            );
            if cut == n / 2 {
                println!("{name} truncated to {cut}/{n} bytes: {msg}");
            }
        }
    }
}

#[test]
fn checkpoint_random_bytes_and_foreign_formats() {
    let d = tmp();
    let mut rng = 0x1234_5678_u64;
    let random: Vec<u8> = (0..100_000)
        .map(|_| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng as u8
        })
        .collect();
    let p = d.path().join("random.pth");
    std::fs::write(&p, &random).unwrap();
    let (msg, e) = ckpt_err(&p);
    assert!(matches!(e, CheckpointError::NotPytorch { .. }), "{msg}");
    println!("random bytes: {msg}");

    // A zip that is not a torch file.
    let p = d.path().join("notes.pth");
    {
        let mut zw = zip::ZipWriter::new(std::fs::File::create(&p).unwrap());
        zw.start_file("readme.txt", zip::write::SimpleFileOptions::default())
            .unwrap();
        zw.write_all(b"hello").unwrap();
        zw.finish().unwrap();
    }
    let (msg, e) = ckpt_err(&p);
    assert!(
        matches!(
            e,
            CheckpointError::NotPytorch { .. } | CheckpointError::NotSam { .. }
        ),
        "{msg}"
    );
    println!("plain zip: {msg}");

    // A safetensors file / an image / a text file given as the model.
    for (name, bytes) in [
        (
            "model.safetensors.pth",
            std::fs::read(fixture("sam_vit_tiny_ref.safetensors")).unwrap(),
        ),
        (
            "image.pth",
            std::fs::read(fixture("rgb_100x75.png")).unwrap(),
        ),
        (
            "config.pth",
            std::fs::read(fixture("sam_vit_tiny.json")).unwrap(),
        ),
    ] {
        let p = d.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        let (msg, e) = ckpt_err(&p);
        assert!(
            matches!(
                e,
                CheckpointError::NotPytorch { .. } | CheckpointError::NotSam { .. }
            ),
            "{msg}"
        );
        println!("{name}: {msg}");
    }
}

#[test]
fn checkpoint_of_another_model_is_refused() {
    let d = tmp();
    // Same file format, foreign key names: a PyTorch checkpoint of "another model".
    let p = d.path().join("resnet_like.pth");
    rewrite_pth(
        &fixture("sam_vit_tiny.pth"),
        &p,
        &[
            ("mask_decoder", "classifier00"),
            ("image_encoder", "backbone_conv"),
            ("prompt_encoder", "neck_adapter00"),
        ],
    );
    let (msg, e) = ckpt_err(&p);
    assert!(matches!(e, CheckpointError::NotSam { .. }), "{msg}");
    assert_msg(&msg, &["not a SAM checkpoint"]);
    println!("foreign model: {msg}");

    // A SAM checkpoint with one tensor renamed (incomplete / other variant).
    let p = d.path().join("one_missing.pth");
    rewrite_pth(
        &fixture("sam_vit_tiny.pth"),
        &p,
        &[("output_hypernetworks_mlps", "output_hypernetworks_mlpz")],
    );
    let (msg, e) = ckpt_err(&p);
    assert!(
        matches!(
            e,
            CheckpointError::Mismatch { .. } | CheckpointError::NotSam { .. }
        ),
        "{msg}"
    );
    println!("one tensor renamed: {msg}");

    // Right file, wrong architecture forced by the caller.
    let r = load_sam(
        &fixture("mobilesam_tiny.pth"),
        Some(fixture_config("sam_vit_tiny.json")),
        &cpu(),
    );
    let msg = r
        .expect_err("a TinyViT checkpoint must not load into a ViT config")
        .to_string();
    assert_msg(&msg, &["do not fit"]);
    println!("wrong config: {msg}");
}

#[test]
fn checkpoint_bit_flips_never_panic() {
    let d = tmp();
    let full = std::fs::read(fixture("sam_vit_tiny.pth")).unwrap();
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    for k in 0..24usize {
        let mut b = full.clone();
        let at = (k * 7919 * 13) % b.len();
        b[at] ^= 0x5a;
        let p = d.path().join(format!("flip_{k}.pth"));
        std::fs::write(&p, &b).unwrap();
        let pc = p.clone();
        let r = std::panic::catch_unwind(move || {
            load_sam(&pc, Some(fixture_config("sam_vit_tiny.json")), &cpu()).map(|_| ())
        });
        let key = match r {
            Err(_) => panic!("load_sam panicked on a bit flip at {at}"),
            Ok(Ok(())) => "loaded (flip inside tensor data: only a hash can tell)".to_string(),
            Ok(Err(e)) => {
                format!("{:?}", std::mem::discriminant(&e)).replace("Discriminant", "error")
            }
        };
        *outcomes.entry(key).or_default() += 1;
    }
    println!("bit flips: {outcomes:?}");
}

// ------------------------------------------------------------------------------------------
// adapters

#[test]
fn adapter_for_another_base_is_refused() {
    use segadapt::adapt::file::{AdapterCard, load_adapter, read_card, save_adapter};
    use segadapt::adapt::{AdapterConfig, apply_adapters};
    let d = tmp();
    let dev = cpu();
    let (mut vit, vit_info) = load_sam(
        &fixture("sam_vit_tiny.pth"),
        Some(fixture_config("sam_vit_tiny.json")),
        &dev,
    )
    .unwrap();
    let cfg = AdapterConfig {
        rank: 2,
        alpha: 8.0,
        ..Default::default()
    };
    apply_adapters(&mut vit, &cfg, &dev);
    let card = AdapterCard::new(&vit, &vit_info, &cfg, false);
    let ad = d.path().join("vit.safetensors");
    save_adapter(&vit, &card, &ad).unwrap();

    // Another base model.
    let (mut mob, mob_info) = load_sam(
        &fixture("mobilesam_tiny.pth"),
        Some(fixture_config("mobilesam_tiny.json")),
        &dev,
    )
    .unwrap();
    let msg = err_text(load_adapter(&mut mob, &mob_info, &ad, &dev));
    assert_msg(&msg, &["was trained on base model", "sam_vit_tiny.pth"]);
    println!("adapter on another base: {msg}");

    // Same architecture, different weights (sha256 differs).
    let (mut vit2, mut info2) = load_sam(
        &fixture("sam_vit_tiny.pth"),
        Some(fixture_config("sam_vit_tiny.json")),
        &dev,
    )
    .unwrap();
    info2.sha256 = "0".repeat(64);
    let msg = err_text(load_adapter(&mut vit2, &info2, &ad, &dev));
    assert_msg(&msg, &["load the matching base checkpoint"]);

    // Broken adapter files.
    let bytes = std::fs::read(&ad).unwrap();
    for (name, data) in [
        ("empty.safetensors", Vec::new()),
        ("trunc.safetensors", bytes[..bytes.len() / 2].to_vec()),
        (
            "random.safetensors",
            (0..5000u32)
                .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
                .collect(),
        ),
        (
            "nocard.safetensors",
            std::fs::read(fixture("sam_vit_tiny_ref.safetensors")).unwrap(),
        ),
    ] {
        let p = d.path().join(name);
        std::fs::write(&p, data).unwrap();
        let (mut m, i) = load_sam(
            &fixture("sam_vit_tiny.pth"),
            Some(fixture_config("sam_vit_tiny.json")),
            &dev,
        )
        .unwrap();
        let msg = err_text(load_adapter(&mut m, &i, &p, &dev));
        println!("{name}: {msg}");
        assert!(read_card(&p).is_err() || name == "trunc.safetensors");
    }
    let msg = err_text(read_card(&d.path().join("missing.safetensors")));
    assert_msg(&msg, &["cannot read adapter file"]);
}

// ------------------------------------------------------------------------------------------
// images

#[test]
fn corrupt_truncated_empty_and_missing_images() {
    let d = tmp();
    let good = std::fs::read(fixture("rgb_100x75.png")).unwrap();
    let cases: Vec<(&str, Vec<u8>, &[&str])> = vec![
        ("empty.png", Vec::new(), &["empty"]),
        ("trunc.png", good[..good.len() / 2].to_vec(), &["corrupt"]),
        ("header_only.png", good[..40].to_vec(), &["image"]),
        (
            "garbage_after_sig.png",
            [&good[..8], &[7u8; 500][..]].concat(),
            &["image"],
        ),
        (
            "random.png",
            (0..4096u32)
                .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
                .collect(),
            &["unsupported"],
        ),
        ("text.jpg", b"this is not a jpeg".to_vec(), &["unsupported"]),
        (
            "random.dat",
            vec![0x5a; 4096],
            &["unknown or unsupported image format"],
        ),
        (
            "trunc.tif",
            {
                let p = d.path().join("full.tif");
                write_tiff_pages::<tiff::encoder::colortype::Gray16>(
                    &p,
                    64,
                    64,
                    &[vec![7u16; 64 * 64]],
                );
                let b = std::fs::read(&p).unwrap();
                b[..b.len() / 3].to_vec()
            },
            &["tiff"],
        ),
        ("bad_ifd.tif", b"II*\0\xff\xff\xff\x7f".to_vec(), &["tiff"]),
    ];
    for (name, bytes, needles) in cases {
        let p = d.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        let msg = err_text(load_rgb(&p));
        assert_msg(&msg, needles);
        assert!(msg.contains(name), "{msg}");
        println!("{name}: {msg}");
        let msg = err_text(load_labels(&p));
        assert_msg(&msg, &["mask"]);
    }
    let msg = err_text(load_rgb(&d.path().join("missing.png")));
    assert_msg(&msg, &["file not found"]);
    let msg = err_text(load_rgb(d.path()));
    assert_msg(&msg, &["folder"]);
}

#[test]
fn zero_size_and_huge_images_are_refused_without_allocating() {
    let d = tmp();
    for (name, w, h, needle) in [
        ("zero_w.png", 0, 10, "image"),
        ("huge.png", 100_000, 100_000, "limit"),
        ("wide.png", 1 << 20, 1 << 16, "limit"),
    ] {
        let p = d.path().join(name);
        std::fs::write(&p, png_header_only(w, h)).unwrap();
        let msg = err_text(load_rgb(&p));
        assert_msg(&msg, &[needle]);
        println!("{name} ({w}×{h}): {msg}");
    }
    // A real image over a (test-sized) limit.
    let p = d.path().join("big.png");
    write_png_gray16(&p, 300, 200, |x, y| (x + y) as u16);
    let opts = ImportOptions {
        limits: Limits {
            max_pixels: 10_000,
            max_bytes: 1 << 30,
        },
        ..Default::default()
    };
    let msg = err_text(load_rgb_with(&p, &opts));
    assert_msg(&msg, &["downscale or tile"]);
    // TIFF and NIfTI headers that claim enormous sizes.
    let p = d.path().join("huge.nii");
    let mut b = nifti_header(&[30000, 30000, 30000], 16, 32, 1.0, 0.0);
    b.extend_from_slice(&[0u8; 1000]);
    std::fs::write(&p, b).unwrap();
    let msg = err_text(load_rgb(&p));
    assert_msg(&msg, &["limit"]);
    println!("huge.nii: {msg}");
}

#[test]
fn bit_depths_and_channel_layouts_are_accepted() {
    let d = tmp();
    let (w, h) = (40u32, 30u32);
    let g16 = d.path().join("g16.png");
    write_png_gray16(&g16, w, h, |x, y| 1000 + (x * 50 + y * 7) as u16);
    let rgb16 = d.path().join("rgb16.png");
    image::ImageBuffer::<image::Rgb<u16>, _>::from_fn(w, h, |x, y| {
        image::Rgb([x as u16 * 900, y as u16 * 700, 300])
    })
    .save(&rgb16)
    .unwrap();
    let rgba8 = d.path().join("rgba8.png");
    image::RgbaImage::from_fn(w, h, |x, y| {
        image::Rgba([x as u8, y as u8, 7, (x * 3) as u8])
    })
    .save(&rgba8)
    .unwrap();
    let la8 = d.path().join("la8.png");
    image::ImageBuffer::<image::LumaA<u8>, _>::from_fn(w, h, |x, _| image::LumaA([x as u8 * 5, 9]))
        .save(&la8)
        .unwrap();
    let g8 = d.path().join("g8.jpg");
    image::GrayImage::from_fn(w, h, |x, y| image::Luma([(x + y) as u8 * 3]))
        .save(&g8)
        .unwrap();
    let bmp = d.path().join("rgb.bmp");
    image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 1]))
        .save(&bmp)
        .unwrap();
    let f32t = d.path().join("f32.tif");
    let vals: Vec<f32> = (0..w * h).map(|i| (i as f32) * 0.01 - 3.0).collect();
    write_tiff_pages::<tiff::encoder::colortype::Gray32Float>(
        &f32t,
        w,
        h,
        std::slice::from_ref(&vals),
    );
    let f32rgb = d.path().join("f32rgb.tif");
    write_tiff_pages::<tiff::encoder::colortype::RGB32Float>(
        &f32rgb,
        w,
        h,
        &[(0..w * h * 3).map(|i| i as f32 / 7.0).collect()],
    );
    let i16t = d.path().join("i16.tif");
    write_tiff_pages::<tiff::encoder::colortype::GrayI16>(
        &i16t,
        w,
        h,
        &[(0..w * h).map(|i| i as i16 - 600).collect()],
    );
    let u32t = d.path().join("u32.tif");
    write_tiff_pages::<tiff::encoder::colortype::Gray32>(
        &u32t,
        w,
        h,
        &[(0..w * h).map(|i| i * 100_000).collect()],
    );
    let g16t = d.path().join("g16.tif");
    write_tiff_pages::<tiff::encoder::colortype::Gray16>(
        &g16t,
        w,
        h,
        &[(0..w * h).map(|i| (i * 37 % 4096) as u16).collect()],
    );
    for p in [
        &g16, &rgb16, &rgba8, &la8, &g8, &bmp, &f32t, &f32rgb, &i16t, &u32t, &g16t,
    ] {
        let img = load_rgb(p).unwrap_or_else(|e| panic!("{}: {e:#}", p.display()));
        assert_eq!((img.width(), img.height()), (w, h), "{}", p.display());
        let (lo, hi) = img
            .as_raw()
            .iter()
            .fold((255u8, 0u8), |(a, b), &v| (a.min(v), b.max(v)));
        assert!(hi > lo, "{}: flat after conversion", p.display());
    }
    // 16-bit TIFF through the TIFF reader = the documented rule through `image` (parity with
    // the nuclei protocol, which was defined on image-rs decoding).
    let via_image = segadapt::project::import::to_rgb8(image::open(&g16t).unwrap());
    assert_eq!(load_rgb(&g16t).unwrap(), via_image);
    let via_image = segadapt::project::import::to_rgb8(image::open(&g16).unwrap());
    assert_eq!(load_rgb(&g16).unwrap(), via_image);
    // Float TIFF keeps its values; the window is the percentile rule.
    let plane = load_plane(&f32t, &ImportOptions::default()).unwrap();
    match &plane.samples {
        Samples::F32(v) => assert_eq!(v, &vals),
        other => panic!("float TIFF decoded as {other:?}"),
    }
    // NaN / inf in float data do not break the window.
    let nan = d.path().join("nan.tif");
    let mut v2 = vals.clone();
    v2[0] = f32::NAN;
    v2[1] = f32::INFINITY;
    write_tiff_pages::<tiff::encoder::colortype::Gray32Float>(&nan, w, h, &[v2]);
    assert!(load_rgb(&nan).is_ok());
    // User window on 8-bit data too.
    let fixed = load_rgb_with(
        &g8,
        &ImportOptions {
            window: Some(Window::Range {
                min: 0.0,
                max: 10.0,
            }),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(fixed.get_pixel(39, 29).0[0], 255);
}

#[test]
fn multipage_tiff_is_a_stack_of_slices() {
    let d = tmp();
    let p = d.path().join("stack.tif");
    let (w, h) = (16u32, 8u32);
    let pages: Vec<Vec<u16>> = (0..3)
        .map(|k| (0..w * h).map(|i| (i as u16) * (k + 1) + 100 * k).collect())
        .collect();
    write_tiff_pages::<tiff::encoder::colortype::Gray16>(&p, w, h, &pages);
    assert_eq!(slice_count(&p, Axis::Z).unwrap(), 3);
    for (k, page) in pages.iter().enumerate() {
        let plane = load_plane(
            &p,
            &ImportOptions {
                slice: k,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(plane.samples, Samples::U16(page.clone()), "page {k}");
    }
    let msg = err_text(load_rgb_with(
        &p,
        &ImportOptions {
            slice: 3,
            ..Default::default()
        },
    ));
    assert_msg(&msg, &["page 3 does not exist", "3 pages"]);
    // Label stacks: page k of a mask stack.
    let m = d.path().join("masks.tif");
    write_tiff_pages::<tiff::encoder::colortype::Gray8>(
        &m,
        w,
        h,
        &[vec![0u8; (w * h) as usize], vec![2u8; (w * h) as usize]],
    );
    let l = load_labels_with(
        &m,
        &ImportOptions {
            slice: 1,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(l.ids(), vec![2]);
    // Single images have one slice.
    assert_eq!(slice_count(&fixture("rgb_100x75.png"), Axis::Z).unwrap(), 1);
    assert!(
        load_rgb_with(
            &fixture("rgb_100x75.png"),
            &ImportOptions {
                slice: 1,
                ..Default::default()
            }
        )
        .is_err()
    );
}

#[test]
fn nifti_volumes_are_read_as_slices_with_windowing() {
    let d = tmp();
    let (nx, ny, nz) = (5u16, 4u16, 3u16);
    let raw = nifti_i16_volume(nx, ny, nz, 2.0, -10.0);
    let nii = d.path().join("vol.nii");
    std::fs::write(&nii, &raw).unwrap();
    let niigz = d.path().join("vol.nii.gz");
    std::fs::write(&niigz, gzip(&raw)).unwrap();
    for p in [&nii, &niigz] {
        assert_eq!(slice_count(p, Axis::Z).unwrap(), 3);
        assert_eq!(slice_count(p, Axis::Y).unwrap(), 4);
        assert_eq!(slice_count(p, Axis::X).unwrap(), 5);
        // Axial slice z=2: width nx, height ny, top row = highest y; scaled 2v-10.
        let pl = load_plane(
            p,
            &ImportOptions {
                slice: 2,
                axis: Axis::Z,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!((pl.width, pl.height), (5, 4));
        let Samples::F32(v) = &pl.samples else {
            panic!("expected f32 samples")
        };
        let val = |x: usize, y: usize, z: usize| (x + 10 * y + 100 * z) as f32 * 2.0 - 10.0;
        assert_eq!(v[0], val(0, 3, 2));
        assert_eq!(v[3 * 5 + 4], val(4, 0, 2));
        // Sagittal slice x=1: width ny, height nz.
        let pl = load_plane(
            p,
            &ImportOptions {
                slice: 1,
                axis: Axis::X,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!((pl.width, pl.height), (4, 3));
        let Samples::F32(v) = &pl.samples else {
            panic!()
        };
        assert_eq!(v[0], val(1, 0, 2));
        // Coronal, with a CT-style window.
        let img = load_rgb_with(
            p,
            &ImportOptions {
                slice: 0,
                axis: Axis::Y,
                window: Some(Window::level_width(100.0, 200.0)),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!((img.width(), img.height()), (5, 3));
        let msg = err_text(load_rgb_with(
            p,
            &ImportOptions {
                slice: 3,
                ..Default::default()
            },
        ));
        assert_msg(&msg, &["slice 3 does not exist", "3 slices"]);
    }
    // Label volumes.
    let mut lab = nifti_header(&[4, 4, 2], 2, 8, 0.0, 0.0);
    lab.extend((0..32u8).map(|i| if i >= 16 { 3 } else { i % 2 }));
    let labp = d.path().join("labels.nii");
    std::fs::write(&labp, &lab).unwrap();
    let l = load_labels_with(
        &labp,
        &ImportOptions {
            slice: 1,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(l.ids(), vec![3]);
    assert_eq!(load_labels(&labp).unwrap().ids(), vec![1]);

    // Bad NIfTI files.
    let bad: Vec<(&str, Vec<u8>, &str)> = vec![
        ("trunc.nii", raw[..raw.len() - 7].to_vec(), "truncated"),
        ("trunc_header.nii", raw[..200].to_vec(), "image"),
        ("trunc.nii.gz", gzip(&raw)[..60].to_vec(), "truncated"),
        (
            "complex.nii",
            {
                let mut b = nifti_header(&[2, 2, 2], 32, 64, 1.0, 0.0);
                b.extend([0u8; 64]);
                b
            },
            "not supported",
        ),
        (
            "badtype.nii",
            {
                let mut b = nifti_header(&[2, 2, 2], 77, 8, 1.0, 0.0);
                b.extend([0u8; 8]);
                b
            },
            "data type",
        ),
        (
            "zero_dim.nii",
            nifti_header(&[4, 0, 2], 2, 8, 1.0, 0.0),
            "zero-size",
        ),
        (
            "nifti2.nii",
            {
                let mut b = vec![0u8; 600];
                b[..4].copy_from_slice(&540i32.to_le_bytes());
                b
            },
            "nifti-2",
        ),
        (
            "pair.nii",
            {
                let mut b = nifti_header(&[2, 2, 2], 2, 8, 1.0, 0.0);
                b[344..348].copy_from_slice(b"ni1\0");
                b.extend([0u8; 8]);
                b
            },
            ".hdr/.img",
        ),
    ];
    for (name, bytes, needle) in bad {
        let p = d.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        let msg = err_text(load_rgb(&p));
        assert_msg(&msg, &[needle]);
        println!("{name}: {msg}");
    }
}

#[test]
fn label_images_with_unexpected_values() {
    let d = tmp();
    let (w, h) = (8u32, 6u32);
    // Colour masks are refused with the rule.
    let p = d.path().join("colour.png");
    image::RgbImage::from_fn(w, h, |x, _| {
        if x < 4 {
            image::Rgb([255, 0, 0])
        } else {
            image::Rgb([0, 0, 255])
        }
    })
    .save(&p)
    .unwrap();
    let msg = err_text(load_labels(&p));
    assert_msg(&msg, &["colour image", "0 for background"]);
    println!("colour mask: {msg}");
    // Gray saved as RGB(A) is fine (common with 0/255 masks from other tools).
    let p = d.path().join("gray_as_rgba.png");
    image::RgbaImage::from_fn(w, h, |x, _| {
        if x < 4 {
            image::Rgba([0, 0, 0, 255])
        } else {
            image::Rgba([255, 255, 255, 255])
        }
    })
    .save(&p)
    .unwrap();
    assert_eq!(load_labels(&p).unwrap().ids(), vec![255]);
    // Float labels: whole numbers OK, fractions / negatives / NaN refused.
    for (name, v, ok) in [
        ("f_ok.tif", 2.0f32, true),
        ("f_half.tif", 1.5, false),
        ("f_neg.tif", -1.0, false),
        ("f_nan.tif", f32::NAN, false),
    ] {
        let p = d.path().join(name);
        let mut vals = vec![0f32; (w * h) as usize];
        vals[5] = v;
        write_tiff_pages::<tiff::encoder::colortype::Gray32Float>(&p, w, h, &[vals]);
        let r = load_labels(&p);
        assert_eq!(r.is_ok(), ok, "{name}: {:?}", r.as_ref().err());
        if let Err(e) = r {
            assert_msg(&format!("{e:#}"), &["is not a label"]);
        }
    }
    // 32-bit labels above 65535 (large instance counts).
    let p = d.path().join("u32.tif");
    let mut vals = vec![0u32; (w * h) as usize];
    vals[3] = 70_000;
    vals[4] = 1;
    write_tiff_pages::<tiff::encoder::colortype::Gray32>(&p, w, h, &[vals]);
    assert_eq!(load_labels(&p).unwrap().ids(), vec![1, 70_000]);
    // Signed 16-bit with a negative value.
    let p = d.path().join("i16.tif");
    let mut vals = vec![0i16; (w * h) as usize];
    vals[0] = -3;
    write_tiff_pages::<tiff::encoder::colortype::GrayI16>(&p, w, h, &[vals]);
    assert!(load_labels(&p).is_err());
}

// ------------------------------------------------------------------------------------------
// atomic writes: disk full, read-only, kill -9

#[test]
fn disk_full_keeps_the_old_file() {
    let Some(fs) = Tmpfs::mount("64k") else {
        // Not root / no mount: the error path still maps ENOSPC to a clear message.
        let e = std::fs::write("/dev/full", vec![0u8; 4096]).unwrap_err();
        assert_eq!(segadapt::fsutil::explain_io(&e), "the disk is full");
        eprintln!("SKIP tmpfs part of disk_full_keeps_the_old_file: cannot mount tmpfs");
        return;
    };
    let p = fs.path().join("project.json");
    atomic_write(&p, b"{\"version\": 1}").unwrap();
    let big = vec![b'x'; 1 << 20];
    let msg = err_text(atomic_write(&p, &big));
    assert_msg(&msg, &["disk is full"]);
    println!("disk full: {msg}");
    assert_eq!(std::fs::read(&p).unwrap(), b"{\"version\": 1}");
    let left: Vec<_> = std::fs::read_dir(fs.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(left.len(), 1, "temp files left behind: {left:?}");
    // Streaming writer fails midway the same way.
    let msg = err_text(atomic_write_with(&p, |f| {
        for _ in 0..64 {
            f.write_all(&[1u8; 16384])?;
        }
        Ok(())
    }));
    assert_msg(&msg, &["disk is full"]);
    assert_eq!(std::fs::read(&p).unwrap(), b"{\"version\": 1}");
    // A failing producer aborts without touching the file.
    let r = atomic_write_with(&p, |_| Err(std::io::Error::other("cancelled by caller")));
    assert!(r.is_err());
    assert_eq!(std::fs::read(&p).unwrap(), b"{\"version\": 1}");
}

#[test]
fn read_only_folders_give_clear_errors() {
    let Some(fs) = Tmpfs::mount("1m") else {
        eprintln!("SKIP read_only_folders_give_clear_errors: cannot mount tmpfs");
        return;
    };
    let p = fs.path().join("mask.png");
    atomic_write(&p, b"old").unwrap();
    assert!(fs.remount_ro(), "remount read-only");
    let msg = err_text(atomic_write(&p, b"new"));
    assert_msg(&msg, &["read-only"]);
    println!("read-only: {msg}");
    assert_eq!(std::fs::read(&p).unwrap(), b"old");
    assert!(segadapt::fsutil::check_writable_dir(fs.path()).is_err());
    // Writing into a missing folder / onto a folder.
    let d = tmp();
    assert_msg(
        &err_text(atomic_write(&d.path().join("no/such/dir/x.json"), b"1")),
        &["does not exist"],
    );
    assert_msg(&err_text(atomic_write(d.path(), b"1")), &["folder"]);
}

/// Not a test on its own: the child process of `kill_during_save_never_corrupts` (runs only
/// when SEGADAPT_CRASH_CHILD is set).
#[test]
#[ignore = "child process of kill_during_save_never_corrupts, started by that test"]
fn crash_child_writer() {
    let Some(dir) = std::env::var_os("SEGADAPT_CRASH_CHILD") else {
        return;
    };
    let p = PathBuf::from(dir).join("state.bin");
    let mut out = std::io::stdout();
    for i in 0u64.. {
        // ~1.5 MB, self-describing: header with version and length, payload, trailer.
        let n = 1_500_000 + (i as usize % 7) * 1000;
        let mut b = format!("v{i:010} {n:010}\n").into_bytes();
        b.extend(std::iter::repeat_n((i % 251) as u8, n));
        b.extend_from_slice(format!("\nend{i:010}").as_bytes());
        atomic_write(&p, &b).unwrap();
        writeln!(out, "saved {i}").unwrap();
        out.flush().unwrap();
    }
}

fn check_state_file(p: &Path) -> u64 {
    let b = std::fs::read(p).unwrap();
    let head = std::str::from_utf8(&b[..23]).unwrap();
    let i: u64 = head[1..11].parse().unwrap();
    let n: usize = head[12..22].trim().parse().unwrap();
    assert_eq!(
        b.len(),
        23 + n + 14,
        "file length does not match its header (torn write)"
    );
    assert!(
        b[23..23 + n].iter().all(|&v| v == (i % 251) as u8),
        "payload of version {i} is mixed"
    );
    assert_eq!(&b[23 + n..], format!("\nend{i:010}").as_bytes());
    i
}

#[test]
fn kill_during_save_never_corrupts() {
    let d = tmp();
    let exe = std::env::current_exe().unwrap();
    let mut last_seen = 0u64;
    for round in 0..8u64 {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_child_writer",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("SEGADAPT_CRASH_CHILD", d.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdout = child.stdout.take().unwrap();
        // Wait until it saved a few times, then kill -9 at a varying moment.
        let mut buf = Vec::new();
        let mut chunk = [0u8; 256];
        let mut saved = None;
        while saved.is_none_or(|k: u64| k < 2 + round % 3) {
            let n = stdout.read(&mut chunk).unwrap();
            assert!(n > 0, "child exited early");
            buf.extend_from_slice(&chunk[..n]);
            saved = String::from_utf8_lossy(&buf)
                .lines()
                .filter_map(|l| l.strip_prefix("saved ")?.trim().parse().ok())
                .next_back();
        }
        std::thread::sleep(std::time::Duration::from_millis(round * 3));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let v = check_state_file(&d.path().join("state.bin"));
        // The file holds a complete version at least as new as the last confirmed save.
        assert!(
            v >= saved.unwrap(),
            "round {round}: file has v{v}, but v{} was confirmed",
            saved.unwrap()
        );
        last_seen = v;
        // Temp files of the killed writer are recognised and cleaned.
        let removed = remove_stale_temps(d.path());
        assert!(removed.iter().all(|p| is_temp_file(p)));
        // The next run continues from scratch; remove the state to start version numbers at 0.
        std::fs::remove_file(d.path().join("state.bin")).unwrap();
    }
    println!("8 kills during saves; last version seen intact: {last_seen}");
}

/// Child of `kill_during_annotation_keeps_accepted_objects`.
#[test]
#[ignore = "child process of kill_during_annotation_keeps_accepted_objects, started by that test"]
fn crash_child_annotator() {
    use segadapt::project::project::{OpenProject, PromptRecord};
    let Some(dir) = std::env::var_os("SEGADAPT_CRASH_PROJECT") else {
        return;
    };
    let root = PathBuf::from(dir);
    let mut p = if root.join("project.json").exists() {
        OpenProject::open(&root).unwrap()
    } else {
        OpenProject::create(&root, "crash").unwrap()
    };
    let image_id = match p.project.images.first() {
        Some(i) => i.id,
        None => {
            let id = p.add_image(&fixture("rgb_100x75.png"), true).unwrap();
            p.save().unwrap();
            id
        }
    };
    let mut out = std::io::stdout();
    for k in 0u32.. {
        let mut mask = vec![false; 100 * 75];
        for y in 0..10 {
            for x in 0..10 {
                mask[(y + (k as usize * 3) % 60) * 100 + x + (k as usize * 7) % 85] = true;
            }
        }
        p.add_object(image_id, &mask, None, "test", PromptRecord::default())
            .unwrap();
        p.save().unwrap();
        writeln!(out, "accepted {}", p.project.n_objects()).unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn kill_during_annotation_keeps_accepted_objects() {
    use segadapt::project::project::OpenProject;
    let d = tmp();
    let root = d.path().join("proj");
    let exe = std::env::current_exe().unwrap();
    let mut confirmed = 0usize;
    for round in 0..5u64 {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_child_annotator",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("SEGADAPT_CRASH_PROJECT", &root)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 256];
        let start = confirmed;
        while confirmed < start + 2 + round as usize {
            let n = stdout.read(&mut chunk).unwrap();
            assert!(n > 0, "child exited early");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(k) = String::from_utf8_lossy(&buf)
                .lines()
                .filter_map(|l| l.strip_prefix("accepted ")?.trim().parse().ok())
                .next_back()
            {
                confirmed = k;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(round * 2));
        child.kill().unwrap();
        child.wait().unwrap();
        // Reopen: every accepted object is there and its mask reads back.
        let p = OpenProject::open(&root).unwrap_or_else(|e| {
            panic!("round {round}: project does not open after kill -9: {e:#}")
        });
        let n = p.project.n_objects();
        assert!(
            n >= confirmed,
            "round {round}: {n} objects after kill, {confirmed} were accepted"
        );
        for img in &p.project.images {
            for o in &img.objects {
                let m = p
                    .read_mask(o, img.width as usize, img.height as usize)
                    .unwrap();
                assert!(m.iter().any(|&v| v), "object {} has an empty mask", o.id);
            }
        }
        confirmed = n;
    }
    println!("5 kills during annotation; {confirmed} accepted objects all intact");
}

// ------------------------------------------------------------------------------------------
// CLI error paths

fn cli_data_dir(root: &Path, mask: image::DynamicImage) -> PathBuf {
    let data = root.join("data");
    std::fs::create_dir_all(data.join("images")).unwrap();
    std::fs::create_dir_all(data.join("masks")).unwrap();
    std::fs::copy(fixture("rgb_100x75.png"), data.join("images/a.png")).unwrap();
    mask.save(data.join("masks/a.png")).unwrap();
    data
}

#[test]
fn cli_rejects_bad_prompts_and_paths() {
    let d = tmp();
    let model = fixture("sam_vit_tiny.pth");
    let img = fixture("rgb_100x75.png");
    let out = d.path().join("m.png");
    let base = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "segment",
            "--model",
            s(&model),
            "--image",
            s(&img),
            "--out",
            s(&out),
        ]
        .iter()
        .map(|x| x.to_string())
        .collect();
        v.extend(extra.iter().map(|x| x.to_string()));
        v
    };
    let run = |extra: &[&str], needles: &[&str]| {
        let args = base(extra);
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        cli_fails(&a, needles);
    };
    run(&["--box", "1,2,3"], &["--box expects"]);
    run(&["--box", "a,b,c,d"], &["not a number"]);
    run(&["--box", "50,50,10,10"], &["x1 must be"]);
    run(&["--box", "1,2,3,inf"], &["finite"]);
    run(&["--point", "1,2,7"], &["label must be"]);
    run(&["--point", "nan,2"], &["finite"]);
    run(&["--point", "1"], &["--point expects"]);
    run(&["--point", ""], &["not a number"]);
    run(&["--point", "500,20"], &["outside the 100×75 image"]);
    run(&["--point=-1,20"], &["outside"]);
    run(&["--box", "10,10,100,75"], &["outside"]);
    run(&[], &["give a prompt"]);
    assert!(!out.exists(), "nothing is written on errors");

    // Missing / corrupt inputs and unwritable outputs.
    let p = |args: &[&str], needles: &[&str]| {
        cli_fails(args, needles);
    };
    let missing = d.path().join("missing.png");
    p(
        &[
            "segment",
            "--model",
            s(&model),
            "--image",
            s(&missing),
            "--box",
            "1,1,5,5",
            "--out",
            s(&out),
        ],
        &["file not found"],
    );
    let corrupt = d.path().join("corrupt.png");
    let b = std::fs::read(&img).unwrap();
    std::fs::write(&corrupt, &b[..b.len() / 2]).unwrap();
    p(
        &[
            "segment",
            "--model",
            s(&model),
            "--image",
            s(&corrupt),
            "--box",
            "1,1,5,5",
            "--out",
            s(&out),
        ],
        &["corrupt"],
    );
    p(
        &[
            "segment",
            "--model",
            s(&d.path().join("none.pth")),
            "--image",
            s(&img),
            "--box",
            "1,1,5,5",
            "--out",
            s(&out),
        ],
        &["file not found"],
    );
    let trunc = d.path().join("trunc.pth");
    let b = std::fs::read(&model).unwrap();
    std::fs::write(&trunc, &b[..b.len() / 2]).unwrap();
    p(
        &[
            "segment",
            "--model",
            s(&trunc),
            "--image",
            s(&img),
            "--box",
            "1,1,5,5",
            "--out",
            s(&out),
        ],
        &["not a readable pytorch checkpoint"],
    );
    p(
        &[
            "segment",
            "--model",
            s(&model),
            "--image",
            s(&img),
            "--box",
            "1,1,5,5",
            "--out",
            s(&d.path().join("nodir/m.png")),
        ],
        &["does not exist"],
    );
    p(
        &[
            "segment",
            "--model",
            s(&model),
            "--image",
            s(&img),
            "--box",
            "1,1,5,5",
            "--out",
            s(d.path()),
        ],
        &["folder"],
    );
    let other_base = d.path().join("adapter.safetensors");
    std::fs::write(&other_base, b"not an adapter").unwrap();
    p(
        &[
            "segment",
            "--model",
            s(&model),
            "--adapter",
            s(&other_base),
            "--image",
            s(&img),
            "--box",
            "1,1,5,5",
            "--out",
            s(&out),
        ],
        &["adapter"],
    );
    if let Some(fs) = Tmpfs::mount("1m") {
        assert!(fs.remount_ro());
        p(
            &[
                "segment",
                "--model",
                s(&model),
                "--image",
                s(&img),
                "--box",
                "1,1,5,5",
                "--out",
                s(&fs.path().join("m.png")),
            ],
            &["read-only"],
        );
    }

    // eval: missing folders, mismatched mask sizes, colour masks, bad --json path.
    p(
        &[
            "eval",
            "--model",
            s(&model),
            "--data",
            s(&d.path().join("nodata")),
        ],
        &["missing folder images/"],
    );
    let data = cli_data_dir(
        &d.path().join("a"),
        image::DynamicImage::ImageLuma8(image::GrayImage::new(50, 50)),
    );
    p(
        &["eval", "--model", s(&model), "--data", s(&data)],
        &["50×50"],
    );
    let data = cli_data_dir(
        &d.path().join("b"),
        image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(100, 75, |x, _| {
            image::Rgb([x as u8, 0, 0])
        })),
    );
    p(
        &["eval", "--model", s(&model), "--data", s(&data)],
        &["colour image"],
    );
    let mut good = image::GrayImage::new(100, 75);
    for y in 10..30 {
        for x in 10..30 {
            good.put_pixel(x, y, image::Luma([1]));
        }
    }
    let data = cli_data_dir(&d.path().join("c"), image::DynamicImage::ImageLuma8(good));
    p(
        &[
            "eval",
            "--model",
            s(&model),
            "--data",
            s(&data),
            "--json",
            s(&d.path().join("nodir/r.json")),
        ],
        &["does not exist"],
    );
    std::fs::remove_dir_all(data.join("masks")).unwrap();
    p(
        &["eval", "--model", s(&model), "--data", s(&data)],
        &["missing folder masks/"],
    );
    p(
        &[
            "train",
            "--model",
            s(&model),
            "--data",
            s(&d.path().join("nodata")),
            "--out",
            s(&d.path().join("a.safetensors")),
            "--steps",
            "1",
        ],
        &["images/"],
    );
}

#[test]
fn cli_accepts_16bit_float_gray_and_rgba_images() {
    let d = tmp();
    let model = fixture("sam_vit_tiny.pth");
    let (w, h) = (64u32, 48u32);
    let g16 = d.path().join("g16.png");
    write_png_gray16(&g16, w, h, |x, y| (x * 300 + y * 11) as u16);
    let f32t = d.path().join("f32.tif");
    write_tiff_pages::<tiff::encoder::colortype::Gray32Float>(
        &f32t,
        w,
        h,
        &[(0..w * h).map(|i| (i as f32).sqrt()).collect()],
    );
    let gray = d.path().join("gray.png");
    image::GrayImage::from_fn(w, h, |x, _| image::Luma([x as u8 * 4]))
        .save(&gray)
        .unwrap();
    let rgba = d.path().join("rgba.png");
    image::RgbaImage::from_fn(w, h, |x, y| image::Rgba([x as u8 * 4, y as u8 * 5, 9, 128]))
        .save(&rgba)
        .unwrap();
    let nii = d.path().join("vol.nii.gz");
    std::fs::write(
        &nii,
        gzip(&nifti_i16_volume(w as u16, h as u16, 2, 1.0, 0.0)),
    )
    .unwrap();
    for img in [&g16, &f32t, &gray, &rgba, &nii] {
        let out = d.path().join(format!(
            "{}.mask.png",
            img.file_name().unwrap().to_string_lossy()
        ));
        let (code, _o, err) = cli(&[
            "segment",
            "--model",
            s(&model),
            "--image",
            s(img),
            "--box",
            "5,5,40,30",
            "--out",
            s(&out),
        ]);
        assert_eq!(code, 0, "{}: {err}", img.display());
        let m = image::open(&out).unwrap();
        assert_eq!((m.width(), m.height()), (w, h));
    }
}
