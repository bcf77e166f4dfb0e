//! "Propose all objects" driven through egui_kittest like a user: the shortcut starts SAM's
//! automatic mask generator on the worker (tiny random-weight SAM on the CPU), progress
//! arrives, the proposals appear without touching the object list; clicks and keys accept or
//! reject them, accepted ones are ordinary objects on disk, and every decision undoes.

mod common;

use std::cell::Cell;
use std::path::Path;
use std::time::{Duration, Instant};

use egui::{Event, Key, Modifiers, PointerButton};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use segadapt::app::{AppConfig, Decision, SegApp};
use segadapt::project::project::OpenProject;
use segadapt::service::worker::ModelSpec;

fn tiny_app(dir: &Path) -> SegApp {
    let mut cfg = AppConfig::new(segadapt::device::cpu());
    cfg.model = Some(ModelSpec {
        path: common::fixture("sam_vit_tiny.pth"),
        config: Some(common::fixture_config("sam_vit_tiny.json")),
    });
    cfg.settings_file = None;
    cfg.model_dir = dir.join("models");
    cfg.demo_dir = dir.join("demo");
    SegApp::new(cfg, None)
}

fn run_until(
    h: &mut Harness<'_, SegApp>,
    what: &str,
    timeout_s: u64,
    cond: impl Fn(&SegApp) -> bool,
) {
    let t = Instant::now();
    while !cond(h.state()) {
        h.step();
        assert!(
            t.elapsed() < Duration::from_secs(timeout_s),
            "timed out waiting for {what}; toasts: {:?}",
            h.state()
                .toasts
                .iter()
                .map(|t| t.text.clone())
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(15));
    }
    h.step();
}

fn click_image(h: &mut Harness<'_, SegApp>, p: [f32; 2], button: PointerButton) {
    let pos = h.state().image_to_screen(p).expect("canvas shown");
    h.event(Event::PointerMoved(pos));
    h.step();
    for pressed in [true, false] {
        h.event(Event::PointerButton {
            pos,
            button,
            pressed,
            modifiers: Modifiers::NONE,
        });
    }
    h.step();
}

fn click_label(h: &mut Harness<'_, SegApp>, label: &str) {
    h.step();
    h.step();
    h.get_by_label(label).click();
    h.step();
}

fn n_objects(a: &SegApp) -> usize {
    a.project.as_ref().unwrap().project.images[0].objects.len()
}

fn pending(a: &SegApp) -> usize {
    a.pending_proposals()
}

fn decision(a: &SegApp, i: usize) -> Decision {
    a.shown_proposals().unwrap().decided[i]
}

/// A pixel centre where `proposal_at` picks a pending proposal other than `not`, and that one.
fn pixel_of_a_proposal(a: &SegApp, not: &[usize]) -> ([f32; 2], usize) {
    let s = a.shown_proposals().unwrap();
    let (w, h) = (256, 256);
    for y in (0..h).step_by(3) {
        for x in (0..w).step_by(3) {
            let p = [x as f32 + 0.5, y as f32 + 0.5];
            if let Some(i) = a.proposal_at(p)
                && !not.contains(&i)
            {
                assert!(s.items[i].mask.get(x, y));
                return (p, i);
            }
        }
    }
    panic!("no pixel of a pending proposal");
}

/// Runs the generator with thresholds that keep the random model's masks.
fn propose(h: &mut Harness<'_, SegApp>, points_per_side: usize) {
    {
        let p = &mut h.state_mut().proposals.params;
        p.points_per_side = points_per_side;
        p.points_per_batch = 4;
        // A random model rates its masks at random: keep them all, duplicates too.
        p.pred_iou_thresh = 0.0;
        p.stability_score_thresh = 0.0;
        p.box_nms_thresh = 1.0;
    }
    h.key_press_modifiers(Modifiers::SHIFT, Key::P);
    h.step();
}

