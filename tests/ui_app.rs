//! UI tests of the desktop app through egui_kittest: real user flows on the real app state,
//! with the tiny SAM fixture on the CPU (no GPU, no window). The overlay takes its CPU path.
//!
//! Flows: open the demo project with its button, click a point and get SAM's mask, accept it,
//! undo/redo, box and brush, persistence on disk; start a short NAS-LoRA training and see the
//! events reach the Adapt panel, cancel and resume; export and read the files back.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use egui::{Event, Key, Modifiers, PointerButton, Pos2};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use segadapt::app::{AppConfig, SegApp, Tab};
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

/// The tiny-model app reading `settings_json` from its settings file (returned).
fn app_with_settings(dir: &Path, settings_json: &str) -> (SegApp, std::path::PathBuf) {
    let settings = dir.join("app-settings.json");
    std::fs::write(&settings, settings_json).unwrap();
    let mut cfg = AppConfig::new(segadapt::device::cpu());
    cfg.model = Some(ModelSpec {
        path: common::fixture("sam_vit_tiny.pth"),
        config: Some(common::fixture_config("sam_vit_tiny.json")),
    });
    cfg.settings_file = Some(settings.clone());
    cfg.model_dir = dir.join("models");
    cfg.demo_dir = dir.join("demo");
    (SegApp::new(cfg, None), settings)
}

fn harness(app: SegApp) -> Harness<'static, SegApp> {
    Harness::builder()
        .with_size([1400.0, 900.0])
        .with_accessibility_check(false)
        .allow_missing_glyphs()
        .build_ui_state(|ui, app: &mut SegApp| app.ui(ui), app)
}

/// Runs frames until `cond` holds (background threads do the work meanwhile).
fn run_until(
    h: &mut Harness<'_, SegApp>,
    what: &str,
    timeout_s: u64,
    cond: impl Fn(&SegApp) -> bool,
) {
    let t = Instant::now();
    loop {
        h.step();
        if cond(h.state()) {
            break;
        }
        let errors: Vec<String> = h
            .state()
            .toasts
            .iter()
            .filter(|t| t.kind == segadapt::app::ToastKind::Error)
            .map(|t| t.text.clone())
            .collect();
        assert!(
            t.elapsed() < Duration::from_secs(timeout_s),
            "timed out waiting for {what}; error toasts: {errors:?}"
        );
        std::thread::sleep(Duration::from_millis(15));
    }
    h.step();
}

fn open_demo(h: &mut Harness<'_, SegApp>) {
    h.step();
    h.get_by_label("Open the demo project (nuclei)").click();
    run_until(h, "demo project", 30, |a| a.project.is_some());
    let p = h.state().project.as_ref().unwrap();
    assert_eq!(p.project.images.len(), 4);
    assert_eq!(p.project.n_objects(), 36);
    run_until(h, "model, image and embedding", 120, |a| {
        a.current_embedded()
    });
}

fn click_image(h: &mut Harness<'_, SegApp>, x: f32, y: f32, button: PointerButton) {
    let pos = h.state().image_to_screen([x, y]).expect("canvas shown");
    h.event(Event::PointerMoved(pos));
    h.event(Event::PointerButton {
        pos,
        button,
        pressed: true,
        modifiers: Modifiers::NONE,
    });
    h.event(Event::PointerButton {
        pos,
        button,
        pressed: false,
        modifiers: Modifiers::NONE,
    });
    h.step();
}

fn drag_image(h: &mut Harness<'_, SegApp>, a: [f32; 2], b: [f32; 2]) {
    let pa = h.state().image_to_screen(a).unwrap();
    let pb = h.state().image_to_screen(b).unwrap();
    h.event(Event::PointerMoved(pa));
    h.event(Event::PointerButton {
        pos: pa,
        button: PointerButton::Primary,
        pressed: true,
        modifiers: Modifiers::NONE,
    });
    for i in 1..=6 {
        let t = i as f32 / 6.0;
        h.event(Event::PointerMoved(Pos2::new(
            pa.x + (pb.x - pa.x) * t,
            pa.y + (pb.y - pa.y) * t,
        )));
    }
    h.event(Event::PointerButton {
        pos: pb,
        button: PointerButton::Primary,
        pressed: false,
        modifiers: Modifiers::NONE,
    });
    h.step();
}

