#!/usr/bin/env python3
"""Official "segment everything" (`segment_anything.SamAutomaticMaskGenerator`) with the real
MobileSAM checkpoint on the nuclei image, as the oracle of tests/automatic_masks.rs.

Cases (each a full generator run on tests/fixtures/nuclei_rgb.png, 512x512):
  default   every parameter at the official default (32x32 points, 64 per batch, ...)
  pps16     points_per_side=16, otherwise default (what the Rust test runs: cheaper on CPU)
  crop8     points_per_side=8, crop_n_layers=1 (the image plus 4 overlapping crops)
  pps16_min400  pps16 with min_mask_region_area=400 (holes/islands removal + its NMS)

Each mask is stored as the official uncompressed RLE (column-major run lengths, starting with
a background run) plus pycocotools' compressed COCO string of it, predicted_iou,
stability_score, bbox (XYWH, as the official records), area, point_coords and crop_box.
Also a synthetic mask with holes and islands and cv2's `remove_small_regions` results on it.

Writes tests/fixtures/amg_nuclei_ref.json. Needs torch, segment-anything==1.0,
mobilesam-mirror==1.0.0, timm, pillow, opencv-python-headless, pycocotools, and
tools/fetch_assets.sh's cache. Timings (2 busy CPU cores): default 503 s, pps16 104 s,
crop8 180 s.

    python3 tools/make_amg_ref.py [--cases default,pps16,crop8,pps16_min400] [--update]
"""
import argparse
import inspect
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

HERE = Path(__file__).resolve().parent
FIX = HERE.parent / "tests" / "fixtures"
CACHE = Path(os.environ.get("SEGADAPT_CACHE", Path.home() / ".cache" / "segadapt"))

CASES = {
    "default": {},
    "pps16": {"points_per_side": 16},
    "crop8": {"points_per_side": 8, "crop_n_layers": 1},
    "pps16_min400": {"points_per_side": 16, "min_mask_region_area": 400},
}


def synthetic_regions():
    """A 24x32 mask with islands and holes of several sizes, and cv2's results on it."""
    from segment_anything.utils.amg import remove_small_regions

    m = np.zeros((24, 32), dtype=bool)
    m[2:20, 3:22] = True  # big object (342 px)
    m[6:9, 6:9] = False  # 9-px hole
    m[12:18, 10:18] = False  # 48-px hole
    m[19, 21] = False  # a notch on the border of the object: part of the background
    m[3, 25] = True  # 1-px island
    m[10:13, 26:29] = True  # 9-px island
    m[20, 22] = True  # touches the object diagonally: 8-connected, not an island
    m[22:24, 28:32] = True  # 8-px island on the image border
    out = {"size": list(m.shape), "mask": m.astype(np.uint8).ravel().tolist(), "cases": []}
    for thresh in (5, 10, 50, 400):
        for mode in ("holes", "islands"):
            r, changed = remove_small_regions(m, thresh, mode)
            out["cases"].append(
                {
                    "area_thresh": thresh,
                    "mode": mode,
                    "changed": bool(changed),
                    "mask": np.asarray(r).astype(np.uint8).ravel().tolist(),
                }
            )
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--out", default=str(FIX / "amg_nuclei_ref.json"))
    ap.add_argument(
        "--update",
        action="store_true",
        help="keep the cases of an existing --out that are not rerun (the default case is slow)",
    )
    args = ap.parse_args()

    from mobile_sam import sam_model_registry
    from pycocotools import mask as mask_utils
    from segment_anything import SamAutomaticMaskGenerator

    torch.set_num_threads(2)
    ckpt = CACHE / "models" / "mobile_sam.pt"
    model = sam_model_registry["vit_t"](checkpoint=str(ckpt))
    model.eval()  # again after loading: see make_fixtures.py (TinyViT attention-bias cache)
    img = np.asarray(Image.open(FIX / "nuclei_rgb.png").convert("RGB"))

    # The official defaults, read from the signature (the Rust defaults must equal them).
    sig = inspect.signature(SamAutomaticMaskGenerator.__init__)
    defaults = {
        k: v.default
        for k, v in sig.parameters.items()
        if k not in ("self", "model") and v.default is not inspect.Parameter.empty
    }
    old = json.loads(Path(args.out).read_text()) if args.update and Path(args.out).exists() else {}
    ref = {
        "image": "nuclei_rgb.png",
        "model": "mobile_sam.pt",
        "generator": "segment_anything.SamAutomaticMaskGenerator (segment-anything==1.0)",
        "defaults": defaults,
        "cases": old.get("cases", {}),
        "remove_small_regions": synthetic_regions(),
    }
    for name in args.cases.split(","):
        params = CASES[name]
        gen = SamAutomaticMaskGenerator(model, output_mode="uncompressed_rle", **params)
        t0 = time.perf_counter()
        anns = gen.generate(img)
        secs = time.perf_counter() - t0
        masks = []
        for a in anns:
            rle = a["segmentation"]
            h, w = rle["size"]
            coco = mask_utils.frPyObjects(rle, h, w)
            masks.append(
                {
                    "counts": [int(c) for c in rle["counts"]],
                    "coco_counts": coco["counts"].decode("utf-8"),
                    "area": int(a["area"]),
                    "bbox": [float(v) for v in a["bbox"]],
                    "predicted_iou": float(a["predicted_iou"]),
                    "stability_score": float(a["stability_score"]),
                    "point_coords": [[float(v) for v in p] for p in a["point_coords"]],
                    "crop_box": [float(v) for v in a["crop_box"]],
                }
            )
        ref["cases"][name] = {"params": params, "seconds": round(secs, 1), "masks": masks}
        print(f"{name}: {len(masks)} masks in {secs:.1f} s", flush=True)

    Path(args.out).write_text(json.dumps(ref, separators=(",", ":")))
    print(f"wrote {args.out} ({Path(args.out).stat().st_size} bytes)")


if __name__ == "__main__":
    main()
