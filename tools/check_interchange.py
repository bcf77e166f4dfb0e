#!/usr/bin/env python3
"""Checks segadapt's prediction files with other programs' readers (issue 16, item 5).

    check_interchange.py boxes LABELS.png IMAGE_NAME OUT.csv
        a prompt CSV (image,x0,y0,x1,y1) with the tight box of every object of a ground-truth
        label image, for `segadapt predict --prompts`.

    check_interchange.py check DIR [DIR ...] [--report FILE]
        for every `segadapt predict` output folder (its coco.json and per-image files):
        * tifffile and imageio read <stem>_labels.tif / <stem>_labels.png as uint16 of the
          image's size, and both give the same array;
        * pycocotools loads coco.json (COCO API), decodes every annotation, and its `area`
          equals the decoded mask's pixel count (and maskUtils.area), its `bbox` equals
          maskUtils.toBbox;
        * the label image equals the one rebuilt from the decoded masks by the documented rule
          (largest first, equal areas in order, so smaller masks stay on top); label k is
          exactly annotation k's mask wherever masks do not overlap (counted);
        * object PNGs (if written) read by imageio equal 255 × the decoded mask.

        With polygon segmentations (`--coco-segmentation polygon`, needs `--objects`): the
        object PNG is the truth; pycocotools' decoded polygon must equal it with its holes
        filled (8-connected background, as segadapt traces), `area` its pixel count.
        Exits 1 on the first mismatch; prints (and with --report writes) a JSON summary.

Needs numpy, scipy, tifffile, imageio, pycocotools
(/work/.venv-torch/bin/pip install tifffile imageio).
"""

import json
import pathlib
import sys
from importlib import metadata

import imageio.v3 as iio
import numpy as np
import tifffile
from scipy import ndimage
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO


def fail(msg):
    print(f"MISMATCH: {msg}", file=sys.stderr)
    sys.exit(1)


def boxes(labels_path, image_name, out_csv):
    labels = iio.imread(labels_path)
    rows = ["image,x0,y0,x1,y1"]
    for k in np.unique(labels):
        if k == 0:
            continue
        ys, xs = np.nonzero(labels == k)
        rows.append(f"{image_name},{xs.min()},{ys.min()},{xs.max()},{ys.max()}")
    pathlib.Path(out_csv).write_text("\n".join(rows) + "\n")
    print(f"{out_csv}: {len(rows) - 1} boxes")


def rebuild(masks, shape):
    """The label image of overlapping masks: largest painted first (stable), k = mask k."""
    labels = np.zeros(shape, np.uint16)
    order = sorted(range(len(masks)), key=lambda i: -int(masks[i].sum()))
    for i in order:
        labels[masks[i]] = i + 1
    return labels


def check_polygon(out, stem, a, decoded):
    """The object PNG for a polygon annotation, after checking pycocotools' decoding of it."""
    p = out / f"{stem}_objects" / f"{stem}_{a['label']:04}.png"
    if not p.exists():
        fail(f"{p}: polygon annotations are checked against the object PNGs (--objects)")
    truth = iio.imread(p) > 0
    filled = ndimage.binary_fill_holes(truth, structure=np.ones((3, 3)))
    if not np.array_equal(decoded, filled):
        fail(f"{stem} object {a['label']}: decoded polygon differs from the object with its "
             f"holes filled at {int((decoded != filled).sum())} pixels")
    if a["area"] != int(truth.sum()):
        fail(f"{stem} object {a['label']}: area {a['area']} vs {int(truth.sum())} pixels")
    rle = mask_utils.encode(np.asfortranarray(decoded.astype(np.uint8)))
    if list(mask_utils.toBbox(rle)) != [float(v) for v in a["bbox"]]:
        fail(f"{stem} object {a['label']}: bbox {a['bbox']} vs {mask_utils.toBbox(rle)}")
    return truth