#[test]
fn ui_propose_all_objects_accept_reject_undo() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::builder()
        .with_size([1400.0, 900.0])
        .with_accessibility_check(false)
        .allow_missing_glyphs()
        .build_ui_state(|ui, app: &mut SegApp| app.ui(ui), tiny_app(dir.path()));
    h.step();
    h.get_by_label("Open the demo project (nuclei)").click();
    run_until(&mut h, "demo project and embedding", 180, |a| {
        a.project.is_some() && a.current_embedded()
    });
    let objects0 = n_objects(h.state());
    assert_eq!(objects0, 12);

    // Shift+P: the job runs on the worker; progress arrives (1 embedding + 4 batches of 4).
    propose(&mut h, 4);
    assert!(h.state().proposals.running.is_some(), "Shift+P starts it");
    let max_done = Cell::new(0);
    let total = Cell::new(0);
    run_until(&mut h, "proposals", 120, |a| {
        if let Some(r) = &a.proposals.running {
            max_done.set(max_done.get().max(r.done));
            total.set(r.total);
        }
        a.shown_proposals().is_some()
    });
    assert_eq!(total.get(), 5, "progress reports 1 + 16/4 steps");
    assert!(max_done.get() >= 1, "progress events reached the app");
    let n = h.state().shown_proposals().unwrap().items.len();
    let masks_made = n + h.state().shown_proposals().unwrap().duplicates;
    assert!(n >= 4, "{n} proposals");
    assert_eq!(pending(h.state()), n);
    assert_eq!(n_objects(h.state()), objects0, "proposals are not objects");
    assert!(h.query_by_label_contains("to review").is_some());
    assert!(h.query_by_label("Accept all proposals").is_some());

    // Click on a proposal: it becomes an object with its exact mask.
    let (p, i) = pixel_of_a_proposal(h.state(), &[]);
    let mask_i = h.state().shown_proposals().unwrap().items[i].mask.clone();
    click_image(&mut h, p, PointerButton::Primary);
    assert_eq!(n_objects(h.state()), objects0 + 1, "click accepts");
    assert_eq!(decision(h.state(), i), Decision::Accepted);
    assert!(h.state().draft.points.is_empty(), "the click was no prompt");
    let obj = h.state().project.as_ref().unwrap().project.images[0]
        .objects
        .last()
        .unwrap()
        .clone();
    assert_eq!(obj.source, "sam-auto");
    assert_eq!(obj.area, mask_i.bits.iter().filter(|&&v| v).count() as u64);

    // Right click on another: rejected, the object list unchanged.
    let (p, j) = pixel_of_a_proposal(h.state(), &[i]);
    click_image(&mut h, p, PointerButton::Secondary);
    assert_eq!(decision(h.state(), j), Decision::Rejected);
    assert_eq!(n_objects(h.state()), objects0 + 1, "reject adds nothing");

    // Keys: J moves the highlight, Y accepts it, X rejects the next one.
    let f0 = h.state().shown_proposals().unwrap().focus.unwrap();
    h.key_press(Key::J);
    h.step();
    let f1 = h.state().shown_proposals().unwrap().focus.unwrap();
    assert_ne!(f0, f1, "J moves to the next pending proposal");
    assert_eq!(decision(h.state(), f1), Decision::Pending);
    h.key_press(Key::Y);
    h.step();
    assert_eq!(decision(h.state(), f1), Decision::Accepted);
    assert_eq!(n_objects(h.state()), objects0 + 2);
    let f2 = h.state().shown_proposals().unwrap().focus.unwrap();
    h.key_press(Key::X);
    h.step();
    assert_eq!(decision(h.state(), f2), Decision::Rejected);
    assert_eq!(n_objects(h.state()), objects0 + 2);

    // Undo the reject, then the accept; redo both.
    h.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    h.step();
    assert_eq!(decision(h.state(), f2), Decision::Pending);
    h.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    h.step();
    assert_eq!(decision(h.state(), f1), Decision::Pending);
    assert_eq!(
        n_objects(h.state()),
        objects0 + 1,
        "undo removes the object"
    );
    h.key_press_modifiers(Modifiers::COMMAND | Modifiers::SHIFT, Key::Z);
    h.key_press_modifiers(Modifiers::COMMAND | Modifiers::SHIFT, Key::Z);
    h.step();
    assert_eq!(decision(h.state(), f1), Decision::Accepted);
    assert_eq!(decision(h.state(), f2), Decision::Rejected);
    assert_eq!(n_objects(h.state()), objects0 + 2);

    // Accept all: exactly the pending ones become objects, saved with their masks.
    let left = pending(h.state());
    assert!(left > 0);
    click_label(&mut h, "Accept all proposals");
    assert_eq!(pending(h.state()), 0);
    assert_eq!(n_objects(h.state()), objects0 + 2 + left);
    h.state().flush();
    let root = h.state().project.as_ref().unwrap().root.clone();
    let disk = OpenProject::open(&root).unwrap();
    let img = &disk.project.images[0];
    assert_eq!(img.objects.len(), objects0 + 2 + left);
    let s = h.state().shown_proposals().unwrap();
    let accepted: Vec<usize> = (0..n)
        .filter(|&k| s.decided[k] == Decision::Accepted)
        .collect();
    assert_eq!(accepted.len(), 2 + left);
    for o in &img.objects[objects0..] {
        let m = disk.read_mask(o, 256, 256).unwrap();
        assert!(
            accepted
                .iter()
                .any(|&k| s.items[k].mask.to_full(256, 256) == m),
            "{} is one accepted proposal's mask",
            o.label
        );
    }
    // One undo takes the whole batch back.
    h.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    h.step();
    assert_eq!(n_objects(h.state()), objects0 + 2);
    assert_eq!(pending(h.state()), left);

    // A new run replaces them and leaves out what the accepted objects already cover (the
    // generator is deterministic); reject all leaves the objects as they are.
    propose(&mut h, 4);
    run_until(&mut h, "second proposals", 120, |a| {
        a.proposals.running.is_none() && a.shown_proposals().is_some()
    });
    let s = h.state().shown_proposals().unwrap();
    assert!(s.duplicates >= 2, "{} duplicates", s.duplicates);
    assert_eq!(s.items.len() + s.duplicates, masks_made);
    click_label(&mut h, "Reject all proposals");
    assert_eq!(pending(h.state()), 0);
    assert_eq!(n_objects(h.state()), objects0 + 2);

    // Esc cancels a run between batches: no proposals, nothing added.
    propose(&mut h, 16);
    run_until(&mut h, "first batch", 120, |a| {
        a.proposals.running.as_ref().is_some_and(|r| r.done >= 2)
    });
    h.key_press(Key::Escape);
    h.step();
    run_until(&mut h, "cancel", 120, |a| a.proposals.running.is_none());
    assert!(h.state().shown_proposals().is_none());
    assert_eq!(n_objects(h.state()), objects0 + 2);
}

