//! `segadapt predict` over a folder: a crop of the nuclei image and a file no reader can
//! decode, prompted by a CSV of three ground-truth boxes (tests/fixtures/predict/, written by
//! tools/make_predict_fixtures.py).
//!
//! * outputs: label PNG = label TIFF, label k's pixels are exactly object k's mask, object k
//!   equals `segadapt segment --box` on the same box (the single-image path), and the COCO
//!   annotation decodes to it, with pycocotools' area and `toBbox` computed here by hand;
//! * the broken file is reported, the run goes on and exits 1 with a summary;
//! * resumability: a second run touches nothing (mtimes equal, no model load); a deleted
//!   output or a truncated record makes only that image run again; other prompts are refused
//!   unless --overwrite, which also removes object PNGs that no longer exist;
//! * segment everything through `predict`, on a project folder, gives `segadapt everything`'s
//!   masks;
//! * bad prompt files are clear errors before anything is written;
//! * label images written by tifffile and imageio (known array) read back exactly.
//!
//! The model runs need the real MobileSAM checkpoint (tools/fetch_assets.sh); without it they
//! are skipped, unless SEGADAPT_REQUIRE_ASSETS=1.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::SystemTime;

use common::fixture;
use segadapt::project::folder::OpenProject;
use segadapt::project::import::load_labels;
use segadapt::sam::amg::Rle;
use serde_json::Value;

fn model_path() -> Option<PathBuf> {
    let cache = std::env::var_os("SEGADAPT_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/segadapt")
        });
    let model = cache.join("models/mobile_sam.pt");
    if model.exists() {
        return Some(model);
    }
    assert_ne!(
        std::env::var("SEGADAPT_REQUIRE_ASSETS").as_deref(),
        Ok("1"),
        "real MobileSAM checkpoint missing: run tools/fetch_assets.sh"
    );
    eprintln!("SKIPPED: real MobileSAM checkpoint not found (run tools/fetch_assets.sh)");
    None
}

fn segadapt(args: &[&str]) -> Output {
    // SEGADAPT_BIN: a copy of the binary, for worktrees that share one target folder (each
    // build there replaces the others' `segadapt`).
    let bin = std::env::var_os("SEGADAPT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_segadapt")));
    Command::new(bin)
        .args(["--device", "cpu"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run segadapt")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A folder with the nuclei crop and `broken.png` (PNG name, bytes no decoder accepts).
fn input_folder(root: &Path) -> PathBuf {
    let input = root.join("in");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::copy(
        fixture("predict/nuclei_crop.png"),
        input.join("nuclei_crop.png"),
    )
    .unwrap();
    std::fs::write(input.join("broken.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();
    input
}

fn boxes() -> Vec<[u32; 4]> {
    std::fs::read_to_string(fixture("predict/prompts.csv"))
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("nuclei_crop.png,"))
        .map(|l| {
            let v: Vec<u32> = l.split(',').skip(1).map(|x| x.parse().unwrap()).collect();
            [v[0], v[1], v[2], v[3]]
        })
        .collect()
}

fn mtimes(dir: &Path) -> Vec<(PathBuf, SystemTime)> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            v.extend(mtimes(&p));
        } else {
            v.push((p.clone(), e.metadata().unwrap().modified().unwrap()));
        }
    }
    v.sort();
    v
}

fn mtime(p: &Path) -> SystemTime {
    std::fs::metadata(p).unwrap().modified().unwrap()
}

fn gray_png(p: &Path) -> Vec<bool> {
    let img = image::open(p).unwrap().into_luma8();
    img.pixels().map(|p| p.0[0] == 255).collect()
}

/// pycocotools' area and `toBbox` ([x, y, w, h], w = last column + 1 − first), by hand.
fn area_and_bbox(mask: &[bool], w: usize) -> (u64, [u64; 4]) {
    let on: Vec<(usize, usize)> = (0..mask.len())
        .filter(|&i| mask[i])
        .map(|i| (i % w, i / w))
        .collect();
    let (x0, x1) = (
        on.iter().map(|p| p.0).min().unwrap(),
        on.iter().map(|p| p.0).max().unwrap(),
    );
    let (y0, y1) = (
        on.iter().map(|p| p.1).min().unwrap(),
        on.iter().map(|p| p.1).max().unwrap(),
    );
    (
        on.len() as u64,
        [
            x0 as u64,
            y0 as u64,
            (x1 + 1 - x0) as u64,
            (y1 + 1 - y0) as u64,
        ],
    )
}

