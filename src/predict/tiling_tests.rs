use super::*;
use crate::predict::Point;

fn r(x0: usize, y0: usize, x1: usize, y1: usize) -> Rect {
    Rect { x0, y0, x1, y1 }
}

fn bx(b: [f64; 4]) -> PromptInput {
    PromptInput {
        bbox: Some(b),
        ..Default::default()
    }
}

fn pt(x: f64, y: f64, positive: bool) -> Point {
    Point { x, y, positive }
}

/// 2560×1500, tile 1024, halo 256: 3 columns × 2 rows, worked out by hand.
fn grid() -> Vec<Tile> {
    tile_grid(2560, 1500, 1024, 256)
}

#[test]
fn grid_by_hand() {
    let g = grid();
    assert_eq!(g.len(), 6);
    let want = [
        (r(0, 0, 1024, 1024), r(0, 0, 1280, 1280)),
        (r(1024, 0, 2048, 1024), r(768, 0, 2304, 1280)),
        (r(2048, 0, 2560, 1024), r(1792, 0, 2560, 1280)),
        (r(0, 1024, 1024, 1500), r(0, 768, 1280, 1500)),
        (r(1024, 1024, 2048, 1500), r(768, 768, 2304, 1500)),
        (r(2048, 1024, 2560, 1500), r(1792, 768, 2560, 1500)),
    ];
    for (t, (core, outer)) in g.iter().zip(want) {
        assert_eq!((t.core, t.outer), (core, outer));
    }
    // An image no larger than a tile is one tile, the whole image.
    assert_eq!(
        tile_grid(700, 300, 1024, 256),
        vec![Tile {
            core: r(0, 0, 700, 300),
            outer: r(0, 0, 700, 300)
        }]
    );
}

/// Over many sizes: the cores cover every pixel exactly once, no core is larger than a
/// tile, and every pixel within `halo` (Chebyshev distance) of a core lies in that tile's
/// outer region, which never leaves the image.
#[test]
fn grid_covers_exactly_with_halo() {
    for (w, h) in [(1, 1), (7, 3), (33, 100), (100, 33), (257, 64), (64, 64)] {
        for tile in [16, 32, 50] {
            for halo in [0, 5, 20] {
                let g = tile_grid(w, h, tile, halo);
                let mut count = vec![0u8; w * h];
                for t in &g {
                    assert!(t.core.width() <= tile && t.core.height() <= tile);
                    assert!(t.outer.x1 <= w && t.outer.y1 <= h);
                    for y in 0..h {
                        for x in 0..w {
                            if t.core.contains(x, y) {
                                count[y * w + x] += 1;
                            }
                            let dx =
                                (t.core.x0.saturating_sub(x)).max(x.saturating_sub(t.core.x1 - 1));
                            let dy =
                                (t.core.y0.saturating_sub(y)).max(y.saturating_sub(t.core.y1 - 1));
                            let near = dx.max(dy) <= halo;
                            assert_eq!(
                                near,
                                t.outer.contains(x, y),
                                "{w}×{h} tile {tile} halo {halo}: pixel ({x},{y}) vs {t:?}"
                            );
                        }
                    }
                }
                assert!(count.iter().all(|&c| c == 1), "{w}×{h} tile {tile}");
            }
        }
    }
}

#[test]
fn prompts_go_to_the_core_of_their_centre() {
    let g = grid();
    assert_eq!(
        place_prompt(&g, &bx([10.0, 10.0, 20.0, 20.0])),
        Placement::Tile(0)
    );
    // Spanning cores 0 and 1: the centre (x 1050) is in core 1, whose halo reaches x 768.
    assert_eq!(
        place_prompt(&g, &bx([1000.0, 100.0, 1100.0, 200.0])),
        Placement::Tile(1)
    );
    // Centre x 1000: core 0, whose halo reaches x 1279.
    assert_eq!(
        place_prompt(&g, &bx([900.0, 100.0, 1100.0, 200.0])),
        Placement::Tile(0)
    );
    // Spanning rows: centre y 1025 → row 1.
    assert_eq!(
        place_prompt(&g, &bx([1500.0, 1000.0, 1600.0, 1050.0])),
        Placement::Tile(4)
    );
    // Border tile, box to the last pixel.
    assert_eq!(
        place_prompt(&g, &bx([2400.0, 1400.0, 2559.0, 1499.0])),
        Placement::Tile(5)
    );
    // A point on a core boundary belongs to the core that starts there.
    let p = PromptInput {
        points: vec![pt(1024.0, 0.0, true)],
        ..Default::default()
    };
    assert_eq!(place_prompt(&g, &p), Placement::Tile(1));
    // Points: the centre of all of them (background ones too).
    let p = PromptInput {
        points: vec![pt(1030.0, 10.0, true), pt(1010.0, 10.0, false)],
        ..Default::default()
    };
    assert_eq!(place_prompt(&g, &p), Placement::Tile(0));
}

#[test]
fn prompts_larger_than_a_tile_fall_back_to_the_whole_image() {
    let g = grid();
    // Wider than tile 0 with its halo (x up to 1279).
    assert_eq!(
        place_prompt(&g, &bx([100.0, 100.0, 1500.0, 300.0])),
        Placement::Whole
    );
    // Centre in core 1, but past its halo on the left (x from 768).
    assert_eq!(
        place_prompt(&g, &bx([700.0, 0.0, 1400.0, 10.0])),
        Placement::Whole
    );
    // A box plus a far point.
    let mut p = bx([10.0, 10.0, 20.0, 20.0]);
    p.points.push(pt(2000.0, 10.0, false));
    assert_eq!(place_prompt(&g, &p), Placement::Whole);
    // A low-resolution mask prompt belongs to the whole image's frame.
    let mut p = bx([10.0, 10.0, 20.0, 20.0]);
    p.mask_input = Some(vec![0.0; 256 * 256]);
    assert_eq!(place_prompt(&g, &p), Placement::Whole);
    // …unless the whole image is the only tile.
    let one = tile_grid(700, 300, 1024, 256);
    assert_eq!(place_prompt(&one, &p), Placement::Tile(0));
    assert_eq!(place_prompt(&g, &PromptInput::default()), Placement::Whole);
}

#[test]
fn prompts_move_into_the_tile_frame_and_masks_back() {
    let mut p = bx([1000.0, 100.0, 1100.0, 200.0]);
    p.points.push(pt(1050.5, 150.0, false));
    let q = prompt_in(&p, r(768, 0, 2304, 1280));
    assert_eq!(q.bbox, Some([232.0, 100.0, 332.0, 200.0]));
    assert_eq!(q.points, vec![pt(282.5, 150.0, false)]);

    // A 2×2 region at (1, 1) of a 4×3 image.
    let m = paste(&[true, false, false, true], r(1, 1, 3, 3), 4, 3);
    let want: Vec<bool> = [0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0]
        .iter()
        .map(|&v| v == 1)
        .collect();
    assert_eq!(m, want);
}

#[test]
fn config_rules() {
    let d = TileConfig::default();
    assert_eq!((d.tile, d.halo, d.tile_above), (1024, 256, 2048));
    assert!(!d.applies(2048, 100));
    assert!(d.applies(100, 2049));
    assert!(!TileConfig::off().applies(100_000, 100_000));
    assert!(TileConfig { tile: 8, ..d }.validate().is_err());
    assert!(d.validate().is_ok());
}
