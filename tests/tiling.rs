//! Large images by tiles. With the real MobileSAM checkpoint: the 512² nuclei image placed
//! at a known offset on a dark 2560² canvas, the 6 smallest nuclei of each of the two tiles
//! it straddles prompted with their tight boxes.
//!
//! * oracle 1, the rule: the tile each box goes to is worked out here from the rule (core of
//!   the box centre, grown by the halo, clamped); object k's mask is 0 outside that tile;
//! * oracle 2, the untiled predictor: inside the tile the mask equals the plain [`Predictor`]
//!   run on a crop of the canvas that is exactly that tile, with the box shifted by hand;
//! * against the ground truth, the tiled masks beat the same prompts on the canvas squeezed
//!   whole (tiling off): the squeezed path loses small nuclei.
//!
//! With the tiny random-weight MobileSAM fixture (always run): prompt order and the tile-crop
//! oracle on a 6-tile image, the bounded tile cache, the app's worker path, and the CLI (a box
//! larger than a tile falls back to the squeezed image and says so, the tile is recorded per
//! object, segment everything keeps each mask in its tile, bad flags are refused before any
//! work).
//! Without the real checkpoint or the nuclei data the first test is skipped, unless
//! SEGADAPT_REQUIRE_ASSETS=1.

mod common;

use common::{Nuclei, s, segadapt, text};

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use image::RgbImage;
use segadapt::predict::batch::{ImagePrompts, MaskSource, PredictedObject, predict_image};
use segadapt::predict::tiling::{MAX_CACHED_TILES, Placement, TileConfig, TiledPredictor};
use segadapt::predict::{Predictor, PromptInput};
use segadapt::project::import::{load_labels, load_rgb};
use segadapt::sam::load_sam;
use serde_json::Value;

const SIDE: usize = 2560;
const TILE: usize = 1024;
const HALO: usize = 256;
/// Where the nuclei image's top-left pixel lands: it straddles the core boundary x = 1024,
/// so its boxes go to two tiles (row 1, columns 0 and 1).
const OFF: (usize, usize) = (800, 1200);
/// Nuclei prompted per tile.
const PER_TILE: usize = 6;

/// A ground-truth nucleus: its mask in canvas coordinates and its tight box.
type Object = (Vec<bool>, [usize; 4]);

/// The tile (x0, y0, x1, y1) a box goes to, from the rule itself.
fn expected_tile(b: [usize; 4]) -> [usize; 4] {
    let (cx, cy) = ((b[0] + b[2]) as f64 / 2.0, (b[1] + b[3]) as f64 / 2.0);
    let (col, row) = ((cx / TILE as f64) as usize, (cy / TILE as f64) as usize);
    [
        (col * TILE).saturating_sub(HALO),
        (row * TILE).saturating_sub(HALO),
        ((col + 1) * TILE + HALO).min(SIDE),
        ((row + 1) * TILE + HALO).min(SIDE),
    ]
}

fn iou(a: &[bool], b: &[bool]) -> f64 {
    let inter = a.iter().zip(b).filter(|(x, y)| **x && **y).count();
    let union = a.iter().zip(b).filter(|(x, y)| **x || **y).count();
    if union == 0 {
        1.0
    } else {
        inter as f64 / union as f64
    }
}

fn crop(m: &[bool], w: usize, r: [usize; 4]) -> Vec<bool> {
    (r[1]..r[3])
        .flat_map(|y| (r[0]..r[2]).map(move |x| (x, y)))
        .map(|(x, y)| m[y * w + x])
        .collect()
}

fn boxed(b: [usize; 4]) -> PromptInput {
    PromptInput {
        bbox: Some(b.map(|v| v as f64)),
        ..Default::default()
    }
}