/// The worker's proposals (generator on the cached embedding) are exactly the masks of
/// `segadapt everything`'s path (the generator embedding the image itself), with progress
/// for the embedding step and each batch.
#[test]
fn worker_proposals_equal_the_generator_run_directly() {
    use segadapt::sam::automatic_mask_generator::SamAutomaticMaskGenerator;
    use segadapt::service::Waker;
    use segadapt::service::worker::{AmgParams, Event as W, ImageKey, Job, Slot, WorkerHandle};
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    let (path, config) = (
        common::fixture("sam_vit_tiny.pth"),
        common::fixture_config("sam_vit_tiny.json"),
    );
    let image = Arc::new(image::RgbImage::from_fn(96, 80, |x, y| {
        let blob = (x as i32 - 40).pow(2) + (y as i32 - 35).pow(2) < 300;
        image::Rgb(if blob {
            [230, 220, 210]
        } else {
            [(x * 2) as u8, (y * 3) as u8, 20]
        })
    }));
    let params = AmgParams {
        points_per_side: 4,
        points_per_batch: 8,
        pred_iou_thresh: 0.0,
        stability_score_thresh: 0.0,
        ..AmgParams::default()
    };
    let m =
        segadapt::engine::load(&path, None, Some(config.clone()), segadapt::device::cpu()).unwrap();
    let direct = SamAutomaticMaskGenerator::new(&m.predictor, params.clone())
        .unwrap()
        .generate(&image, &mut |_, _| {});
    assert!(!direct.is_empty());

    let w = WorkerHandle::spawn(segadapt::device::cpu(), Waker::default());
    w.send(Job::LoadModel(ModelSpec {
        path,
        config: Some(config),
    }));
    w.send(Job::Propose {
        slot: Slot::Base,
        key: ImageKey {
            id: 1,
            sha256: "feedfacefeedface".into(),
        },
        image: image.clone(),
        cache_dir: None,
        params: params.clone(),
        tiles: segadapt::predict::tiling::TileConfig::default(),
        run: 9,
        cancel: Arc::new(AtomicBool::new(false)),
    });
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut progress = Vec::new();
    let proposals = loop {
        assert!(
            Instant::now() < deadline,
            "no answer; progress {progress:?}"
        );
        match w.rx.recv_timeout(Duration::from_millis(200)) {
            Ok(W::ProposeProgress { run, done, total }) => {
                assert_eq!(run, 9);
                progress.push((done, total));
            }
            Ok(W::Proposed { run, proposals, .. }) => {
                assert_eq!(run, 9);
                break proposals;
            }
            Ok(W::ProposeError { error, .. }) | Ok(W::ModelError { error, .. }) => {
                panic!("{error}")
            }
            _ => {}
        }
    };
    // 16 points in batches of 8: the embedding step, then 2 batches.
    assert_eq!(progress, vec![(0, 3), (1, 3), (2, 3), (3, 3)]);
    assert_eq!(proposals.len(), direct.len());
    for r in &direct {
        let mask = r.mask();
        let [mh, mw] = r.rle.size;
        let p = proposals
            .iter()
            .find(|p| p.mask.to_full(mw, mh) == mask)
            .expect("every mask of the direct run is proposed");
        assert_eq!(p.area, r.area);
        assert_eq!(p.predicted_iou, r.predicted_iou);
    }

    // Above the app's tile threshold the worker segments tile by tile: the same masks as
    // the tiled generator run directly on the 2×2 grid of the 96×80 image.
    use segadapt::predict::tiled_everything::generate_tiled;
    use segadapt::predict::tiling::{TileConfig, tile_grid};
    let tiles = TileConfig {
        tile: 48,
        halo: 16,
        tile_above: 64,
    };
    let generator = SamAutomaticMaskGenerator::new(&m.predictor, params.clone()).unwrap();
    let grid = tile_grid(96, 80, 48, 16);
    assert_eq!(grid.len(), 4);
    let direct: Vec<_> = generate_tiled(
        &generator,
        &image,
        &grid,
        &mut |_, _| {},
        &AtomicBool::new(false),
    )
    .unwrap()
    .into_iter()
    .filter(|m| m.record.area > 0)
    .collect();
    w.send(Job::Propose {
        slot: Slot::Base,
        key: ImageKey {
            id: 1,
            sha256: "feedfacefeedface".into(),
        },
        image: image.clone(),
        cache_dir: None,
        params,
        tiles,
        run: 10,
        cancel: Arc::new(AtomicBool::new(false)),
    });
    let deadline = Instant::now() + Duration::from_secs(300);
    let proposals = loop {
        assert!(Instant::now() < deadline, "no tiled answer");
        match w.rx.recv_timeout(Duration::from_millis(200)) {
            Ok(W::Proposed {
                run: 10, proposals, ..
            }) => break proposals,
            Ok(W::ProposeError { error, .. }) => panic!("{error}"),
            _ => {}
        }
    };
    assert_eq!(proposals.len(), direct.len());
    for t in &direct {
        let mask = t.record.mask();
        let [mh, mw] = t.record.rle.size;
        assert!(
            proposals.iter().any(|p| p.mask.to_full(mw, mh) == mask),
            "tiled mask proposed"
        );
    }
}