/// Clicks a widget by its label where it is drawn now. kittest clicks at the node's rectangle
/// from the last frame; an edit made during that frame (undo, accept) can move the buttons in
/// the next one, so two frames run first to settle the layout, then the click is delivered.
fn click_label(h: &mut Harness<'_, SegApp>, label: &str) {
    h.step();
    h.step();
    h.get_by_label(label).click();
    h.step();
}

/// Cycles SAM's candidates (M) until the shown one is not empty (the tiny model is random).
fn pick_nonempty_candidate(h: &mut Harness<'_, SegApp>) {
    for _ in 0..3 {
        if h.state()
            .draft_mask
            .as_ref()
            .is_some_and(|m| m.iter().any(|&v| v))
        {
            break;
        }
        h.key_press(Key::M);
        h.step();
    }
}

fn n_objects(a: &SegApp, image: usize) -> usize {
    a.project.as_ref().unwrap().project.images[image]
        .objects
        .len()
}

#[test]
fn ui_annotate_flow() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = harness(tiny_app(dir.path()));
    open_demo(&mut h);
    let first = h.state().current.as_ref().unwrap().id;

    // Click a point → SAM's three candidates for a single point.
    click_image(&mut h, 100.0, 140.0, PointerButton::Primary);
    assert_eq!(h.state().draft.points.len(), 1);
    run_until(&mut h, "prediction", 60, |a| a.draft.pred.is_some());
    let pred = h.state().draft.pred.clone().unwrap();
    assert_eq!(pred.masks.len(), 3, "one point asks for multimask output");
    assert_eq!(pred.size, [256, 256]);
    assert!(h.state().click_latency_ms.is_some());
    pick_nonempty_candidate(&mut h);
    let choice_before = h.state().draft.choice;
    h.key_press(Key::M);
    h.step();
    assert_eq!(
        h.state().draft.choice,
        (choice_before + 1) % 3,
        "M cycles the candidates"
    );
    h.key_press(Key::M);
    h.key_press(Key::M);
    h.step();
    assert_eq!(h.state().draft.choice, choice_before);
    h.key_press(Key::Num2);
    h.step();
    assert_eq!(h.state().draft.choice, 1, "2 picks the second candidate");
    h.key_press(Key::Num1);
    h.step();
    assert_eq!(h.state().draft.choice, 0);
    pick_nonempty_candidate(&mut h);

    // A negative point: one mask, refined with the previous logits.
    click_image(&mut h, 30.0, 30.0, PointerButton::Secondary);
    assert_eq!(h.state().draft.points.len(), 2);
    assert!(!h.state().draft.points[1].positive);
    run_until(&mut h, "refined prediction", 60, |a| {
        a.draft.pred.as_ref().is_some_and(|p| p.masks.len() == 1)
    });
    if !h
        .state()
        .draft_mask
        .as_ref()
        .is_some_and(|m| m.iter().any(|&v| v))
    {
        // The random model may answer with an empty mask; paint so there is something to accept.
        h.state_mut().tool = segadapt::app::state::Tool::Brush;
        drag_image(&mut h, [90.0, 130.0], [110.0, 150.0]);
        h.state_mut().tool = segadapt::app::state::Tool::Prompt;
    }

    // Accept with the button.
    click_label(&mut h, "Accept (Enter)");
    assert_eq!(n_objects(h.state(), 0), 13);
    assert!(
        h.state().draft.points.is_empty(),
        "accepting starts a new object"
    );
    h.state().flush();
    let root = h.state().project.as_ref().unwrap().root.clone();
    let on_disk = OpenProject::open(&root).unwrap();
    let img = &on_disk.project.images[0];
    assert_eq!(
        img.objects.len(),
        13,
        "accepted object is in project.json at once"
    );
    let obj = img.objects.last().unwrap();
    assert_eq!(obj.prompts.points.len(), 2);
    let m = on_disk.read_mask(obj, 256, 256).unwrap();
    assert_eq!(m.iter().filter(|&&v| v).count() as u64, obj.area);

    // Undo: the object goes, the prompts come back; redo brings it back.
    h.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    h.step();
    assert_eq!(n_objects(h.state(), 0), 12);
    assert_eq!(
        h.state().draft.points.len(),
        2,
        "undo of accept restores the prompts"
    );
    h.key_press_modifiers(Modifiers::COMMAND | Modifiers::SHIFT, Key::Z);
    h.step();
    assert_eq!(n_objects(h.state(), 0), 13);
    assert!(h.state().draft.points.is_empty());
    click_label(&mut h, "Undo");
    assert_eq!(n_objects(h.state(), 0), 12);
    // Undo further until the negative point goes (a brush stroke may sit on top of it).
    let mut undos = 0;
    while h.state().draft.points.len() == 2 && undos < 3 {
        click_label(&mut h, "Undo");
        undos += 1;
    }
    assert_eq!(
        h.state().draft.points.len(),
        1,
        "undo removes the negative point"
    );
    for _ in 0..undos {
        click_label(&mut h, "Redo");
    }
    assert_eq!(h.state().draft.points.len(), 2);
    click_label(&mut h, "Redo");
    assert_eq!(n_objects(h.state(), 0), 13);
    h.state().flush();
    assert_eq!(
        OpenProject::open(&root).unwrap().project.images[0]
            .objects
            .len(),
        13
    );

    // Box prompt by dragging.
    drag_image(&mut h, [40.0, 40.0], [120.0, 110.0]);
    let b = h.state().draft.bbox.expect("a drag makes a box");
    assert!(
        (b[0] - 40.0).abs() < 2.0 && (b[3] - 110.0).abs() < 2.0,
        "box {b:?}"
    );
    run_until(&mut h, "box prediction", 60, |a| a.draft.pred.is_some());
    h.key_press(Key::Escape);
    h.step();
    assert!(h.state().draft.is_empty(), "Esc clears the prompts");

    // Delete an object, undo the delete.
    let victim = h.state().project.as_ref().unwrap().project.images[0].objects[0].id;
    h.state_mut().selected = Some(victim);
    h.key_press(Key::Delete);
    h.step();
    assert_eq!(n_objects(h.state(), 0), 12);
    h.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    h.step();
    assert_eq!(n_objects(h.state(), 0), 13);

    // Brush on the selected object changes its mask (new file version) and is undoable.
    h.state_mut().selected = Some(victim);
    let area0 = h.state().project.as_ref().unwrap().project.images[0].objects[0].area;
    h.state_mut().tool = segadapt::app::state::Tool::Brush;
    h.state_mut().brush_radius = 8.0;
    drag_image(&mut h, [5.0, 250.0], [60.0, 250.0]);
    let area1 = h.state().project.as_ref().unwrap().project.images[0].objects[0].area;
    assert!(
        area1 > area0,
        "brush grows the selected object ({area0} → {area1})"
    );
    h.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    h.step();
    assert_eq!(
        h.state().project.as_ref().unwrap().project.images[0].objects[0].area,
        area0
    );

    // Next image: embedding for it, objects list follows.
    h.key_press(Key::N);
    run_until(&mut h, "second image", 60, |a| {
        a.current
            .as_ref()
            .is_some_and(|c| c.id != first && c.rgb.is_some())
    });
    run_until(&mut h, "second embedding", 120, |a| a.current_embedded());

    // Help overlay.
    h.key_press(Key::F1);
    h.step();
    assert!(h.state().show_help);
    assert!(
        h.query_by_label("accept the mask as a new object")
            .is_some()
    );
    h.key_press(Key::Escape);
    h.step();
    assert!(!h.state().show_help);

    // The UI stayed cheap to build throughout.
    let (mean, max) = h.state().frame_numbers();
    println!("UI build time: mean {mean:.2} ms, max {max:.1} ms");
}

