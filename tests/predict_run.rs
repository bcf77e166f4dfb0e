//! The folder run behind `segadapt predict` and the app's "Predict all images", called as a
//! library: a stop (Ctrl-C in the CLI, Stop in the app) ends the run after the image in
//! progress, keeps what is finished, writes the run's COCO file for it, and the same run again
//! skips the finished images and does the rest — ending with the files of an uninterrupted run.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use image::RgbImage;
use segadapt::predict::outputs::OutputSpec;
use segadapt::predict::prompt_file::PromptFile;
use segadapt::predict::run::{RunEvent, RunRequest, run_folder};
use segadapt::predict::tiling::TileConfig;
use segadapt::project::coco::CocoSegmentation;
use segadapt::sam::automatic_mask_generator::AmgParams;

fn request(input: &Path, out: &Path, prompts: &Path) -> RunRequest {
    RunRequest {
        input: input.into(),
        model: common::fixture("mobilesam_tiny.pth"),
        config: None,
        adapter: None,
        prompts: Some(PromptFile::load(prompts).unwrap()),
        params: AmgParams::default(),
        multimask: false,
        outputs: OutputSpec {
            dir: out.into(),
            labels_png: true,
            labels_tiff: false,
            objects: true,
            coco_segmentation: CocoSegmentation::Rle,
        },
        overwrite: false,
        tiles: TileConfig::default(),
        device: segadapt::device::cpu(),
    }
}

#[test]
fn a_stopped_run_keeps_finished_images_and_the_next_run_completes_it() {
    let root = tempfile::tempdir().unwrap();
    let input = root.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let mut csv = String::from("image,x0,y0,x1,y1\n");
    for k in 0..3u32 {
        let mut img = RgbImage::new(64, 48);
        for (x, y, p) in img.enumerate_pixels_mut() {
            let inside = (10 + 5 * k..30 + 5 * k).contains(&x) && (8..30).contains(&y);
            *p = if inside {
                image::Rgb([230, 220, 210])
            } else {
                image::Rgb([(x * 2) as u8, (y * 3) as u8, 40])
            };
        }
        img.save(input.join(format!("img{k}.png"))).unwrap();
        csv += &format!("img{k}.png,{},6,{},32\n", 8 + 5 * k, 32 + 5 * k);
    }
    let prompts = root.path().join("prompts.csv");
    std::fs::write(&prompts, csv).unwrap();

    // Stopped as the first image finishes.
    let out = root.path().join("out");
    let stop = AtomicBool::new(false);
    let mut finished = 0;
    let s = run_folder(&request(&input, &out, &prompts), &stop, &mut |e| {
        if let RunEvent::ImageFinished = e {
            finished += 1;
            stop.store(true, Ordering::Relaxed);
        }
    })
    .unwrap();
    assert!(s.cancelled);
    assert!(
        s.line().contains("stopped with 2 not started"),
        "{}",
        s.line()
    );
    assert_eq!((s.done, s.skipped, s.failed.len(), finished), (1, 0, 0, 1));
    assert!(out.join("img0_masks.json").is_file());
    assert!(!out.join("img1_masks.json").exists() && !out.join("img1_labels.png").exists());
    let coco: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("coco.json")).unwrap()).unwrap();
    assert_eq!(coco["images"].as_array().unwrap().len(), 1);

    // The same run again: img0 skipped, the rest done.
    let go = AtomicBool::new(false);
    let s = run_folder(&request(&input, &out, &prompts), &go, &mut |_| {}).unwrap();
    assert!(!s.cancelled);
    assert_eq!((s.done, s.skipped, s.failed.len()), (2, 1, 0));

    // Equal to a run never stopped.
    let whole = root.path().join("whole");
    let s = run_folder(&request(&input, &whole, &prompts), &go, &mut |_| {}).unwrap();
    assert_eq!(s.done, 3);
    for f in [
        "coco.json",
        "img0_labels.png",
        "img1_labels.png",
        "img2_labels.png",
        "img2_objects/img2_0001.png",
    ] {
        let (a, b) = (out.join(f), whole.join(f));
        if f == "coco.json" {
            // The settings name the output folder nowhere, so the files are equal as JSON.
            let j = |p: &Path| -> serde_json::Value {
                serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
            };
            assert_eq!(j(&a), j(&b), "{f}");
        } else {
            assert_eq!(
                std::fs::read(&a).unwrap(),
                std::fs::read(&b).unwrap(),
                "{f}"
            );
        }
    }
}