/// The canvas (dark, the nuclei image at OFF) and, for the PER_TILE smallest nuclei of
/// each of the two tiles, the mask in canvas coordinates and the tight box. Small objects
/// are what squeezing loses; each prompt costs a full-size mask (≈0.3 s on 2 CPU cores).
fn canvas(n: &Nuclei) -> (RgbImage, Vec<Object>) {
    let nuclei = load_rgb(&n.img).unwrap();
    let gt = load_labels(&n.labels).unwrap();
    let (nw, nh) = (gt.width, gt.height);
    assert_eq!(
        (nuclei.width() as usize, nuclei.height() as usize),
        (nw, nh)
    );
    let mut canvas = RgbImage::new(SIDE as u32, SIDE as u32);
    image::imageops::replace(&mut canvas, &nuclei, OFF.0 as i64, OFF.1 as i64);
    // (area, id, box in canvas coordinates) per nucleus.
    let mut found: Vec<(usize, u32, [usize; 4])> = Vec::new();
    for id in gt.ids() {
        let m: Vec<bool> = gt.labels.iter().map(|&l| l == id).collect();
        let b = segadapt::metrics::bbox(&m, nw).unwrap();
        let area = m.iter().filter(|&&v| v).count();
        found.push((
            area,
            id,
            [b[0] + OFF.0, b[1] + OFF.1, b[2] + OFF.0, b[3] + OFF.1],
        ));
    }
    found.sort();
    let mut objects = Vec::new();
    for x0 in [0, TILE - HALO] {
        let here = found.iter().filter(|(_, _, b)| expected_tile(*b)[0] == x0);
        for &(_, id, b) in here.take(PER_TILE) {
            let mut m = vec![false; SIDE * SIDE];
            for y in 0..nh {
                for x in 0..nw {
                    m[(y + OFF.1) * SIDE + x + OFF.0] = gt.labels[y * nw + x] == id;
                }
            }
            objects.push((m, b));
        }
    }
    (canvas, objects)
}

fn run(
    p: &Predictor,
    img: &RgbImage,
    list: &[PromptInput],
    cfg: TileConfig,
) -> Vec<PredictedObject> {
    let t = Instant::now();
    let out = predict_image(
        p,
        img,
        &ImagePrompts::Objects(list),
        false,
        &cfg,
        &AtomicBool::new(false),
        &mut |_, _| {},
    )
    .unwrap()
    .expect("not cancelled");
    eprintln!(
        "{} prompts, tile_above {}: {:.1} s",
        list.len(),
        cfg.tile_above,
        t.elapsed().as_secs_f64()
    );
    out
}