/// "Predict all images" (Export tab) writes what `segadapt predict` writes for the same
/// project, model and segment-everything settings: the CLI run is the oracle. Tiny MobileSAM
/// (the CLI detects it without a config), a 4×4 grid keeping every mask.
#[test]
fn ui_predict_all_images_equals_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::fixture("mobilesam_tiny.pth");
    let mut cfg = AppConfig::new(segadapt::device::cpu());
    cfg.model = Some(ModelSpec {
        path: model.clone(),
        config: None,
    });
    cfg.settings_file = None;
    cfg.model_dir = dir.path().join("models");
    cfg.demo_dir = dir.path().join("demo");
    let mut h = Harness::builder()
        .with_size([1400.0, 900.0])
        .with_accessibility_check(false)
        .allow_missing_glyphs()
        .build_ui_state(|ui, app: &mut SegApp| app.ui(ui), SegApp::new(cfg, None));
    h.step();
    h.get_by_label("Open the demo project (nuclei)").click();
    run_until(&mut h, "demo project and model", 60, |a| {
        a.project.is_some() && a.base.spec.is_some()
    });
    {
        let p = &mut h.state_mut().proposals.params;
        p.points_per_side = 4;
        p.points_per_batch = 4;
        p.pred_iou_thresh = 0.0;
        p.stability_score_thresh = 0.0;
        p.box_nms_thresh = 1.0;
    }
    let export = dir.path().join("exported");
    h.state_mut().export_dir = export.to_string_lossy().to_string();
    h.get_by_label("Export").click();
    h.step();
    h.get_by_label("Predict all images").click();
    h.step();
    run_until(&mut h, "predict all images", 240, |a| {
        a.predict_summary.is_some()
    });
    let s = h.state().predict_summary.as_ref().unwrap();
    assert_eq!(
        (s.images, s.done, s.failed.len()),
        (4, 4, 0),
        "{}",
        s.line()
    );
    let project_root = h.state().project.as_ref().unwrap().root.clone();

    let cli_out = dir.path().join("cli");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_segadapt"))
        .args(["--device", "cpu", "predict", "--model"])
        .arg(&model)
        .arg("--input")
        .arg(&project_root)
        .arg("--out")
        .arg(&cli_out)
        .args([
            "--objects",
            "--points-per-side",
            "4",
            "--points-per-batch",
            "4",
            "--pred-iou-thresh",
            "0",
            "--stability-score-thresh",
            "0",
            "--box-nms-thresh",
            "1",
        ])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{text}");
    let app_out = export.join("predict");
    let read = |p: std::path::PathBuf| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(&p).unwrap_or_else(|e| panic!("{p:?}: {e}"))).unwrap()
    };
    let (app_coco, cli_coco) = (
        read(app_out.join("coco.json")),
        read(cli_out.join("coco.json")),
    );
    let anns = |c: &serde_json::Value| -> Vec<(serde_json::Value, serde_json::Value)> {
        c["annotations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| (a["segmentation"].clone(), a["bbox"].clone()))
            .collect()
    };
    assert!(!anns(&cli_coco).is_empty(), "the CLI found masks");
    assert_eq!(anns(&app_coco), anns(&cli_coco), "COCO annotations");
    for img in cli_coco["images"].as_array().unwrap() {
        let stem = Path::new(img["file_name"].as_str().unwrap())
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .to_string();
        let f = format!("{stem}_labels.png");
        assert_eq!(
            std::fs::read(app_out.join(&f)).unwrap(),
            std::fs::read(cli_out.join(&f)).unwrap(),
            "{f}"
        );
    }
    println!("predict all: {}", s.line());
}
