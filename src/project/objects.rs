//! What a new object entry gets besides its mask: a colour and its area and box.

/// A distinct, readable colour for object `k` (golden-angle hue walk).
pub fn palette_color(k: u64) -> [u8; 3] {
    let h = (k as f64 * 137.508).rem_euclid(360.0);
    let (s, v) = (0.75, 0.95);
    let c = v * s;
    let x = c * (1.0 - ((h / 60.0).rem_euclid(2.0) - 1.0).abs());
    let m = v - c;
    let (r, g, b) = match (h / 60.0) as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    [
        ((r + m) * 255.0).round() as u8,
        ((g + m) * 255.0).round() as u8,
        ((b + m) * 255.0).round() as u8,
    ]
}

/// Area and inclusive bounding box of a mask; None when empty.
pub fn mask_stats(mask: &[bool], width: usize) -> Option<(u64, [u32; 4])> {
    let mut area = 0u64;
    let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0usize, 0usize);
    for (i, _) in mask.iter().enumerate().filter(|(_, m)| **m) {
        let (x, y) = (i % width, i / width);
        area += 1;
        x0 = x0.min(x);
        y0 = y0.min(y);
        x1 = x1.max(x);
        y1 = y1.max(y);
    }
    (area > 0).then_some((area, [x0 as u32, y0 as u32, x1 as u32, y1 as u32]))
}
