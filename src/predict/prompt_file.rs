//! Prompt files for `segadapt predict`: per image, the objects to segment, each a box and/or
//! points. Two forms, told apart by the file's first non-blank character (`{` is JSON):
//!
//! * **CSV** with a header naming the columns (any order; `#` lines and blank lines skipped;
//!   fields may be double-quoted):
//!   - `image,x0,y0,x1,y1`: one object per row, prompted by its box;
//!   - `image,x,y,label`: one object per row, prompted by one point (`label` 1 = object,
//!     0 = background; the column may be left out, then every point is 1);
//!   - `image,object,x,y,label`: rows with the same image and `object` value are the points
//!     of one object (e.g. a positive and a negative click).
//! * **COCO JSON**: `images` (`id`, `file_name`) and `annotations` with `image_id` and a
//!   `bbox` `[x, y, w, h]` (the box `x, y, x+w, y+h`) and/or `point_coords` `[[x, y], …]` with
//!   optional `point_labels` `[1, 0, …]`; other fields (`segmentation`, …) are ignored, so a
//!   ground-truth COCO file prompts with its objects' boxes.
//!
//! Images are matched by file name; a folder part (`images/a.png`) is ignored. Objects keep
//! the file's order: object k of an image gets label k in its label image.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::{Point, PromptInput};

/// Prompts per image file name, each image's objects in file order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PromptFile {
    pub images: BTreeMap<String, Vec<PromptInput>>,
}

impl PromptFile {
    pub fn load(path: &Path) -> Result<PromptFile> {
        let bytes = crate::fsutil::read_file(path)?;
        let text = String::from_utf8(bytes)
            .map_err(|_| anyhow::anyhow!("prompt file {} is not UTF-8 text", path.display()))?;
        let parsed = if text.trim_start().starts_with('{') {
            parse_coco(&text)
        } else {
            parse_csv(&text)
        };
        let file = parsed.with_context(|| format!("prompt file {}", path.display()))?;
        if file.images.values().all(|v| v.is_empty()) {
            bail!("prompt file {} holds no prompts", path.display());
        }
        Ok(file)
    }

    /// The objects of one image (by file name), empty when the file names none.
    pub fn for_image(&self, file_name: &str) -> &[PromptInput] {
        self.images
            .get(&base_name(file_name))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
}

/// The file name without any folder part.
fn base_name(name: &str) -> String {
    name.rsplit(['/', '\\']).next().unwrap_or(name).to_string()
}

fn number(s: &str, what: &str) -> Result<f64> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("{what} '{s}' is not a number"))?;
    if !v.is_finite() {
        bail!("{what} '{s}' is not a finite number");
    }
    Ok(v)
}

fn label(v: f64, what: &str) -> Result<bool> {
    match v {
        1.0 => Ok(true),
        0.0 => Ok(false),
        _ => bail!("{what} {v} must be 1 (object) or 0 (background)"),
    }
}

fn check_box(b: [f64; 4]) -> Result<[f64; 4]> {
    if b[2] < b[0] || b[3] < b[1] {
        bail!("box {b:?}: x1 must be ≥ x0 and y1 ≥ y0");
    }
    Ok(b)
}

/// One CSV line split into fields; `"…"` quotes a field (`""` is a quote inside it).
fn split_csv(line: &str) -> Result<Vec<String>> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, c) => cur.push(c),
            (false, '"') if cur.trim().is_empty() => {
                cur.clear();
                quoted = true;
            }
            (false, ',') => fields.push(std::mem::take(&mut cur).trim().to_string()),
            (false, c) => cur.push(c),
        }
    }
    if quoted {
        bail!("a quoted field is not closed");
    }
    fields.push(cur.trim().to_string());
    Ok(fields)
}

enum Layout {
    Boxes([usize; 4]),
    Points {
        xy: [usize; 2],
        label: Option<usize>,
        object: Option<usize>,
    },
}

fn layout(header: &[String]) -> Result<(usize, Layout)> {
    let col = |name: &str| header.iter().position(|h| h.eq_ignore_ascii_case(name));
    for (i, h) in header.iter().enumerate() {
        if header[..i].iter().any(|o| o.eq_ignore_ascii_case(h)) {
            bail!("line 1: column '{h}' appears twice");
        }
        let known = ["image", "x0", "y0", "x1", "y1", "x", "y", "label", "object"];
        if !known.iter().any(|k| k.eq_ignore_ascii_case(h)) {
            bail!(
                "line 1: unknown column '{h}'; the header is image,x0,y0,x1,y1 (boxes) or \
                 image,x,y,label (points, optionally with an object column)"
            );
        }
    }
    let image = col("image").context("line 1: the header has no 'image' column")?;
    let boxes = ["x0", "y0", "x1", "y1"].map(col);
    let points = [col("x"), col("y")];
    let any_box = boxes.iter().any(Option::is_some);
    let any_point = points.iter().any(Option::is_some) || col("label").is_some();
    match (any_box, any_point) {
        (true, false) => {
            let [Some(a), Some(b), Some(c), Some(d)] = boxes else {
                bail!("line 1: a box file needs all of x0,y0,x1,y1");
            };
            if col("object").is_some() {
                bail!("line 1: a box file has one object per row; drop the 'object' column");
            }
            Ok((image, Layout::Boxes([a, b, c, d])))
        }
        (false, true) => {
            let [Some(x), Some(y)] = points else {
                bail!("line 1: a point file needs both x and y");
            };
            Ok((
                image,
                Layout::Points {
                    xy: [x, y],
                    label: col("label"),
                    object: col("object"),
                },
            ))
        }
        (true, true) => bail!(
            "line 1: box columns (x0,y0,x1,y1) and point columns (x,y,label) in one CSV; \
             use a COCO JSON prompt file for objects with both"
        ),
        (false, false) => bail!("line 1: no prompt columns (x0,y0,x1,y1 or x,y)"),
    }
}

