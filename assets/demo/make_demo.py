"""Builds the bundled nuclei demo (assets/demo/nuclei/) from the repo's own fixture.

Input: tests/fixtures/nuclei_rgb.png (8-bit RGB of the real nuclei image `img2d.tif`) and the
ground-truth label image `$SEGADAPT_CACHE/data/nuclei_eval/masks/img2d.png` (fetched by
tools/fetch_assets.sh). Output: four 256x256 crops `images/nuclei_{0..3}.png` and, for the first
three, a 16-bit label image `labels/nuclei_{i}.png` holding up to 12 whole nuclei each (the
"already annotated" objects the demo starts with). The fourth crop is left for the user.
The app builds the demo project from these files (src/project/project.rs::create_demo).
"""
import os
import numpy as np
from PIL import Image

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.abspath(os.path.join(here, "..", ".."))
cache = os.environ.get("SEGADAPT_CACHE", os.path.expanduser("~/.cache/segadapt"))
rgb = np.array(Image.open(os.path.join(root, "tests/fixtures/nuclei_rgb.png")).convert("RGB"))
gt = np.array(Image.open(os.path.join(cache, "data/nuclei_eval/masks/img2d.png")))
out = os.path.join(here, "nuclei")
os.makedirs(os.path.join(out, "images"), exist_ok=True)
os.makedirs(os.path.join(out, "labels"), exist_ok=True)
corners = [(0, 0), (0, 256), (256, 0), (256, 256)]
for i, (y, x) in enumerate(corners):
    Image.fromarray(rgb[y:y + 256, x:x + 256]).save(os.path.join(out, "images", f"nuclei_{i}.png"), optimize=True)
    if i == 3:
        continue
    crop = gt[y:y + 256, x:x + 256]
    ids = [int(v) for v in np.unique(crop) if v > 0]
    # whole objects only (not cut by the crop), larger than 60 px, spread over the crop
    whole = [v for v in ids if (gt == v).sum() == (crop == v).sum() and (crop == v).sum() >= 60]
    rng = np.random.default_rng(i)
    keep = sorted(rng.choice(whole, size=min(12, len(whole)), replace=False).tolist())
    lab = np.zeros_like(crop, dtype=np.uint16)
    for k, v in enumerate(keep, start=1):
        lab[crop == v] = k
    Image.fromarray(lab).save(os.path.join(out, "labels", f"nuclei_{i}.png"), optimize=True)
    print(f"nuclei_{i}: {len(keep)} objects of {len(whole)} whole ones")