#[test]
fn predict_folder_outputs_resume_and_errors() {
    let Some(model) = model_path() else { return };
    let dir = tempfile::tempdir().unwrap();
    let input = input_folder(dir.path());
    let out = dir.path().join("out");
    let csv = fixture("predict/prompts.csv");
    let args = |prompts: &Path, extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "predict",
            "--model",
            s(&model),
            "--input",
            s(&input),
            "--out",
            s(&out),
            "--prompts",
            s(prompts),
            "--labels-format",
            "png,tiff",
            "--objects",
        ]
        .iter()
        .map(|x| x.to_string())
        .collect();
        v.extend(extra.iter().map(|x| x.to_string()));
        v
    };
    let run = |prompts: &Path, extra: &[&str]| {
        let a = args(prompts, extra);
        segadapt(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };

    // First run: the crop is segmented, the broken file fails, the run says so and exits 1.
    let o = run(&csv, &[]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(!t.contains("panicked"), "{t}");
    assert!(t.contains("broken.png: FAILED"), "{t}");
    assert!(
        t.contains("2 images: 1 segmented, 0 skipped (already done), 1 failed"),
        "{t}"
    );
    assert!(t.contains("1 of 2 images failed"), "{t}");
    assert!(!out.join("broken_masks.json").exists());
    assert!(!out.join("broken_labels.png").exists());

    let (w, h) = (160usize, 160usize);
    let png = image::open(out.join("nuclei_crop_labels.png"))
        .unwrap()
        .into_luma16();
    let tif = load_labels(&out.join("nuclei_crop_labels.tif")).unwrap();
    let labels: Vec<u32> = png.as_raw().iter().map(|&v| v as u32).collect();
    assert_eq!((png.width() as usize, png.height() as usize), (w, h));
    assert_eq!(tif.labels, labels, "label TIFF differs from the label PNG");

    let coco: Value =
        serde_json::from_slice(&std::fs::read(out.join("coco.json")).unwrap()).unwrap();
    assert_eq!(coco["images"].as_array().unwrap().len(), 1);
    assert_eq!(coco["images"][0]["file_name"], "nuclei_crop.png");
    let anns = coco["annotations"].as_array().unwrap();
    let boxes = boxes();
    assert_eq!(anns.len(), boxes.len());
    for (i, (a, b)) in anns.iter().zip(&boxes).enumerate() {
        let k = i + 1;
        let seg = &a["segmentation"];
        assert_eq!(seg["size"], serde_json::json!([h, w]));
        let mask = Rle::from_coco_string(seg["counts"].as_str().unwrap(), h, w)
            .unwrap()
            .to_mask();
        let (area, bbox) = area_and_bbox(&mask, w);
        assert_eq!(a["area"], area, "object {k}");
        assert_eq!(a["bbox"], serde_json::json!(bbox), "object {k}");
        assert_eq!(a["label"], k);
        assert!(area > 150, "object {k}: {area} px for a nucleus");
        // The boxes are disjoint, so label k is exactly object k.
        let region: Vec<bool> = labels.iter().map(|&l| l == k as u32).collect();
        assert_eq!(region, mask, "label {k} vs COCO object {k}");
        let object_png = out.join(format!("nuclei_crop_objects/nuclei_crop_{k:04}.png"));
        assert_eq!(gray_png(&object_png), mask, "object PNG {k}");
        // The single-image path on the same box.
        let single = dir.path().join(format!("segment_{k}.png"));
        let bx = format!("{},{},{},{}", b[0], b[1], b[2], b[3]);
        let o = segadapt(&[
            "segment",
            "--model",
            s(&model),
            "--image",
            s(&input.join("nuclei_crop.png")),
            "--box",
            &bx,
            "--out",
            s(&single),
        ]);
        assert!(o.status.success(), "{}", text(&o));
        assert_eq!(
            gray_png(&single),
            mask,
            "object {k} vs segadapt segment --box {bx}"
        );
    }
    assert!(labels.iter().all(|&l| l as usize <= boxes.len()));

    // Second run: nothing to do, nothing touched, the model not even loaded.
    let before = mtimes(&out);
    let t0 = std::time::Instant::now();
    let o = run(&csv, &[]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "the broken file still fails: {t}");
    assert!(
        t.contains("0 segmented, 1 skipped (already done), 1 failed"),
        "{t}"
    );
    assert_eq!(
        mtimes(&out),
        before,
        "a run with nothing to do changed files"
    );
    println!(
        "resumed run with nothing to do: {:.2} s",
        t0.elapsed().as_secs_f64()
    );

    // A deleted output: only that image runs again, and the output is back.
    let tif_path = out.join("nuclei_crop_labels.tif");
    std::fs::remove_file(&tif_path).unwrap();
    let png_time = mtime(&out.join("nuclei_crop_labels.png"));
    let o = run(&csv, &[]);
    assert!(text(&o).contains("1 segmented, 0 skipped"), "{}", text(&o));
    assert_eq!(load_labels(&tif_path).unwrap().labels, labels);
    assert_ne!(mtime(&out.join("nuclei_crop_labels.png")), png_time);

    // A record cut short (what a non-atomic writer killed mid-write leaves) is not "done",
    // and a dead writer's temp file is cleaned up.
    let record = out.join("nuclei_crop_masks.json");
    let bytes = std::fs::read(&record).unwrap();
    std::fs::write(&record, &bytes[..bytes.len() / 2]).unwrap();
    let stale = out.join(".nuclei_crop_labels.png.tmp-4000000-0");
    std::fs::write(&stale, b"half").unwrap();
    let o = run(&csv, &[]);
    assert!(text(&o).contains("1 segmented, 0 skipped"), "{}", text(&o));
    assert_eq!(
        std::fs::read(&record).unwrap(),
        bytes,
        "redone record differs"
    );
    assert!(!stale.exists(), "stale temp file left");

    // Other prompts for a finished image: refused without --overwrite, redone with it.
    let two = dir.path().join("two.csv");
    let csv_text = std::fs::read_to_string(&csv).unwrap();
    let kept: Vec<&str> = csv_text.lines().filter(|l| !l.contains("117,52")).collect();
    std::fs::write(&two, kept.join("\n")).unwrap();
    // (coco.json is rewritten: it lists this run's images, and the refused one is not.)
    let image_files = || {
        let mut v = mtimes(&out);
        v.retain(|(p, _)| !p.ends_with("coco.json"));
        v
    };
    let before = image_files();
    let o = run(&two, &[]);
    let t = text(&o);
    assert!(t.contains("--overwrite"), "{t}");
    assert!(t.contains("2 failed"), "{t}");
    assert_eq!(image_files(), before, "a refused image changed its files");
    let o = run(&two, &["--overwrite"]);
    assert!(text(&o).contains("1 segmented"), "{}", text(&o));
    let coco: Value =
        serde_json::from_slice(&std::fs::read(out.join("coco.json")).unwrap()).unwrap();
    assert_eq!(coco["annotations"].as_array().unwrap().len(), 2);
    assert!(
        !out.join("nuclei_crop_objects/nuclei_crop_0003.png")
            .exists()
    );
    let png = image::open(out.join("nuclei_crop_labels.png"))
        .unwrap()
        .into_luma16();
    let now: Vec<u32> = png.as_raw().iter().map(|&v| v as u32).collect();
    let want: Vec<u32> = labels.iter().map(|&l| if l == 3 { 0 } else { l }).collect();
    assert_eq!(now, want, "two of the three objects, same masks");
}

/// Segment everything through `predict` (on a project folder) gives `segadapt everything`'s
/// masks, in its order, and the same label image.
#[test]
fn predict_everything_matches_everything() {
    let Some(model) = model_path() else { return };
    let dir = tempfile::tempdir().unwrap();
    // The input is a project folder: its images are predicted, under their names.
    let input = dir.path().join("project");
    let mut project = OpenProject::create(&input, "p").unwrap();
    project
        .add_image(&fixture("predict/nuclei_crop.png"), true)
        .unwrap();
    project.save().unwrap();
    let image = input.join("images/nuclei_crop.png");
    assert!(image.is_file());
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let grid = ["--points-per-side", "4"];
    let o = segadapt(
        &[
            &[
                "predict",
                "--model",
                s(&model),
                "--input",
                s(&input),
                "--out",
                s(&a),
            ][..],
            &grid,
        ]
        .concat(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = segadapt(
        &[
            &[
                "everything",
                "--model",
                s(&model),
                "--image",
                s(&image),
                "--out",
                s(&b),
            ][..],
            &grid,
        ]
        .concat(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let read =
        |p: PathBuf| -> Value { serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap() };
    let ours = read(a.join("coco.json"));
    let theirs = read(b.join("nuclei_crop_masks.json"));
    let counts = |v: &Value| -> Vec<String> {
        v["annotations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["segmentation"]["counts"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(!counts(&theirs).is_empty());
    assert_eq!(counts(&ours), counts(&theirs));
    assert_eq!(
        std::fs::read(a.join("nuclei_crop_labels.png")).unwrap(),
        std::fs::read(b.join("nuclei_crop_labels.png")).unwrap(),
        "label images differ"
    );
    for (x, y) in ours["annotations"]
        .as_array()
        .unwrap()
        .iter()
        .zip(theirs["annotations"].as_array().unwrap())
    {
        assert_eq!(x["stability_score"], y["stability_score"]);
        assert_eq!(x["predicted_iou"], y["predicted_iou"]);
    }
}

/// Bad prompt files and inputs are clear errors (exit 1, no panic) before anything is written.
#[test]
fn bad_prompt_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let input = input_folder(dir.path());
    let out = dir.path().join("out");
    // Never loaded: every case fails before the model would.
    let model = fixture("mobilesam_tiny.pth");
    let write = |name: &str, body: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        p
    };
    let cases = [
        (
            write("a.csv", "image,x0,y0,x1,y1\nnuclei_crop.png,1,2,x,4\n"),
            "line 2",
        ),
        (
            write("b.csv", "image,x0,y0,x1,y1\nnuclei_crop.png,9,9,1,1\n"),
            "x1 must be",
        ),
        (write("c.csv", "img,x,y\n"), "unknown column 'img'"),
        (
            write("d.csv", "# nothing\n\nimage,x,y\n"),
            "holds no prompts",
        ),
        (write("e.csv", "image,x,y\nother.png,3,3\n"), "not in"),
        (write("f.json", "{\"images\": [}"), "not valid JSON"),
        (
            write(
                "g.json",
                r#"{"images":[{"id":1,"file_name":"nuclei_crop.png"}],
             "annotations":[{"image_id":1,"bbox":[1,2,3]}]}"#,
            ),
            "[x, y, w, h]",
        ),
        (dir.path().join("missing.csv"), "missing.csv"),
    ];
    for (prompts, want) in &cases {
        let o = segadapt(&[
            "predict",
            "--model",
            s(&model),
            "--input",
            s(&input),
            "--out",
            s(&out),
            "--prompts",
            s(prompts),
        ]);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(1), "{}: {t}", prompts.display());
        assert!(
            t.contains(want),
            "{}: '{want}' not in: {t}",
            prompts.display()
        );
        assert!(!t.contains("panicked"), "{t}");
    }
    let o = segadapt(&[
        "predict",
        "--model",
        s(&model),
        "--input",
        s(&input),
        "--out",
        s(&input),
    ]);
    assert!(text(&o).contains("not be the input folder"), "{}", text(&o));
    let o = segadapt(&[
        "predict",
        "--model",
        s(&model),
        "--input",
        s(&input),
        "--out",
        s(&out),
        "--points-per-side",
        "0",
    ]);
    assert!(text(&o).contains("points per side"), "{}", text(&o));
    assert!(!out.exists(), "a refused run created the output folder");
}

/// The reverse direction of tools/check_interchange.py: 16-bit label images written by
/// tifffile (plain, zlib, big-endian, tiled) and imageio (PNG) for a known array read back
/// exactly: value(x, y) = (x·257 + y·4099) mod 65536 on 23×17, 65535 at (0, 0).
#[test]
fn label_files_of_other_writers_read_back() {
    let (w, h) = (23usize, 17usize);
    let want: Vec<u32> = (0..w * h)
        .map(|i| {
            let (x, y) = (i % w, i / w);
            if i == 0 {
                65535
            } else {
                ((x * 257 + y * 4099) % 65536) as u32
            }
        })
        .collect();
    for name in [
        "labels_tifffile.tif",
        "labels_tifffile_zlib.tif",
        "labels_tifffile_bigendian.tif",
        "labels_tifffile_tiled.tif",
        "labels_imageio.png",
    ] {
        let l = load_labels(&fixture(&format!("predict/{name}")))
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        assert_eq!((l.width, l.height), (w, h), "{name}");
        assert_eq!(l.labels, want, "{name}");
    }
}