/// Parses the CSV form (see the module docs).
pub fn parse_csv(text: &str) -> Result<PromptFile> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'));
    let Some((hline, header)) = lines.next() else {
        bail!("empty file: expected a header such as image,x0,y0,x1,y1 or image,x,y,label");
    };
    let header = split_csv(header).with_context(|| format!("line {hline}"))?;
    let (image_col, layout) = layout(&header).with_context(|| format!("line {hline}"))?;
    let mut file = PromptFile::default();
    // (image, object key) → index of the object in that image's list.
    let mut objects: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (n, line) in lines {
        let f = split_csv(line).with_context(|| format!("line {n}"))?;
        if f.len() != header.len() {
            bail!(
                "line {n}: {} fields, the header has {}",
                f.len(),
                header.len()
            );
        }
        let image = base_name(&f[image_col]);
        if image.is_empty() {
            bail!("line {n}: empty image name");
        }
        let num = |c: usize| number(&f[c], &header[c]).with_context(|| format!("line {n}"));
        let list = file.images.entry(image.clone()).or_default();
        match &layout {
            Layout::Boxes(c) => {
                let b = [num(c[0])?, num(c[1])?, num(c[2])?, num(c[3])?];
                list.push(PromptInput {
                    bbox: Some(check_box(b).with_context(|| format!("line {n}"))?),
                    ..Default::default()
                });
            }
            Layout::Points {
                xy,
                label: l,
                object,
            } => {
                let positive = match l {
                    Some(c) => label(num(*c)?, "label").with_context(|| format!("line {n}"))?,
                    None => true,
                };
                let point = Point {
                    x: num(xy[0])?,
                    y: num(xy[1])?,
                    positive,
                };
                // Without an object column every row is its own object.
                let key = object.map_or_else(|| format!("row {n}"), |c| f[c].clone());
                match objects.get(&(image.clone(), key.clone())) {
                    Some(&i) => list[i].points.push(point),
                    None => {
                        objects.insert((image, key), list.len());
                        list.push(PromptInput {
                            points: vec![point],
                            ..Default::default()
                        });
                    }
                }
            }
        }
    }
    Ok(file)
}

/// Parses the COCO JSON form (see the module docs).
pub fn parse_coco(text: &str) -> Result<PromptFile> {
    let v: Value = serde_json::from_str(text).context("not valid JSON")?;
    let images = v["images"]
        .as_array()
        .context("a COCO prompt file needs an 'images' list")?;
    let mut names: BTreeMap<i64, String> = BTreeMap::new();
    let mut file = PromptFile::default();
    for (i, im) in images.iter().enumerate() {
        let id = im["id"]
            .as_i64()
            .with_context(|| format!("images[{i}] has no integer 'id'"))?;
        let name = im["file_name"]
            .as_str()
            .with_context(|| format!("images[{i}] has no 'file_name'"))?;
        if names.insert(id, base_name(name)).is_some() {
            bail!("images[{i}]: id {id} appears twice");
        }
        file.images.entry(base_name(name)).or_default();
    }
    let anns = v["annotations"]
        .as_array()
        .context("a COCO prompt file needs an 'annotations' list")?;
    for (i, a) in anns.iter().enumerate() {
        let at = || format!("annotations[{i}]");
        let image_id = a["image_id"]
            .as_i64()
            .with_context(|| format!("{}: no integer 'image_id'", at()))?;
        let name = names
            .get(&image_id)
            .with_context(|| format!("{}: image_id {image_id} is not in 'images'", at()))?;
        let prompt = coco_prompt(a).with_context(at)?;
        file.images.entry(name.clone()).or_default().push(prompt);
    }
    Ok(file)
}

fn numbers(v: &Value, what: &str) -> Result<Vec<f64>> {
    v.as_array()
        .with_context(|| format!("'{what}' must be a list of numbers"))?
        .iter()
        .map(|x| {
            x.as_f64()
                .filter(|f| f.is_finite())
                .with_context(|| format!("'{what}' holds {x}, not a finite number"))
        })
        .collect()
}

