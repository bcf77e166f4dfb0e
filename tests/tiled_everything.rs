//! Segment everything on a tiled image, with the real MobileSAM checkpoint: the 512² nuclei
//! image placed at (256, 256) on a dark 1024² canvas tiled into four 512 px cores with a
//! 128 px halo, so the nuclei straddle both inner core boundaries (x = 512 and y = 512).
//!
//! Oracles: the ground-truth nuclei (each nucleus is found by at most one mask, nuclei cut by
//! a core boundary included; recall not below the untiled generator's on the same canvas
//! with the same parameters), and the tile rule (every mask lies inside the tile it names,
//! the centre of its box in that tile's core). Without the real checkpoint or the nuclei
//! data the test is skipped, unless SEGADAPT_REQUIRE_ASSETS=1.

mod common;

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use image::RgbImage;
use segadapt::predict::Predictor;
use segadapt::predict::batch::{ImagePrompts, MaskSource, PredictedObject, predict_image};
use segadapt::predict::tiling::TileConfig;
use segadapt::project::import::{load_labels, load_rgb};
use segadapt::sam::automatic_mask_generator::AmgParams;
use segadapt::sam::load_sam;

const SIDE: usize = 1024;
const OFF: usize = 256;
const TILES: TileConfig = TileConfig {
    tile: 512,
    halo: 128,
    tile_above: 768,
};

fn everything(p: &Predictor, img: &RgbImage, cfg: TileConfig, side: usize) -> Vec<PredictedObject> {
    let params = AmgParams {
        points_per_side: side,
        ..AmgParams::default()
    };
    let t = Instant::now();
    let out = predict_image(
        p,
        img,
        &ImagePrompts::Everything(&params),
        false,
        &cfg,
        &AtomicBool::new(false),
        &mut |_, _| {},
    )
    .unwrap()
    .expect("not cancelled");
    eprintln!(
        "segment everything, tile_above {}: {} masks in {:.1} s",
        cfg.tile_above,
        out.len(),
        t.elapsed().as_secs_f64()
    );
    out
}

/// Per ground-truth nucleus: how many masks match it with IoU ≥ 0.5.
fn matches(found: &[PredictedObject], gt: &[Vec<bool>]) -> Vec<usize> {
    let masks: Vec<Vec<bool>> = found.iter().map(|o| o.mask()).collect();
    gt.iter()
        .map(|g| {
            masks
                .iter()
                .filter(|m| {
                    let inter = m.iter().zip(g).filter(|(a, b)| **a && **b).count();
                    let union = m.iter().zip(g).filter(|(a, b)| **a || **b).count();
                    union > 0 && inter as f64 / union as f64 >= 0.5
                })
                .count()
        })
        .collect()
}

