use super::*;

fn square(w: usize, h: usize, x0: usize, y0: usize, x1: usize, y1: usize) -> Object {
    let mut mask = vec![false; w * h];
    for y in y0..y1 {
        for x in x0..x1 {
            mask[y * w + x] = true;
        }
    }
    Object {
        image: 0,
        area: (x1 - x0) * (y1 - y0),
        mask,
    }
}

/// A 3000×100 image (tile 1024, halo 100, above 2048: cores x 0..1024, 1024..2048,
/// 2048..3000) and a 50×40 one that is not tiled. Regions worked out by hand.
#[test]
fn objects_go_to_their_tile_and_keep_their_pixels() {
    let (w, h) = (3000, 100);
    let big = RgbImage::from_fn(w as u32, h as u32, |x, y| {
        image::Rgb([(x % 256) as u8, (x / 256) as u8, y as u8])
    });
    let small = RgbImage::from_fn(50, 40, |x, y| image::Rgb([x as u8, y as u8, 7]));
    let mut objects = vec![
        square(w, h, 10, 10, 30, 30),      // core 0 → x 0..1124
        square(w, h, 1100, 20, 1150, 60),  // centre x 1124.5 → core 1 → x 924..2148
        square(w, h, 1030, 5, 1040, 15),   // core 1 as well: the same crop
        square(w, h, 900, 0, 2200, 100),   // wider than a tile: own crop x 800..2300
        square(w, h, 2950, 90, 3000, 100), // last core → x 1948..3000
    ];
    let mut s = square(50, 40, 5, 5, 9, 9);
    s.image = 1;
    objects.push(s);
    let want: [(usize, [usize; 4]); 6] = [
        (0, [0, 0, 1124, 100]),
        (0, [924, 0, 2148, 100]),
        (0, [924, 0, 2148, 100]),
        (0, [800, 0, 2300, 100]),
        (0, [1948, 0, 3000, 100]),
        (1, [0, 0, 50, 40]),
    ];
    let before = objects.clone();
    let mut data = TrainData::new(
        vec![big.clone(), small.clone()],
        vec!["a".into(), "b".into()],
        objects,
    );
    data.train = vec![0, 2, 4, 5];
    data.val = vec![1, 3];
    let cfg = TileConfig {
        tile: 1024,
        halo: 100,
        tile_above: 2048,
    };
    let (t, sum) = into_tiles(data, &cfg);
    assert_eq!(
        sum,
        TilingSummary {
            images_tiled: 1,
            crops: 4,
            own_crops: 1
        }
    );
    assert_eq!(
        (t.train.clone(), t.val.clone()),
        (vec![0, 2, 4, 5], vec![1, 3])
    );
    assert_eq!(t.images.len(), 5, "objects 1 and 2 share their tile");
    assert_eq!(t.objects[1].image, t.objects[2].image);
    for (k, (o, (src, r))) in t.objects.iter().zip(want).enumerate() {
        let img = &t.images[o.image];
        let srcimg = if src == 0 { &big } else { &small };
        let sw = srcimg.width() as usize;
        assert_eq!(
            (img.width() as usize, img.height() as usize),
            (r[2] - r[0], r[3] - r[1]),
            "object {k}"
        );
        // Every pixel and mask value equals the source's at the region's offset.
        for y in 0..r[3] - r[1] {
            for x in 0..r[2] - r[0] {
                let (sx, sy) = (x + r[0], y + r[1]);
                assert_eq!(
                    img.get_pixel(x as u32, y as u32),
                    srcimg.get_pixel(sx as u32, sy as u32)
                );
                assert_eq!(
                    o.mask[y * (r[2] - r[0]) + x],
                    before[k].mask[sy * sw + sx],
                    "object {k}"
                );
            }
        }
        assert_eq!(
            o.area, before[k].area,
            "object {k}: the whole object is inside"
        );
    }
    assert_eq!(t.image_names[t.objects[0].image], "a [x 0..1124, y 0..100]");
    assert_eq!(t.image_names[t.objects[5].image], "b");
}

#[test]
fn tiling_off_changes_nothing() {
    let img = RgbImage::from_fn(3000, 10, |x, _| image::Rgb([x as u8, 0, 0]));
    let objects = vec![
        square(3000, 10, 5, 2, 9, 6),
        square(3000, 10, 2500, 1, 2600, 9),
    ];
    let data = TrainData::new(vec![img.clone()], vec!["a".into()], objects.clone());
    let (t, sum) = into_tiles(data, &TileConfig::off());
    assert_eq!(sum, TilingSummary::default());
    assert_eq!(t.images.len(), 1);
    assert_eq!(t.images[0], img);
    for (a, b) in t.objects.iter().zip(&objects) {
        assert_eq!((a.image, &a.mask, a.area), (b.image, &b.mask, b.area));
    }
}