def check_folder(out):
    out = pathlib.Path(out)
    coco = COCO(str(out / "coco.json"))
    summary = {"folder": out.name, "images": []}
    for img in coco.loadImgs(coco.getImgIds()):
        stem = pathlib.Path(img["file_name"]).stem
        h, w = img["height"], img["width"]
        anns = sorted(coco.loadAnns(coco.getAnnIds(imgIds=img["id"])), key=lambda a: a["label"])
        if [a["label"] for a in anns] != list(range(1, len(anns) + 1)):
            fail(f"{stem}: labels are not 1..{len(anns)}")
        masks = []
        polygons = {"annotations": 0, "exact": 0, "holes_filled": 0}
        for a in anns:
            m = coco.annToMask(a).astype(bool)
            if m.shape != (h, w):
                fail(f"{stem} object {a['label']}: mask {m.shape}, image {(h, w)}")
            if isinstance(a["segmentation"], list):
                truth = check_polygon(out, stem, a, m)
                polygons["annotations"] += 1
                polygons["exact" if np.array_equal(truth, m) else "holes_filled"] += 1
                masks.append(truth)
                continue
            rle = a["segmentation"]
            if a["area"] != int(m.sum()) or a["area"] != int(mask_utils.area(rle)):
                fail(f"{stem} object {a['label']}: area {a['area']} vs {int(m.sum())} pixels")
            if list(mask_utils.toBbox(rle)) != [float(v) for v in a["bbox"]]:
                fail(f"{stem} object {a['label']}: bbox {a['bbox']} vs {mask_utils.toBbox(rle)}")
            masks.append(m)
        want = rebuild(masks, (h, w))
        readers = {}
        tif, png = out / f"{stem}_labels.tif", out / f"{stem}_labels.png"
        if tif.exists():
            readers["tifffile(tif)"] = tifffile.imread(tif)
            readers["imageio(tif)"] = iio.imread(tif)
        if png.exists():
            readers["imageio(png)"] = iio.imread(png)
        if not readers:
            fail(f"{stem}: no label image")
        for name, arr in readers.items():
            if arr.dtype != np.uint16 or arr.shape != (h, w):
                fail(f"{stem}: {name} gives {arr.dtype} {arr.shape}, want uint16 {(h, w)}")
            if not np.array_equal(arr, want):
                fail(f"{stem}: {name} differs from the labels rebuilt from coco.json "
                     f"at {int((arr != want).sum())} pixels")
        overlap = np.sum(masks, axis=0) > 1 if masks else np.zeros((h, w), bool)
        exact = sum(bool(np.array_equal(want == k + 1, m)) for k, m in enumerate(masks))
        objects = out / f"{stem}_objects"
        n_png = 0
        if objects.is_dir():
            for k, m in enumerate(masks):
                p = objects / f"{stem}_{k + 1:04}.png"
                if not np.array_equal(iio.imread(p), m.astype(np.uint8) * 255):
                    fail(f"{p}: differs from annotation {k + 1}")
                n_png += 1
        summary["images"].append({
            "file_name": img["file_name"], "size": [h, w], "annotations": len(anns),
            "readers": sorted(readers), "label_values": int(len(np.unique(want)) - 1),
            "objects_exactly_their_label": exact, "overlap_pixels": int(overlap.sum()),
            "object_pngs_checked": n_png, "polygons": polygons,
        })
    return summary


def main(argv):
    if len(argv) == 4 and argv[0] == "boxes":
        return boxes(*argv[1:])
    if len(argv) >= 2 and argv[0] == "check":
        args, report = argv[1:], None
        if "--report" in args:
            i = args.index("--report")
            report, args = args[i + 1], args[:i] + args[i + 2:]
        versions = {p: metadata.version(p)
                    for p in ["tifffile", "imageio", "pycocotools", "numpy", "scipy"]}
        result = {"ok": True, "versions": versions,
                  "folders": [check_folder(d) for d in args]}
        text = json.dumps(result, indent=1)
        print(text)
        if report:
            pathlib.Path(report).write_text(text + "\n")
        return
    print(__doc__)
    sys.exit(2)


if __name__ == "__main__":
    main(sys.argv[1:])
