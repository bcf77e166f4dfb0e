//! Unit tests of `amg.rs` against hand-computed values.

use super::*;

#[test]
fn point_grid_for_two_points_per_side() {
    // offset 1/4: linspace(0.25, 0.75, 2), x fastest.
    assert_eq!(
        build_point_grid(2),
        vec![[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]]
    );
    assert_eq!(build_point_grid(1), vec![[0.5, 0.5]]);
    // Layer 1 of 32 / 2 = 16 points per side; int(3 / 2) = 1.
    let g = build_all_layer_point_grids(32, 1, 2);
    assert_eq!((g[0].len(), g[1].len()), (1024, 256));
    assert_eq!(build_all_layer_point_grids(3, 1, 2)[1], vec![[0.5, 0.5]]);
}

#[test]
fn crop_boxes_for_one_layer() {
    // 512×512, overlap_ratio 512/1500: overlap = int(0.34133·512·1) = 174,
    // crop = ceil((174 + 512) / 2) = 343, x0 ∈ {0, 169}; product(x0s, y0s), x outer.
    let (boxes, layers) = generate_crop_boxes([512, 512], 1, 512.0 / 1500.0);
    assert_eq!(
        boxes,
        vec![
            [0, 0, 512, 512],
            [0, 0, 343, 343],
            [0, 169, 343, 512],
            [169, 0, 512, 343],
            [169, 169, 512, 512]
        ]
    );
    assert_eq!(layers, vec![0, 1, 1, 1, 1]);
    // 300 high × 400 wide: overlap = int(0.34133·300) = 102, w = ceil(502/2) = 251,
    // h = ceil(402/2) = 201, x0 ∈ {0, 149}, y0 ∈ {0, 99}.
    let (boxes, _) = generate_crop_boxes([300, 400], 1, 512.0 / 1500.0);
    assert_eq!(
        boxes[1..],
        [
            [0, 0, 251, 201],
            [0, 99, 251, 300],
            [149, 0, 400, 201],
            [149, 99, 400, 300]
        ]
    );
}

#[test]
fn stability_score_on_a_tiny_logit_map() {
    // > 1: 2.5, 1.5 (2 px); > −1: also 1.0, 0.5, 0.0, −0.5 (6 px) → 2/6. The cuts are
    // strict: 1.0 counts only in the lower mask, −1.0 in neither.
    let logits = [2.5, 1.5, 1.0, 0.5, 0.0, -0.5, -1.0, -3.0];
    assert_eq!(calculate_stability_score(&logits, 0.0, 1.0), 2.0 / 6.0);
    // Without the values on the cuts: 2 of 5.
    let logits = [2.5, 1.5, 0.5, 0.0, -0.5, -3.0];
    assert_eq!(calculate_stability_score(&logits, 0.0, 1.0), 0.4);
    assert!(calculate_stability_score(&[-5.0; 4], 0.0, 1.0).is_nan());
}

#[test]
fn box_of_a_mask_is_inclusive() {
    let (h, w) = (4, 5);
    let mut m = vec![false; h * w];
    m[w + 2] = true; // (x 2, y 1)
    assert_eq!(mask_to_box(&m, h, w), [2, 1, 2, 1]);
    m[3 * w + 4] = true; // (x 4, y 3)
    m[2 * w] = true; // (x 0, y 2)
    assert_eq!(mask_to_box(&m, h, w), [0, 1, 4, 3]);
    assert_eq!(mask_to_box(&vec![false; h * w], h, w), [0; 4]);
}

