#!/usr/bin/env python3
"""Fixtures of tests/predict.rs (written to tests/fixtures/predict/):

* nuclei_crop.png: the top-left 160x160 of tests/fixtures/nuclei_rgb.png (the nuclei image);
* prompts.csv: tight boxes (x0,y0,x1,y1 = min/max pixel of the object) of three nuclei of the
  ground-truth labels (nuclei_eval/masks/img2d.png) that lie inside the crop, plus one row for
  broken.png (a file the test writes that no reader can decode);
* labels written by other libraries for a known array (the reverse direction of
  tools/check_interchange.py): `value(x, y) = (x * 257 + y * 4099) % 65536` on a 23x17 image
  (width 23), with value 65535 at (0, 0); as tifffile TIFFs (plain, zlib-compressed,
  big-endian, tiled 16x16) and an imageio 16-bit PNG. The Rust test computes the same formula.

Run: /work/.venv-torch/bin/python tools/make_predict_fixtures.py  (needs numpy, PIL,
tifffile, imageio; the labels from ${SEGADAPT_CACHE:-~/.cache/segadapt}/data/nuclei_eval).
"""

import os
import pathlib

import imageio.v3 as iio
import numpy as np
import tifffile
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "predict"
CACHE = pathlib.Path(os.environ.get("SEGADAPT_CACHE", pathlib.Path.home() / ".cache" / "segadapt"))
CROP = 160
OBJECTS = [7, 50, 154]  # ground-truth ids wholly inside the crop, boxes disjoint


def known_labels():
    y, x = np.mgrid[0:17, 0:23]
    v = ((x * 257 + y * 4099) % 65536).astype(np.uint16)
    v[0, 0] = 65535
    return v


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    rgb = np.array(Image.open(ROOT / "tests" / "fixtures" / "nuclei_rgb.png").convert("RGB"))
    Image.fromarray(rgb[:CROP, :CROP]).save(OUT / "nuclei_crop.png")

    gt = np.array(Image.open(CACHE / "data" / "nuclei_eval" / "masks" / "img2d.png"))
    rows = ["# boxes of three nuclei (tight, from the ground truth) in nuclei_crop.png",
            "image,x0,y0,x1,y1"]
    for k in OBJECTS:
        ys, xs = np.nonzero(gt == k)
        assert xs.max() < CROP and ys.max() < CROP, k
        rows.append(f"nuclei_crop.png,{xs.min()},{ys.min()},{xs.max()},{ys.max()}")
    rows.append("broken.png,1,1,5,5")
    (OUT / "prompts.csv").write_text("\n".join(rows) + "\n")

    v = known_labels()
    tifffile.imwrite(OUT / "labels_tifffile.tif", v)
    tifffile.imwrite(OUT / "labels_tifffile_zlib.tif", v, compression="zlib")
    tifffile.imwrite(OUT / "labels_tifffile_bigendian.tif", v, byteorder=">")
    tifffile.imwrite(OUT / "labels_tifffile_tiled.tif", v, tile=(16, 16))
    iio.imwrite(OUT / "labels_imageio.png", v)
    for f in sorted(OUT.iterdir()):
        print(f"{f.relative_to(ROOT)}: {f.stat().st_size} bytes")


if __name__ == "__main__":
    main()