#[test]
fn tiled_segment_everything_finds_each_nucleus_once() {
    let Some(common::Nuclei { model, img, labels }) = common::nuclei_assets() else {
        return;
    };
    let nuclei = load_rgb(&img).unwrap();
    let gt = load_labels(&labels).unwrap();
    let (nw, nh) = (gt.width, gt.height);
    let mut canvas = RgbImage::new(SIDE as u32, SIDE as u32);
    image::imageops::replace(&mut canvas, &nuclei, OFF as i64, OFF as i64);
    // Ground-truth masks in canvas coordinates, and whether each crosses a core boundary.
    let mut objects: Vec<(Vec<bool>, bool)> = Vec::new();
    for id in gt.ids() {
        let mut m = vec![false; SIDE * SIDE];
        let (mut x0, mut x1, mut y0, mut y1) = (SIDE, 0, SIDE, 0);
        for y in 0..nh {
            for x in 0..nw {
                if gt.labels[y * nw + x] == id {
                    let (cx, cy) = (x + OFF, y + OFF);
                    m[cy * SIDE + cx] = true;
                    (x0, x1, y0, y1) = (x0.min(cx), x1.max(cx), y0.min(cy), y1.max(cy));
                }
            }
        }
        let crosses = (x0 < 512 && x1 >= 512) || (y0 < 512 && y1 >= 512);
        objects.push((m, crosses));
    }
    let gt_masks: Vec<Vec<bool>> = objects.iter().map(|(m, _)| m.clone()).collect();
    let crossing = objects.iter().filter(|(_, c)| *c).count();
    assert!(
        crossing >= 3,
        "the layout puts nuclei across the core boundaries"
    );

    // As the binary does: freed op buffers stay in the heap (else every mask upscale
    // page-faults its planes in again).
    segadapt::device::tune_allocator();
    let device = common::cpu();
    let (sam, _) = load_sam(&model, None, &device).unwrap();
    let predictor = Predictor::new(sam, device);
    let tiled = everything(&predictor, &canvas, TILES, 12);
    let whole = everything(&predictor, &canvas, TileConfig::off(), 12);

    // The tile rule: each mask inside the tile it names, its box centre in that tile's core;
    // the whole-image pass adds only objects larger than a tile can be sure to hold
    // (2·(halo − 20) = 216 px).
    for (k, o) in tiled.iter().enumerate() {
        let r = match o.source {
            MaskSource::Tile(r) => r,
            MaskSource::WholePass => {
                let m = o.mask();
                let on = || m.iter().enumerate().filter(|(_, v)| **v).map(|(p, _)| p);
                let bw =
                    on().map(|p| p % SIDE).max().unwrap() - on().map(|p| p % SIDE).min().unwrap();
                let bh =
                    on().map(|p| p / SIDE).max().unwrap() - on().map(|p| p / SIDE).min().unwrap();
                assert!(
                    bw.max(bh) > 216,
                    "mask {k}: small object from the whole pass"
                );
                continue;
            }
            _ => panic!("mask {k}: not from a tile: {:?}", o.source),
        };
        let m = o.mask();
        let (mut x0, mut x1, mut y0, mut y1) = (SIDE, 0, SIDE, 0);
        for (p, _) in m.iter().enumerate().filter(|(_, v)| **v) {
            let (x, y) = (p % SIDE, p / SIDE);
            assert!(
                r.contains(x, y),
                "mask {k}: pixel ({x}, {y}) outside its tile {r:?}"
            );
            (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
        }
        let (cx, cy) = ((x0 + x1) as f64 / 2.0, (y0 + y1) as f64 / 2.0);
        let core = |v0: usize| if v0 == 0 { 0.0..512.0 } else { 512.0..1024.0 };
        assert!(
            core(r.x0).contains(&cx) && core(r.y0).contains(&cy),
            "mask {k}: box centre ({cx}, {cy}) not in the core of {r:?}"
        );
    }

    let m_tiled = matches(&tiled, &gt_masks);
    let m_whole = matches(&whole, &gt_masks);
    let found = |m: &[usize]| m.iter().filter(|&&n| n > 0).count();
    let found_crossing = m_tiled
        .iter()
        .zip(&objects)
        .filter(|(n, (_, c))| **n > 0 && *c)
        .count();
    eprintln!(
        "nuclei found (IoU ≥ 0.5): tiled {} / whole {} of {}; across core boundaries {} of {}",
        found(&m_tiled),
        found(&m_whole),
        gt_masks.len(),
        found_crossing,
        crossing
    );
    // No nucleus twice: the halo and the edge rule keep one copy per object.
    for (i, n) in m_tiled.iter().enumerate() {
        assert!(*n <= 1, "nucleus {i} matched by {n} masks");
    }
    assert!(
        found_crossing >= 1,
        "nuclei across core boundaries are found"
    );
    assert!(
        found(&m_tiled) >= found(&m_whole),
        "tiled {} < whole {}",
        found(&m_tiled),
        found(&m_whole)
    );
}

/// An object larger than any tile can hold (a 760×560 ellipse across all four cores, on a
/// 1024² canvas of four 512 px cores + 128 px halo) is cut in every tile, so the tiles drop
/// it; the whole-image pass finds it, once. Oracle: the drawn ellipse.
#[test]
fn tiled_segment_everything_keeps_an_object_larger_than_a_tile() {
    let Some(common::Nuclei { model, .. }) = common::nuclei_assets() else {
        return;
    };
    let (cx, cy, ax, ay) = (512.0f64, 512.0f64, 380.0f64, 280.0f64);
    let inside = |x: usize, y: usize| {
        let (dx, dy) = ((x as f64 + 0.5 - cx) / ax, (y as f64 + 0.5 - cy) / ay);
        dx * dx + dy * dy <= 1.0
    };
    let canvas = RgbImage::from_fn(SIDE as u32, SIDE as u32, |x, y| {
        if inside(x as usize, y as usize) {
            image::Rgb([210, 190, 120])
        } else {
            image::Rgb([25, 30, 60])
        }
    });
    let ellipse: Vec<bool> = (0..SIDE * SIDE)
        .map(|p| inside(p % SIDE, p / SIDE))
        .collect();
    segadapt::device::tune_allocator();
    let device = common::cpu();
    let (sam, _) = load_sam(&model, None, &device).unwrap();
    let predictor = Predictor::new(sam, device);
    let found = everything(&predictor, &canvas, TILES, 4);
    let ious: Vec<(f64, MaskSource)> = found
        .iter()
        .map(|o| {
            let m = o.mask();
            let inter = m.iter().zip(&ellipse).filter(|(a, b)| **a && **b).count();
            let union = m.iter().zip(&ellipse).filter(|(a, b)| **a || **b).count();
            (inter as f64 / union.max(1) as f64, o.source)
        })
        .collect();
    eprintln!("masks (IoU with the ellipse, source): {ious:?}");
    let hits: Vec<&(f64, MaskSource)> = ious.iter().filter(|(iou, _)| *iou >= 0.9).collect();
    assert_eq!(hits.len(), 1, "the ellipse found exactly once");
    assert!(matches!(hits[0].1, MaskSource::WholePass));
}