#[test]
fn nms_on_three_boxes() {
    // A [0,0,10,10] (area 100) score 0.9; B [1,0,11,10] (area 100, inter 90,
    // IoU 90/110 = 0.818) score 0.8; C [0,0,10,5] (area 50, inter with A 50, IoU 0.5)
    // score 0.95. Order C, A, B: C keeps; A vs C 0.5 ≤ 0.7 keeps; B vs C: inter 45,
    // IoU 45/105 = 0.43 keeps for C, vs A 0.818 > 0.7 suppressed.
    let boxes = [
        [0.0, 0.0, 10.0, 10.0],
        [1.0, 0.0, 11.0, 10.0],
        [0.0, 0.0, 10.0, 5.0],
    ];
    assert_eq!(box_nms(&boxes, &[0.9, 0.8, 0.95], 0.7), vec![2, 0]);
    // At 0.85 nothing is suppressed; at 0.45, C suppresses A (0.5) but not B (0.43).
    assert_eq!(box_nms(&boxes, &[0.9, 0.8, 0.95], 0.85), vec![2, 0, 1]);
    assert_eq!(box_nms(&boxes, &[0.9, 0.8, 0.95], 0.45), vec![2, 1]);
    // Equal scores keep input order (torchvision sorts stably); identical boxes: IoU 1.
    assert_eq!(
        box_nms(&boxes[..1].repeat(3), &[1.0, 1.0, 1.0], 0.7),
        vec![0]
    );
    assert_eq!(box_nms(&boxes[..2], &[0.0, 0.0], 0.7), vec![0]);
}

#[test]
fn near_crop_edge_ignores_image_edges() {
    let img = [0, 0, 512, 512];
    let crop = [169, 0, 512, 343];
    // x0 = 169 + 5 → near the crop's left edge, which is inside the image.
    assert!(is_box_near_crop_edge(
        [5.0, 100.0, 50.0, 150.0],
        crop,
        img,
        20.0
    ));
    // Near the crop's top (y = 0), which is the image's top: not filtered.
    assert!(!is_box_near_crop_edge(
        [100.0, 3.0, 150.0, 50.0],
        crop,
        img,
        20.0
    ));
    // Bottom at 343 − 21 = 322 (crop frame 322): just outside atol.
    assert!(!is_box_near_crop_edge(
        [100.0, 100.0, 150.0, 322.0],
        crop,
        img,
        20.0
    ));
    assert!(is_box_near_crop_edge(
        [100.0, 100.0, 150.0, 323.0],
        crop,
        img,
        20.0
    ));
    // The whole image as the crop filters nothing.
    assert!(!is_box_near_crop_edge(
        [0.0, 0.0, 511.0, 511.0],
        img,
        img,
        20.0
    ));
}

#[test]
fn rle_round_trip_and_a_hand_written_rle() {
    // 3 high × 2 wide, row-major:
    //   0 1
    //   1 1
    //   0 0
    // column-major: 0 1 0 | 1 1 0 → runs 1,1,1,2,1.
    let m = [false, true, true, true, false, false];
    let rle = Rle::from_mask(&m, 3, 2);
    assert_eq!(rle.counts, vec![1, 1, 1, 2, 1]);
    assert_eq!(rle.area(), 3);
    assert_eq!(rle.to_mask(), m);
    // A mask starting with a set pixel starts with a zero-length background run.
    let full = Rle::from_mask(&[true; 6], 3, 2);
    assert_eq!(full.counts, vec![0, 6]);
    assert_eq!(full.to_mask(), vec![true; 6]);
    // Round trip of an irregular mask through both encodings.
    let (h, w) = (7, 5);
    let m: Vec<bool> = (0..h * w).map(|i| (i * 7 + i / 3) % 5 < 2).collect();
    let rle = Rle::from_mask(&m, h, w);
    assert_eq!(rle.to_mask(), m);
    let s = rle.to_coco_string();
    assert_eq!(Rle::from_coco_string(&s, h, w).unwrap(), rle);
}

