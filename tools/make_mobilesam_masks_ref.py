#!/usr/bin/env python3
"""Official MobileSAM outputs on the nuclei image for every prompt kind, with final masks.

Adds to what `make_fixtures.py` writes (boxes a/b/c, point p) a box+points case (object b's box,
its interior point as positive and a background point as negative) and, for every case, the
final masks at the original 512x512 size (logits > 0, as `SamPredictor.predict` returns them),
bit-packed with numpy.packbits (row-major, most significant bit first).

Writes tests/fixtures/mobilesam_nuclei_masks.safetensors (~0.5 MB). Needs what make_fixtures.py
needs (torch, mobilesam-mirror, tifffile, scipy) and tools/fetch_assets.sh's cache.
"""
import json
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from make_fixtures import CACHE, FIX, nuclei_to_rgb  # noqa: E402


def main():
    import tifffile
    from mobile_sam import SamPredictor, sam_model_registry

    torch.set_num_threads(2)
    ckpt = CACHE / "models" / "mobile_sam.pt"
    img16 = tifffile.imread(CACHE / "data" / "nuclei" / "img2d.tif")
    gt = tifffile.imread(CACHE / "data" / "nuclei" / "mask2d.tif")
    rgb = nuclei_to_rgb(img16)
    model = sam_model_registry["vit_t"](checkpoint=str(ckpt))
    model.eval()  # again after loading: see make_fixtures.py (TinyViT attention-bias cache)
    pred = SamPredictor(model)
    pred.set_image(rgb)

    ref = load_file(str(FIX / "mobilesam_nuclei_ref.safetensors"))
    out = {}

    def put(tag, masks, iou, low):
        out[f"masks_{tag}"] = np.packbits(masks.astype(np.uint8).reshape(masks.shape[0], -1), axis=1)
        out[f"iou_{tag}"] = iou.astype(np.float32)
        if f"low_res_{tag}" not in ref:  # the other cases' logits are in mobilesam_nuclei_ref
            out[f"low_res_{tag}"] = low.astype(np.float32)

    for tag in "abc":
        box = ref[f"box_{tag}"][0]
        masks, iou, low = pred.predict(box=box, multimask_output=False)
        put(f"box_{tag}", masks, iou, low)
    pc, pl = ref["point_coords_p"][0], ref["point_labels_p"][0].astype(np.int64)
    masks, iou, low = pred.predict(point_coords=pc, point_labels=pl, multimask_output=True)
    put("point_p", masks, iou, low)

    # Box + points: object b's box, its interior point (+), and a background pixel (-) inside
    # the box but outside the object, nearest the box corner.
    box = ref["box_b"][0]
    x0, y0, x1, y1 = (int(v) for v in box)
    obj = gt == gt[int(pc[0, 1]), int(pc[0, 0])]
    neg = next((x, y) for y in range(y0, y1 + 1) for x in range(x0, x1 + 1) if not obj[y, x])
    coords = np.array([pc[0], neg], dtype=np.float32)
    labels = np.array([1, 0], dtype=np.int64)
    masks, iou, low = pred.predict(point_coords=coords, point_labels=labels, box=box,
                                   multimask_output=False)
    put("boxpt_b", masks, iou, low)
    out["boxpt_b_box"] = box.astype(np.float32)
    out["boxpt_b_coords"] = coords
    out["boxpt_b_labels"] = labels.astype(np.float32)

    meta = {"fixture_info": json.dumps({
        "what": "official MobileSAM SamPredictor.predict outputs on tests/fixtures/nuclei_rgb.png",
        "masks": "bool (M, 512, 512) packed with np.packbits(axis=1) per mask, MSB first",
        "cases": "box_a/b/c (single mask), point_p (multimask), boxpt_b (box + 1 positive + 1 negative point)",
        "torch": torch.__version__,
    })}
    path = FIX / "mobilesam_nuclei_masks.safetensors"
    save_file(out, str(path), metadata=meta)
    print(f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