#[test]
fn tiled_masks_equal_the_tile_crop_and_beat_the_squeezed_image() {
    let Some(assets) = common::nuclei_assets() else {
        return;
    };
    let device = common::cpu();
    let (model, _) = load_sam(&assets.model, None, &device).unwrap();
    let predictor = Predictor::new(model, device);
    let (canvas, objects) = canvas(&assets);
    let list: Vec<PromptInput> = objects.iter().map(|(_, b)| boxed(*b)).collect();

    let cfg = TileConfig {
        tile: TILE,
        halo: HALO,
        tile_above: 2048,
    };
    let tiled = run(&predictor, &canvas, &list, cfg);
    let squeezed = run(&predictor, &canvas, &list, TileConfig::off());
    assert_eq!(tiled.len(), list.len());

    let n = objects.len();
    let (mut sum_tiled, mut sum_squeezed) = (0.0, 0.0);
    let (mut lost_tiled, mut lost_squeezed) = (0, 0);
    let mut by_tile: Vec<([usize; 4], Vec<usize>)> = Vec::new();
    for (i, (gt_mask, b)) in objects.iter().enumerate() {
        let tile = expected_tile(*b);
        let got = &tiled[i];
        match got.source {
            MaskSource::Tile(r) => assert_eq!(r.to_array(), tile, "object {}", i + 1),
            other => panic!("object {}: {other:?}, not a tile", i + 1),
        }
        assert_eq!(squeezed[i].source, MaskSource::Image);
        // Nothing outside the tile.
        for (p, &v) in got.mask().iter().enumerate() {
            let (x, y) = (p % SIDE, p / SIDE);
            let inside = x >= tile[0] && x < tile[2] && y >= tile[1] && y < tile[3];
            assert!(inside || !v, "object {}: ({x},{y}) outside {tile:?}", i + 1);
        }
        let (a, b) = (iou(&got.mask(), gt_mask), iou(&squeezed[i].mask(), gt_mask));
        sum_tiled += a;
        sum_squeezed += b;
        lost_tiled += usize::from(a < 0.5);
        lost_squeezed += usize::from(b < 0.5);
        match by_tile.iter_mut().find(|(t, _)| *t == tile) {
            Some((_, v)) => v.push(i),
            None => by_tile.push((tile, vec![i])),
        }
    }
    let (mean_tiled, mean_squeezed) = (sum_tiled / n as f64, sum_squeezed / n as f64);
    eprintln!(
        "{n} nuclei in tiles {:?}: mean IoU vs ground truth tiled {mean_tiled:.4} \
         (IoU < 0.5: {lost_tiled}), squeezed whole {mean_squeezed:.4} (IoU < 0.5: \
         {lost_squeezed})",
        by_tile.iter().map(|(t, _)| *t).collect::<Vec<_>>()
    );
    assert_eq!(by_tile.len(), 2, "the nuclei straddle two tiles");
    assert!(
        mean_tiled > mean_squeezed + 0.07,
        "tiled {mean_tiled:.4} vs squeezed {mean_squeezed:.4}"
    );
    assert!(lost_squeezed >= lost_tiled + 4);

    // `segadapt eval` (and `train --test-data`) use the same tiles: its protocol (tight box
    // per ground-truth object, label order) scores each nucleus exactly as the masks above.
    let data = tempfile::tempdir().unwrap();
    for d in ["images", "masks"] {
        std::fs::create_dir_all(data.path().join(d)).unwrap();
    }
    canvas.save(data.path().join("images/canvas.png")).unwrap();
    let mut labels = vec![0u16; SIDE * SIDE];
    for (k, (m, _)) in objects.iter().enumerate() {
        for (l, &v) in labels.iter_mut().zip(m) {
            if v {
                *l = k as u16 + 1;
            }
        }
    }
    segadapt::project::export::write_label_png(
        &data.path().join("masks/canvas.png"),
        &labels,
        SIDE,
        SIDE,
    )
    .unwrap();
    let pairs = segadapt::eval::list_pairs(data.path()).unwrap();
    for (cfg, masks, tiles) in [(cfg, &tiled, 9), (TileConfig::off(), &squeezed, 1)] {
        let r = segadapt::eval::evaluate(
            &predictor,
            &pairs,
            segadapt::eval::EvalPrompt::Box,
            0,
            &cfg,
            |_, _| {},
        )
        .unwrap();
        let row = &r.per_image[0];
        assert_eq!(row.tiles, tiles);
        assert_eq!(row.object_iou.len(), n);
        for (i, (gt_mask, _)) in objects.iter().enumerate() {
            let want = iou(&masks[i].mask(), gt_mask);
            assert!(
                (row.object_iou[i] - want).abs() < 1e-12,
                "eval object {}: {} vs {want}",
                i + 1,
                row.object_iou[i]
            );
        }
    }

    // Oracle 2: the plain predictor on the crop that is exactly the tile (the inner one,
    // with a halo on every side; one embedding of a 1536² crop costs seconds on 2 cores).
    let (tile, members) = by_tile
        .into_iter()
        .find(|(t, _)| t[0] > 0)
        .expect("a tile past x = 0");
    {
        let img = image::imageops::crop_imm(
            &canvas,
            tile[0] as u32,
            tile[1] as u32,
            (tile[2] - tile[0]) as u32,
            (tile[3] - tile[1]) as u32,
        )
        .to_image();
        let emb = predictor.set_image(&img);
        let mut differ = 0;
        for &i in &members {
            let b = objects[i].1;
            let shifted = [
                b[0] - tile[0],
                b[1] - tile[1],
                b[2] - tile[0],
                b[3] - tile[1],
            ];
            let want = predictor.predict(&emb, &boxed(shifted), false).binary(0);
            let got = crop(&tiled[i].mask(), SIDE, tile);
            differ += got.iter().zip(&want).filter(|(a, b)| a != b).count();
        }
        eprintln!(
            "tile {tile:?}: {} objects, {differ} pixels differ from the crop",
            members.len()
        );
        assert_eq!(differ, 0, "tile {tile:?}");
    }
}