#[test]
fn coco_string_by_hand() {
    // counts [1, 1, 1, 2, 1]: the first three as is ('0' + n), then 2 − 1 = 1 and
    // 1 − 1 = 0 (deltas to the count two before).
    let rle = Rle {
        size: [3, 2],
        counts: vec![1, 1, 1, 2, 1],
    };
    assert_eq!(rle.to_coco_string(), "11110");
    // 100 = 3·32 + 4: low group 4 | 0x20 (more) → 'T', then 3 → '3'; 5 → '5', 2 → '2'.
    // 2 − 5 = −3: 0b11101, sign bit 0x10 set and nothing more → 29 + 48 = 'M'.
    // 91 − 2 = 89 = 2·32 + 25: 25 has the sign bit, so it continues: 25 | 0x20 → 'i',
    // then '2'. pycocotools' frPyObjects gives the same "T352Mi2".
    let rle = Rle {
        size: [10, 20],
        counts: vec![100, 5, 2, 2, 91],
    };
    assert_eq!(rle.to_coco_string(), "T352Mi2");
    assert_eq!(Rle::from_coco_string("T352Mi2", 10, 20).unwrap(), rle);
    assert!(Rle::from_coco_string("T352Mi2", 10, 10).is_err());
    assert!(Rle::from_coco_string("T", 10, 20).is_err());
}

#[test]
fn small_holes_and_islands() {
    // 5×6, one 1-px hole inside a block and a 1-px island, 8-connected.
    #[rustfmt::skip]
    let m: Vec<bool> = [
        1, 1, 1, 0, 0, 0,
        1, 0, 1, 0, 0, 1,
        1, 1, 1, 0, 0, 0,
        0, 0, 0, 1, 0, 0,
        0, 0, 0, 0, 0, 0,
    ].iter().map(|&v| v == 1).collect();
    let (filled, changed) = remove_small_regions(&m, 5, 6, 2.0, RegionMode::Holes);
    assert!(changed);
    let mut want = m.clone();
    want[7] = true;
    assert_eq!(filled, want);
    // Islands < 2 px: the island at (5, 1) goes; (3, 3) touches the block diagonally.
    let (clean, changed) = remove_small_regions(&m, 5, 6, 2.0, RegionMode::Islands);
    assert!(changed);
    let mut want = m.clone();
    want[11] = false;
    assert_eq!(clean, want);
    // Every island small: the largest stays.
    let (clean, _) = remove_small_regions(&m, 5, 6, 100.0, RegionMode::Islands);
    want[11] = false;
    assert_eq!(clean, want);
    let (same, changed) = remove_small_regions(&m, 5, 6, 1.0, RegionMode::Islands);
    assert!(!changed);
    assert_eq!(same, m);
}

/// Placing a region's RLE in a larger frame equals pasting the decoded region into an empty
/// frame and encoding that (the oracle: plain pixel copies), for masks that touch the region's
/// edges, fill whole columns, are empty or full, at the frame's corners and inside it.
#[test]
fn placed_rle_equals_pasted_mask() {
    let (h, w) = (7usize, 9usize);
    let mut seed = 12345u64;
    let mut rand = || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as usize
    };
    for case in 0..300 {
        let (rh, rw) = (1 + rand() % h, 1 + rand() % w);
        let (x0, y0) = (rand() % (w - rw + 1), rand() % (h - rh + 1));
        let region: Vec<bool> = match case {
            0 => vec![false; rh * rw],
            1 => vec![true; rh * rw],
            _ => (0..rh * rw).map(|_| rand() % 3 == 0).collect(),
        };
        let mut frame = vec![false; h * w];
        for y in 0..rh {
            for x in 0..rw {
                frame[(y0 + y) * w + x0 + x] = region[y * rw + x];
            }
        }
        let placed = Rle::from_mask(&region, rh, rw).placed(x0, y0, h, w);
        assert_eq!(placed, Rle::from_mask(&frame, h, w), "case {case}");
        let runs: usize = placed.set_runs().map(|(_, n)| n).sum();
        assert_eq!(runs as u64, placed.area());
    }
    // A region the size of the frame is the same mask.
    let full = Rle::from_mask(&[true, false, true, true], 2, 2);
    assert_eq!(full.placed(0, 0, 2, 2), full);
}