#[test]
fn ui_train_flow() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = harness(tiny_app(dir.path()));
    open_demo(&mut h);
    h.get_by_label("Adapt").click();
    h.step();
    assert_eq!(h.state().tab, Tab::Adapt);
    {
        let cfg = &mut h.state_mut().train_cfg;
        cfg.schedule.steps = 8;
        cfg.val_every = 4;
        cfg.objects_per_step = 2;
        cfg.early_stop_patience = 0;
    }
    h.get_by_label("Start Adapt").click();
    h.step();
    assert!(h.state().train.running(), "training started");
    // Cancel after the first step, then resume.
    run_until(&mut h, "first training step", 300, |a| {
        a.train.step >= 1 || !a.train.running()
    });
    assert!(
        h.state().train.running(),
        "still running after one step: {}",
        h.state().train.status
    );
    h.get_by_label("Cancel training").click();
    run_until(&mut h, "cancel", 300, |a| !a.train.running());
    assert!(
        h.state().train.cancelled.is_some(),
        "cancelled: {}",
        h.state().train.status
    );
    assert!(h.state().can_resume());
    h.get_by_label("Resume").click();
    h.step();
    run_until(&mut h, "training to finish", 600, |a| !a.train.running());
    let t = &h.state().train;
    assert!(t.error.is_none(), "training error: {:?}", t.error);
    assert_eq!(t.total_steps, 8);
    assert_eq!(t.step, 8);
    assert!(
        !t.loss.is_empty() && t.loss.iter().all(|p| p[1].is_finite()),
        "loss events reached the panel"
    );
    assert!(
        !t.val_dice.is_empty(),
        "validation events reached the panel"
    );
    assert!(
        t.alpha.is_some() && !t.cell_names.is_empty() && t.op_names.len() == 6,
        "α events reached the panel"
    );
    assert!(t.stage.is_some());
    let o = t.outcome.as_ref().expect("finished");
    println!("outcome: {}", o.message);
    // The panel shows the plots and the heatmap.
    assert!(h.query_by_label_contains("Architecture weights").is_some());
    assert!(h.query_by_label_contains("best Dice").is_some());
    // The run's adapters are in the project (the last step's one at least).
    let p = h.state().project.as_ref().unwrap();
    assert!(
        !p.project.adapters.is_empty(),
        "adapter registered in the project"
    );
    for a in &p.project.adapters {
        assert!(p.resolve(&a.path).is_file());
    }
    // Select it and compare A/B on a click.
    let rel = p.project.adapters.last().unwrap().path.clone();
    h.state_mut().select_adapter(Some(rel));
    run_until(&mut h, "adapter load", 120, |a| {
        a.adapted.summary.is_some() || a.adapted.error.is_some()
    });
    assert!(
        h.state().adapted.error.is_none(),
        "{:?}",
        h.state().adapted.error
    );
    h.state_mut().tab = Tab::Annotate;
    h.key_press(Key::C);
    h.step();
    assert!(h.state().ab_view);
    run_until(&mut h, "both embeddings", 120, |a| a.current_embedded());
    click_image(&mut h, 128.0, 128.0, PointerButton::Primary);
    run_until(&mut h, "A and B predictions", 120, |a| {
        a.draft.pred.is_some() && a.draft.pred_b.is_some()
    });
}