fn coco_prompt(a: &Value) -> Result<PromptInput> {
    let mut p = PromptInput::default();
    if !a["bbox"].is_null() {
        let b = numbers(&a["bbox"], "bbox")?;
        let [x, y, w, h] = b[..] else {
            bail!("'bbox' must be [x, y, w, h], got {} numbers", b.len());
        };
        if w < 0.0 || h < 0.0 {
            bail!("'bbox' [x, y, w, h] has a negative width or height");
        }
        p.bbox = Some([x, y, x + w, y + h]);
    }
    if !a["point_coords"].is_null() {
        let pts = a["point_coords"]
            .as_array()
            .context("'point_coords' must be a list of [x, y]")?;
        let labels = match &a["point_labels"] {
            Value::Null => vec![1.0; pts.len()],
            l => numbers(l, "point_labels")?,
        };
        if labels.len() != pts.len() {
            bail!(
                "{} point_coords but {} point_labels",
                pts.len(),
                labels.len()
            );
        }
        for (xy, &l) in pts.iter().zip(&labels) {
            let xy = numbers(xy, "point_coords")?;
            let [x, y] = xy[..] else {
                bail!("a point of 'point_coords' must be [x, y]");
            };
            p.points.push(Point {
                x,
                y,
                positive: label(l, "point label")?,
            });
        }
    }
    if p.is_empty() {
        bail!("no 'bbox' and no 'point_coords': nothing to prompt with");
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_boxes_points_and_objects() {
        let f = parse_csv("# boxes\nimage,x0,y0,x1,y1\na.png,1,2,3,4\n\n\"dir/b,1.png\",0,0,5,5\n")
            .unwrap();
        assert_eq!(f.for_image("a.png")[0].bbox, Some([1.0, 2.0, 3.0, 4.0]));
        assert_eq!(f.for_image("b,1.png").len(), 1);
        let f = parse_csv("y,x,image\n3,4,a.png\n5,6,a.png\n").unwrap();
        let a = f.for_image("a.png");
        assert_eq!(a.len(), 2);
        assert_eq!(
            a[1].points,
            vec![Point {
                x: 6.0,
                y: 5.0,
                positive: true
            }]
        );
        let f =
            parse_csv("image,object,x,y,label\na.png,n1,1,1,1\na.png,n2,2,2,1\na.png,n1,3,3,0\n")
                .unwrap();
        let a = f.for_image("a.png");
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].points.len(), 2);
        assert!(!a[0].points[1].positive);
        assert!(f.for_image("missing.png").is_empty());
    }

    #[test]
    fn csv_errors_name_the_line() {
        for (text, want) in [
            ("", "empty file"),
            ("image,x0,y0,x1\na,1,2,3\n", "x0,y0,x1,y1"),
            ("image,x0,y0,x1,y1\na,1,2,3\n", "line 2: 4 fields"),
            ("image,x0,y0,x1,y1\na,5,5,1,1\n", "x1 must be"),
            ("image,x,y,label\na,1,2,7\n", "must be 1"),
            ("image,x,y\na,1,nan\n", "not a finite"),
            ("image,x,y\n\n# c\na,1,b\n", "line 4"),
            ("image,x,y,z\n", "unknown column 'z'"),
            ("x,y\n", "no 'image' column"),
            ("image,x0,y0,x1,y1,x,y\n", "COCO JSON"),
            ("image,x,y\n\"a,1,2\n", "not closed"),
        ] {
            let e = format!("{:#}", parse_csv(text).unwrap_err());
            assert!(e.contains(want), "{text:?}: '{want}' not in '{e}'");
        }
    }

    #[test]
    fn coco_boxes_and_points() {
        let f = parse_coco(
            r#"{"images":[{"id":7,"file_name":"images/a.png"},{"id":8,"file_name":"b.png"}],
                "annotations":[{"image_id":7,"bbox":[10,20,5,6]},
                               {"image_id":7,"point_coords":[[1,2],[3,4]],"point_labels":[1,0],
                                "bbox":[0,0,1,1]}]}"#,
        )
        .unwrap();
        let a = f.for_image("a.png");
        assert_eq!(a[0].bbox, Some([10.0, 20.0, 15.0, 26.0]));
        assert_eq!(a[1].points.len(), 2);
        assert!(!a[1].points[1].positive);
        assert!(f.for_image("b.png").is_empty());
        for (text, want) in [
            (r#"{"annotations":[]}"#, "'images'"),
            (
                r#"{"images":[{"id":1,"file_name":"a"}],"annotations":[{"image_id":2,"bbox":[0,0,1,1]}]}"#,
                "image_id 2",
            ),
            (
                r#"{"images":[{"id":1,"file_name":"a"}],"annotations":[{"image_id":1}]}"#,
                "nothing to prompt",
            ),
            (
                r#"{"images":[{"id":1,"file_name":"a"}],"annotations":[{"image_id":1,"bbox":[0,0,1]}]}"#,
                "[x, y, w, h]",
            ),
            (
                r#"{"images":[{"id":1,"file_name":"a"}],"annotations":[{"image_id":1,"point_coords":[[1,2]],"point_labels":[1,1]}]}"#,
                "1 point_coords but 2",
            ),
            ("{", "not valid JSON"),
        ] {
            let e = format!("{:#}", parse_coco(text).unwrap_err());
            assert!(e.contains(want), "{text}: '{want}' not in '{e}'");
        }
    }
}