#[test]
fn cli_tiles_reports_the_fallback_and_refuses_what_it_cannot_do() {
    // The tiny random-weight fixture: only the messages and records are checked here.
    let model = common::fixture("mobilesam_tiny.pth");
    let root = tempfile::tempdir().unwrap();
    let input = root.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    // 2100×96: wider than --tile-above 2048, so 3 tiles; a bright square in the first.
    let mut wide = RgbImage::new(2100, 96);
    for y in 30..60 {
        for x in 40..70 {
            wide.put_pixel(x, y, image::Rgb([230, 230, 230]));
        }
    }
    wide.save(input.join("wide.png")).unwrap();
    let prompts = root.path().join("prompts.csv");
    std::fs::write(
        &prompts,
        "image,x0,y0,x1,y1\nwide.png,38,28,72,62\nwide.png,10,10,2000,90\n",
    )
    .unwrap();
    let out = root.path().join("out");
    let o = segadapt(&[
        "predict",
        "--model",
        s(&model),
        "--input",
        s(&input),
        "--prompts",
        s(&prompts),
        "--out",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("object 2: prompt larger than a tile"),
        "{}",
        text(&o)
    );
    let record: Value =
        serde_json::from_slice(&std::fs::read(out.join("wide_masks.json")).unwrap()).unwrap();
    let anns = record["annotations"].as_array().unwrap();
    assert_eq!(anns[0]["tile"], serde_json::json!([0, 0, 1280, 96]));
    assert_eq!(anns[1]["tile"], "whole image (prompt larger than a tile)");

    // Segment everything tiles too (it was refused before): the run succeeds and any mask
    // lies in the tile its record names, one of the grid's three (cores 1024 px, halo 256,
    // clamped to 2100×96). The random-weight model may keep none; tests/tiled_everything.rs
    // checks real masks.
    let everything = root.path().join("everything");
    let o = segadapt(&[
        "predict",
        "--model",
        s(&model),
        "--input",
        s(&input),
        "--out",
        s(&everything),
        "--points-per-side",
        "4",
        "--pred-iou-thresh",
        "0",
        "--stability-score-thresh",
        "0",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let record: Value =
        serde_json::from_slice(&std::fs::read(everything.join("wide_masks.json")).unwrap())
            .unwrap();
    let grid = [[0, 0, 1280, 96], [768, 0, 2100, 96], [1792, 0, 2100, 96]];
    let anns = record["annotations"].as_array().unwrap();
    let labels = image::open(everything.join("wide_labels.png"))
        .unwrap()
        .into_luma16();
    for a in anns {
        // The whole-image pass adds only objects wider than a tile can be sure to hold
        // (2·(256 − 20) = 472 px).
        if a["tile"] == "whole image shrunk (object larger than a tile)" {
            let w = a["bbox"][2].as_f64().unwrap();
            assert!(w > 472.0, "whole-pass mask of width {w}");
            continue;
        }
        let t: [usize; 4] = serde_json::from_value(a["tile"].clone()).unwrap();
        assert!(grid.contains(&t), "{t:?}");
        let label = a["label"].as_u64().unwrap() as u16;
        for (x, y, v) in labels.enumerate_pixels() {
            if v.0[0] == label {
                let (x, y) = (x as usize, y as usize);
                assert!(
                    x >= t[0] && x < t[2] && y >= t[1] && y < t[3],
                    "({x}, {y}) not in {t:?}"
                );
            }
        }
    }
    // Bad tile flags are refused before any work.
    let o = segadapt(&[
        "segment",
        "--model",
        s(&model),
        "--image",
        "nope.png",
        "--box",
        "1,1,2,2",
        "--out",
        "x.png",
        "--tile",
        "4",
    ]);
    assert!(!o.status.success());
    assert!(text(&o).contains("--tile 4 is too small"), "{}", text(&o));
}

/// With the tiny random-weight MobileSAM fixture (no assets needed): prompts given in a
/// scattered order come back in that order, each from the tile the rule picks, equal to the
/// plain predictor on that tile's crop; the predictor keeps at most MAX_CACHED_TILES
/// embeddings and re-embeds an evicted tile.
#[test]
fn tiny_model_prompt_order_oracle_and_bounded_cache() {
    let device = common::cpu();
    let (model, _) = load_sam(&common::fixture("mobilesam_tiny.pth"), None, &device).unwrap();
    let predictor = Predictor::new(model, device);
    let (w, h) = (1500usize, 120usize);
    let img = RgbImage::from_fn(w as u32, h as u32, |x, y| {
        image::Rgb([(x % 251) as u8, (y * 2) as u8, ((x / 7 + y) % 256) as u8])
    });
    let cfg = TileConfig {
        tile: 256,
        halo: 32,
        tile_above: 512,
    };
    // One box per core (6 cores of 256 px, the last one 220), in a scattered order.
    let cols = [3usize, 0, 5, 1, 4, 2];
    let list: Vec<PromptInput> = cols
        .iter()
        .map(|&c| boxed([c * 256 + 20, 30, c * 256 + 200, 90]))
        .collect();
    let out = run(&predictor, &img, &list, cfg);
    assert_eq!(out.len(), list.len());
    for (k, (o, &c)) in out.iter().zip(&cols).enumerate() {
        assert_eq!(o.prompt, list[k], "order kept");
        let want = [
            (c * 256).saturating_sub(32),
            0,
            ((c + 1) * 256 + 32).min(w),
            h,
        ];
        let MaskSource::Tile(r) = o.source else {
            panic!("prompt {k}: {:?}", o.source)
        };
        assert_eq!(r.to_array(), want, "prompt {k}");
        let mask = o.mask();
        let outside = mask.iter().enumerate().filter(|(p, v)| {
            let x = p % w;
            **v && (x < want[0] || x >= want[2])
        });
        assert_eq!(outside.count(), 0, "prompt {k}");
        // The oracle on a border tile and an inner one (an embedding costs ≈1 s here).
        if c != 0 && c != 3 {
            continue;
        }
        let tile = image::imageops::crop_imm(
            &img,
            want[0] as u32,
            0,
            (want[2] - want[0]) as u32,
            h as u32,
        )
        .to_image();
        let b = list[k].bbox.unwrap();
        let dx = want[0] as f64;
        let shifted = PromptInput {
            bbox: Some([b[0] - dx, b[1], b[2] - dx, b[3]]),
            ..Default::default()
        };
        let emb = predictor.set_image(&tile);
        let oracle = predictor.predict(&emb, &shifted, false).binary(0);
        assert!(oracle.iter().any(|&v| v) && !oracle.iter().all(|&v| v));
        assert_eq!(crop(&o.mask(), w, want), oracle, "prompt {k}");
    }

    // The cache: every tile once, then the newest again (kept), then the oldest kept one
    // (kept), then the first (dropped, embedded again).
    let mut tiled = TiledPredictor::new(&predictor, &img, &cfg).unwrap();
    let n = tiled.grid().len();
    assert_eq!(n, 6);
    assert!(n > MAX_CACHED_TILES);
    let prompt_in_col = |c: usize| boxed([c * 256 + 100, 50, c * 256 + 120, 70]);
    for c in 0..n {
        let p = tiled.predict(&prompt_in_col(c), false);
        assert_eq!(p.placement, Placement::Tile(c));
    }
    assert_eq!(tiled.embeddings, n);
    tiled.predict(&prompt_in_col(n - 1), false);
    tiled.predict(&prompt_in_col(n - MAX_CACHED_TILES), false);
    assert_eq!(tiled.embeddings, n, "kept tiles are not embedded again");
    tiled.predict(&prompt_in_col(0), false);
    assert_eq!(
        tiled.embeddings,
        n + 1,
        "tile 0 was dropped and is embedded again"
    );
}

/// The app's path: clicks go to the SAM worker as `Job::Predict` with the app's tile
/// settings. On an image above `tile_above` a box is decoded in its tile (the answer says
/// which; masks at full size, equal to the plain predictor on the tile crop); a box larger
/// than a tile, or tiling off, uses the whole image; a stale mask input is dropped, not
/// misapplied.
#[test]
fn worker_decodes_clicks_on_large_images_in_their_tile() {
    use segadapt::service::Waker;
    use segadapt::service::worker::{Event as W, ImageKey, Job, ModelSpec, Slot, WorkerHandle};
    use std::sync::Arc;
    use std::time::Duration;

    let fixture = common::fixture("mobilesam_tiny.pth");
    let (w, h) = (1500usize, 120usize);
    let image = Arc::new(RgbImage::from_fn(w as u32, h as u32, |x, y| {
        image::Rgb([(x % 251) as u8, (y * 2) as u8, ((x / 7 + y) % 256) as u8])
    }));
    let key = ImageKey {
        id: 1,
        sha256: "fedcba9876543210fedc".into(),
    };
    let on = TileConfig {
        tile: 256,
        halo: 32,
        tile_above: 512,
    };
    let worker = WorkerHandle::spawn(segadapt::device::cpu(), Waker::default());
    worker.send(Job::LoadModel(ModelSpec {
        path: fixture.clone(),
        config: None,
    }));
    worker.send(Job::Embed {
        slot: Slot::Base,
        key: key.clone(),
        image: image.clone(),
        prefetch: false,
        cache_dir: None,
    });
    let ask = |prompt: PromptInput, tiles: TileConfig, seq: u64| {
        worker.send(Job::Predict {
            slot: Slot::Base,
            key: key.clone(),
            prompt,
            multimask: false,
            seq,
            tiles,
        });
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            match worker.rx.recv_timeout(Duration::from_millis(200)) {
                Ok(W::Predicted { pred, seq: s, .. }) if s == seq => return pred,
                Ok(W::ModelError { error, .. } | W::PredictError { error, .. }) => {
                    panic!("worker error: {error}")
                }
                _ => {}
            }
        }
        panic!("no answer to prompt {seq}");
    };

    let device = common::cpu();
    let (model, _) = load_sam(&fixture, None, &device).unwrap();
    let predictor = Predictor::new(model, device);

    // A box in core 3: tile x 736..1056.
    let b = [3 * 256 + 20, 30, 3 * 256 + 200, 90];
    let got = ask(boxed(b), on, 1);
    let tile = [736, 0, 1056, h];
    assert_eq!(got.tile, Some(tile));
    assert_eq!(got.size, [h, w]);
    let crop_img = image::imageops::crop_imm(image.as_ref(), 736, 0, 320, h as u32).to_image();
    let shifted = [b[0] - 736, b[1], b[2] - 736, b[3]];
    let emb = predictor.set_image(&crop_img);
    let oracle = predictor.predict(&emb, &boxed(shifted), false).binary(0);
    assert_eq!(crop(&got.masks[0], w, tile), oracle);
    let outside = got.masks[0].iter().enumerate().filter(|(p, v)| {
        let x = p % w;
        **v && !(736..1056).contains(&x)
    });
    assert_eq!(outside.count(), 0);

    // The same box with a mask input from an earlier answer: decoded in the tile as above.
    let mut with_mask = boxed(b);
    with_mask.mask_input = Some(got.low_res[0].as_ref().clone());
    let again = ask(with_mask, on, 2);
    assert_eq!(again.tile, Some(tile));
    assert_eq!(
        again.masks[0], got.masks[0],
        "the mask input is dropped on tiles"
    );

    // Larger than a tile, or tiling off: the whole image, as the plain predictor gives it.
    let whole = predictor.set_image(&image);
    for (seq, p, tiles) in [
        (3, boxed([10, 10, 1400, 100]), on),
        (4, boxed(b), TileConfig::off()),
    ] {
        let got = ask(p.clone(), tiles, seq);
        assert_eq!(got.tile, None, "prompt {seq}");
        let want = predictor.predict(&whole, &p, false).binary(0);
        assert_eq!(*got.masks[0], want, "prompt {seq}");
    }

    // Bad tile settings are an error that names them.
    worker.send(Job::Predict {
        slot: Slot::Base,
        key: key.clone(),
        prompt: boxed(b),
        multimask: false,
        seq: 5,
        tiles: TileConfig { tile: 4, ..on },
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let error = loop {
        assert!(Instant::now() < deadline, "no answer to prompt 5");
        match worker.rx.recv_timeout(Duration::from_millis(200)) {
            Ok(W::PredictError { error, seq: 5, .. }) => break error,
            Ok(W::Predicted { seq: 5, .. }) => panic!("bad tile settings accepted"),
            _ => {}
        }
    };
    assert!(
        error.contains("app-settings.json") && error.contains("--tile 4 is too small"),
        "{error}"
    );
}