#[test]
fn ui_export_flow() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = harness(tiny_app(dir.path()));
    open_demo(&mut h);
    h.get_by_label("Export").click();
    h.step();
    let out = dir.path().join("exported");
    h.state_mut().export_dir = out.to_string_lossy().to_string();
    h.get_by_label("Export now").click();
    h.step();
    assert!(
        h.state().export_rx.is_some() || h.state().export_report.is_some(),
        "export started"
    );
    run_until(&mut h, "export", 120, |a| a.export_report.is_some());
    let rep = h.state().export_report.clone().unwrap();
    assert!(rep.files.len() > 36 + 4, "{} files", rep.files.len());
    // Read back: label images, per-object masks, COCO.
    let p = h.state().project.clone().unwrap();
    let img0 = &p.project.images[0];
    let labels =
        segadapt::project::import::load_labels(&out.join("labels").join("nuclei_0.png")).unwrap();
    assert_eq!(labels.ids().len(), 12);
    let masks_dir = out.join("masks").join("nuclei_0");
    assert_eq!(std::fs::read_dir(&masks_dir).unwrap().count(), 12);
    let coco: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("coco.json")).unwrap()).unwrap();
    let anns = coco["annotations"].as_array().unwrap();
    assert_eq!(anns.len(), 36);
    assert_eq!(coco["images"].as_array().unwrap().len(), 4);
    let a0 = anns
        .iter()
        .find(|a| a["id"].as_u64() == Some(img0.objects[0].id))
        .unwrap();
    let counts =
        segadapt::project::coco::rle_from_string(a0["segmentation"]["counts"].as_str().unwrap())
            .unwrap();
    let decoded = segadapt::project::coco::rle_decode(&counts, 256, 256).unwrap();
    let truth = p.read_mask(&img0.objects[0], 256, 256).unwrap();
    assert_eq!(decoded, truth, "COCO RLE decodes to the object's mask");
    assert_eq!(a0["area"].as_u64(), Some(img0.objects[0].area));
}

