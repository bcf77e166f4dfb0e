//! Prompt sampling from ground-truth masks, so the adapted model stays promptable (and, with
//! the `none` share, learns to segment without a prompt).

use anyhow::{Result, bail};
use rand::Rng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use crate::metrics::bbox;
use crate::predict::{Point, PromptInput};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PromptKind {
    Box,
    Points,
    BoxPoints,
    None,
}

/// Relative frequency of each prompt kind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PromptMix {
    pub r#box: f64,
    pub points: f64,
    pub box_points: f64,
    pub none: f64,
    /// Box corners move by up to this fraction of the box size.
    pub box_jitter: f64,
    pub max_points: usize,
}

impl Default for PromptMix {
    fn default() -> Self {
        Self {
            r#box: 0.5,
            points: 0.3,
            box_points: 0.2,
            none: 0.0,
            box_jitter: 0.1,
            max_points: 3,
        }
    }
}

impl PromptMix {
    /// Parses `box=0.5,points=0.3,boxpoints=0.2,none=0`.
    pub fn parse(s: &str) -> Result<Self> {
        let mut m = PromptMix {
            r#box: 0.0,
            points: 0.0,
            box_points: 0.0,
            none: 0.0,
            ..Default::default()
        };
        for part in s.split(',').filter(|p| !p.trim().is_empty()) {
            let Some((k, v)) = part.split_once('=') else {
                bail!("--prompt-mix: '{part}' is not kind=weight")
            };
            let v: f64 = v
                .trim()
                .parse()
                .map_err(|_| anyhow::anyhow!("--prompt-mix: '{v}' is not a number"))?;
            if !(v >= 0.0 && v.is_finite()) {
                bail!("--prompt-mix: weights must be ≥ 0");
            }
            match k.trim() {
                "box" => m.r#box = v,
                "points" | "point" => m.points = v,
                "boxpoints" | "box_points" | "box+points" => m.box_points = v,
                "none" => m.none = v,
                other => {
                    bail!("--prompt-mix: unknown kind '{other}' (box, points, boxpoints, none)")
                }
            }
        }
        if m.r#box + m.points + m.box_points + m.none <= 0.0 {
            bail!("--prompt-mix: at least one weight must be > 0");
        }
        Ok(m)
    }

    pub fn sample(&self, rng: &mut StdRng) -> PromptKind {
        let total = self.r#box + self.points + self.box_points + self.none;
        let mut u = rng.random_range(0.0..total);
        for (w, k) in [
            (self.r#box, PromptKind::Box),
            (self.points, PromptKind::Points),
            (self.box_points, PromptKind::BoxPoints),
        ] {
            if u < w {
                return k;
            }
            u -= w;
        }
        if self.none > 0.0 {
            PromptKind::None
        } else {
            PromptKind::Box
        }
    }
}

fn jittered_box(mask: &[bool], w: usize, h: usize, jitter: f64, rng: &mut StdRng) -> [f64; 4] {
    let [x0, y0, x1, y1] = bbox(mask, w).expect("non-empty object");
    let (bw, bh) = ((x1 - x0 + 1) as f64, (y1 - y0 + 1) as f64);
    let mut j = |v: usize, s: f64, max: usize| {
        let d = if jitter > 0.0 {
            rng.random_range(-jitter..=jitter) * s
        } else {
            0.0
        };
        (v as f64 + d).clamp(0.0, (max - 1) as f64)
    };
    let (a, b, c, d) = (j(x0, bw, w), j(y0, bh, h), j(x1, bw, w), j(y1, bh, h));
    [a.min(c), b.min(d), a.max(c), b.max(d)]
}

fn random_pixel(
    mask: &[bool],
    want: bool,
    region: Option<[usize; 4]>,
    w: usize,
    rng: &mut StdRng,
) -> Option<(usize, usize)> {
    let cands: Vec<usize> = (0..mask.len())
        .filter(|&i| mask[i] == want)
        .filter(|&i| {
            region.is_none_or(|[x0, y0, x1, y1]| {
                (x0..=x1).contains(&(i % w)) && (y0..=y1).contains(&(i / w))
            })
        })
        .collect();
    if cands.is_empty() {
        return None;
    }
    let i = cands[rng.random_range(0..cands.len())];
    Some((i % w, i / w))
}

/// Samples `n_points` points (first one positive, then positive or negative at random).
fn sample_points(
    mask: &[bool],
    w: usize,
    h: usize,
    n_points: usize,
    rng: &mut StdRng,
) -> Vec<Point> {
    let [x0, y0, x1, y1] = bbox(mask, w).expect("non-empty object");
    // Negatives come from around the object (its box grown by half its size).
    let (gx, gy) = ((x1 - x0) / 2 + 2, (y1 - y0) / 2 + 2);
    let around = [
        x0.saturating_sub(gx),
        y0.saturating_sub(gy),
        (x1 + gx).min(w - 1),
        (y1 + gy).min(h - 1),
    ];
    let mut pts = Vec::new();
    for i in 0..n_points {
        let positive = i == 0 || rng.random_bool(0.5);
        let p = if positive {
            random_pixel(mask, true, None, w, rng)
        } else {
            random_pixel(mask, false, Some(around), w, rng)
        };
        if let Some((x, y)) = p {
            pts.push(Point {
                x: x as f64,
                y: y as f64,
                positive,
            });
        }
    }
    if pts.is_empty() {
        let (x, y) = random_pixel(mask, true, None, w, rng).expect("non-empty object");
        pts.push(Point {
            x: x as f64,
            y: y as f64,
            positive: true,
        });
    }
    pts
}

/// A prompt of `kind` for one object; `n_points` is shared by a batch so prompts stack.
pub fn sample_prompt(
    kind: PromptKind,
    mask: &[bool],
    w: usize,
    h: usize,
    mix: &PromptMix,
    n_points: usize,
    rng: &mut StdRng,
) -> PromptInput {
    match kind {
        PromptKind::Box => PromptInput {
            bbox: Some(jittered_box(mask, w, h, mix.box_jitter, rng)),
            ..Default::default()
        },
        PromptKind::Points => PromptInput {
            points: pad_points(sample_points(mask, w, h, n_points, rng), n_points),
            ..Default::default()
        },
        PromptKind::BoxPoints => PromptInput {
            bbox: Some(jittered_box(mask, w, h, mix.box_jitter, rng)),
            points: pad_points(sample_points(mask, w, h, n_points, rng), n_points),
            ..Default::default()
        },
        PromptKind::None => PromptInput::default(),
    }
}

/// Repeats the first point so every prompt of a batch has the same count.
fn pad_points(mut pts: Vec<Point>, n: usize) -> Vec<Point> {
    while pts.len() < n {
        pts.push(pts[0]);
    }
    pts.truncate(n);
    pts
}