/// `Job::WarmUp` (sent by the app after loading a model on a GPU) runs only when nothing else
/// waits, reports its time without error, and leaves predictions exactly as a worker that
/// never warmed up gives them. Run on the CPU here, where the app does not send it.
#[test]
fn worker_warm_up_runs_last_and_changes_nothing() {
    use segadapt::predict::PromptInput;
    use segadapt::service::Waker;
    use segadapt::service::worker::{Event as W, ImageKey, Job, PredView, Slot, WorkerHandle};
    use std::sync::Arc;

    let spec = ModelSpec {
        path: common::fixture("sam_vit_tiny.pth"),
        config: Some(common::fixture_config("sam_vit_tiny.json")),
    };
    let image = Arc::new(image::RgbImage::from_fn(96, 80, |x, y| {
        image::Rgb([(x * 2) as u8, (y * 3) as u8, ((x + y) % 256) as u8])
    }));
    let key = ImageKey {
        id: 1,
        sha256: "0123456789abcdef0123".into(),
    };
    let name = |e: &W| match e {
        W::ModelLoading { .. } => "loading",
        W::ModelLoaded { .. } => "loaded",
        W::EmbedStarted { .. } => "embed-started",
        W::EmbedDone { .. } => "embed-done",
        W::Predicted { .. } => "predicted",
        W::WarmupStarted => "warmup-started",
        W::WarmupDone { .. } => "warmup-done",
        _ => "other",
    };
    // Collects events (their names into `seen`) until `until` arrives.
    let drain = |w: &WorkerHandle, until: &str, seen: &mut Vec<&'static str>| -> Option<W> {
        let deadline = Instant::now() + Duration::from_secs(300);
        while Instant::now() < deadline {
            if let Ok(e) = w.rx.recv_timeout(Duration::from_millis(200)) {
                let n = name(&e);
                seen.push(n);
                if let W::ModelError { error, .. } | W::PredictError { error, .. } = &e {
                    panic!("worker error: {error}");
                }
                if n == until {
                    return Some(e);
                }
            }
        }
        panic!("no {until} event; saw {seen:?}");
    };
    let predict = |w: &WorkerHandle| {
        w.send(Job::Predict {
            slot: Slot::Base,
            key: key.clone(),
            prompt: PromptInput {
                bbox: Some([20.0, 15.0, 70.0, 60.0]),
                ..Default::default()
            },
            multimask: true,
            seq: 7,
            tiles: Default::default(),
        })
    };
    let embed = |w: &WorkerHandle| {
        w.send(Job::Embed {
            slot: Slot::Base,
            key: key.clone(),
            image: image.clone(),
            prefetch: false,
            cache_dir: None,
        })
    };
    let masks = |e: W| -> Arc<PredView> {
        match e {
            W::Predicted { pred, .. } => pred,
            _ => unreachable!(),
        }
    };

    // Warmed: the embedding queued with the warm-up runs first, the warm-up after it.
    let w = WorkerHandle::spawn(segadapt::device::cpu(), Waker::default());
    w.send(Job::LoadModel(spec.clone()));
    w.send(Job::WarmUp);
    embed(&w);
    let mut seen = Vec::new();
    match drain(&w, "warmup-done", &mut seen) {
        Some(W::WarmupDone { ms, error }) => {
            assert!(error.is_none(), "warm-up failed: {error:?}");
            assert!(ms > 0.0);
        }
        _ => unreachable!(),
    }
    let pos = |n: &str| seen.iter().position(|s| *s == n);
    assert!(
        pos("embed-done") < pos("warmup-started"),
        "warm-up must wait for queued work: {seen:?}"
    );
    predict(&w);
    let warmed = masks(drain(&w, "predicted", &mut seen).unwrap());

    // Never warmed.
    let c = WorkerHandle::spawn(segadapt::device::cpu(), Waker::default());
    c.send(Job::LoadModel(spec));
    embed(&c);
    predict(&c);
    let mut seen_cold = Vec::new();
    let cold = masks(drain(&c, "predicted", &mut seen_cold).unwrap());
    assert!(!seen_cold.contains(&"warmup-started"));

    assert_eq!(warmed.iou, cold.iou);
    assert_eq!(warmed.masks.len(), cold.masks.len());
    for (a, b) in warmed.masks.iter().zip(&cold.masks) {
        assert_eq!(a, b);
    }
}

/// Tiles that split the demo's 256² images: 2×2 cores of 128 px with a 32 px halo.
const SMALL_TILES: &str = r#"{"tiles": {"tile": 128, "halo": 32, "tile_above": 200}}"#;

/// The Model tab's tile settings: read from the settings file at start, shown with what they
/// do to the open image, and "Default tiles" puts the defaults back into memory and the file.
#[test]
fn ui_tile_settings_round_trip_through_the_settings_file() {
    use segadapt::predict::tiling::TileConfig;
    let dir = tempfile::tempdir().unwrap();
    let (app, settings) = app_with_settings(dir.path(), SMALL_TILES);
    let mut h = harness(app);
    let read = TileConfig {
        tile: 128,
        halo: 32,
        tile_above: 200,
    };
    assert_eq!(h.state().settings.tiles, read);
    open_demo(&mut h);
    h.get_by_label("Model").click();
    h.step();
    h.step();
    assert!(h.query_by_label_contains("Large images (tiles)").is_some());
    // The demo's 256² images exceed 200 px: 2×2 cores of 128 px.
    assert!(
        h.query_by_label_contains("(256×256): 4 tiles").is_some(),
        "the open image's tiling is shown"
    );
    h.get_by_label("Default tiles").click();
    run_until(&mut h, "the settings file", 10, |_| {
        std::fs::read(&settings)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .is_some_and(|v| v["tiles"]["tile"] == 1024)
    });
    assert_eq!(h.state().settings.tiles, TileConfig::default());
    assert!(h.query_by_label_contains("(256×256): not tiled").is_some());

    // Settings the app cannot use: the default tiles, and a message on screen.
    let starts_with_defaults_saying = |dir: &Path, json: &str, message: &str| {
        let (app, file) = app_with_settings(dir, json);
        assert_eq!(app.settings.tiles, TileConfig::default());
        let mut h = harness(app);
        h.step();
        assert!(h.query_by_label_contains(message).is_some(), "{message}");
        file
    };
    // A tile too small to use (hand-edited file).
    let bad = tempfile::tempdir().unwrap();
    let json = r#"{"tiles": {"tile": 4, "halo": 0}}"#;
    starts_with_defaults_saying(bad.path(), json, "default tile settings are used");
    // A file that is not JSON: also kept for the user (the next save rewrites
    // app-settings.json).
    let broken = tempfile::tempdir().unwrap();
    let text = r#"{"recent": ["/data/p1"], "tiles": {"tile": 512,"#;
    let file = starts_with_defaults_saying(broken.path(), text, "is not valid");
    let kept = broken.path().join("app-settings.json.unreadable");
    assert_eq!(std::fs::read_to_string(&kept).unwrap(), text);
    assert!(file.exists());
}

/// A tiled image is not embedded whole when it is opened: its first click embeds the tile
/// the click falls in, and the answer names that tile.
#[test]
fn ui_tiled_image_embeds_only_the_clicked_tile() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _) = app_with_settings(dir.path(), SMALL_TILES);
    let mut h = harness(app);
    open_demo(&mut h);
    run_until(&mut h, "the model and the image", 30, |a| {
        a.current_embedded()
    });
    for _ in 0..20 {
        h.step();
        std::thread::sleep(Duration::from_millis(10));
    }
    let id = h.state().current.as_ref().unwrap().id;
    assert!(
        !h.state().sam.embedded.iter().any(|(_, i)| *i == id),
        "the whole image was embedded"
    );
    // (200, 40): core column 1 (128..256), row 0 → outer region x 96..256, y 0..160.
    h.state_mut().add_point(200.0, 40.0, true);
    run_until(&mut h, "the answer", 30, |a| a.draft.pred.is_some());
    let pred = h.state().draft.pred.clone().unwrap();
    assert_eq!(pred.tile, Some([96, 0, 256, 160]));
}
