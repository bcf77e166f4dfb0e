#!/usr/bin/env python3
"""Official MedSAM processing on the tiny random-weight SAM ViT, for tests/medsam_family.rs.

MedSAM is SAM ViT-B weights run with its own processing (`MedSAM_Inference.py` of
bowang-lab/MedSAM): `skimage.transform.resize(img, (1024, 1024), order=3, preserve_range=True,
anti_aliasing=True).astype(np.uint8)`, min-max to [0, 1] (no ImageNet normalisation), boxes
scaled by 1024 / (W, H), and masks as sigmoid(low-res logits) → bilinear to (H, W) → > 0.5.
The real weights are not needed to prove that path: this script runs the same steps, with 1024
replaced by the model's input size (128), on tests/fixtures/sam_vit_tiny.pth built by
make_fixtures.py with the official `segment_anything` classes. `medsam_inference` below is
the official function, returning the probabilities as well.

Writes tests/fixtures/medsam_tiny_ref.safetensors (~0.1 MB): per image case `<c>` (`rgb`:
rgb_100x75.png, enlarged; `crop`: nuclei_rgb.png[40:260, 100:400] with distinct channels,
shrunk with anti-aliasing): `<c>_resized` (uint8, 128 x 128 x 3), `<c>_box_k`, `<c>_low_k`
(32 x 32 low-res logits), `<c>_prob_k_s` (probabilities at the original size, every 4th pixel)
and `<c>_mask_k` (final mask, np.packbits).
"""
import json
import sys
from pathlib import Path

import numpy as np
import skimage
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.numpy import save_file
from skimage import transform

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from make_fixtures import FIX, build_tiny_sam  # noqa: E402


@torch.no_grad()
def medsam_inference(medsam_model, img_embed, box_1024, H, W):
    box_torch = torch.as_tensor(box_1024, dtype=torch.float, device=img_embed.device)
    if len(box_torch.shape) == 2:
        box_torch = box_torch[:, None, :]  # (B, 1, 4)
    sparse_embeddings, dense_embeddings = medsam_model.prompt_encoder(
        points=None, boxes=box_torch, masks=None)
    low_res_logits, _ = medsam_model.mask_decoder(
        image_embeddings=img_embed,
        image_pe=medsam_model.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse_embeddings,
        dense_prompt_embeddings=dense_embeddings,
        multimask_output=False)
    low_res_pred = torch.sigmoid(low_res_logits)
    low_res_pred = F.interpolate(low_res_pred, size=(H, W), mode="bilinear", align_corners=False)
    low_res_pred = low_res_pred.squeeze().cpu().numpy()
    medsam_seg = (low_res_pred > 0.5).astype(np.uint8)
    return medsam_seg, low_res_logits, low_res_pred  # (segadapt: logits, probabilities too)


def main():
    torch.set_num_threads(2)
    model = build_tiny_sam()
    model.load_state_dict(torch.load(FIX / "sam_vit_tiny.pth", map_location="cpu"))
    model.eval()
    S = model.image_encoder.img_size  # 1024 in MedSAM; 128 here

    nuc = np.array(Image.open(FIX / "nuclei_rgb.png").convert("RGB"))[..., 0]
    crop = np.ascontiguousarray(np.stack(
        [nuc, nuc[::-1, ::-1], nuc.T], axis=-1)[40:260, 100:400])
    cases = {
        "rgb": (np.array(Image.open(FIX / "rgb_100x75.png").convert("RGB")),
                [[10, 8, 60, 50], [40, 20, 95, 70]]),
        "crop": (crop, [[76, 174, 111, 199], [17, 12, 49, 34]]),
    }
    out = {}
    for name, (img_3c, boxes) in cases.items():
        H, W, _ = img_3c.shape
        # The official steps (MedSAM_Inference.py), 1024 -> S.
        img_1024 = transform.resize(
            img_3c, (S, S), order=3, preserve_range=True, anti_aliasing=True
        ).astype(np.uint8)
        out[f"{name}_resized"] = img_1024
        img_1024 = (img_1024 - img_1024.min()) / np.clip(
            img_1024.max() - img_1024.min(), a_min=1e-8, a_max=None)
        img_1024_tensor = torch.tensor(img_1024).float().permute(2, 0, 1).unsqueeze(0)
        with torch.no_grad():
            image_embedding = model.image_encoder(img_1024_tensor)
        for k, b in enumerate(boxes):
            box_np = np.array([b])
            box_1024 = box_np / np.array([W, H, W, H]) * S
            seg, low, prob = medsam_inference(model, image_embedding, box_1024, H, W)
            out[f"{name}_box_{k}"] = box_np[0].astype(np.float32)
            out[f"{name}_low_{k}"] = low[0, 0].numpy().astype(np.float32)
            out[f"{name}_prob_{k}_s"] = np.ascontiguousarray(prob[::4, ::4]).astype(np.float32)
            out[f"{name}_mask_{k}"] = np.packbits(seg.reshape(-1))
            print(f"{name} box {k}: {int(seg.sum())} of {H * W} px")
    meta = {"fixture_info": json.dumps({
        "what": "MedSAM_Inference.py steps (1024 -> 128) on the tiny random-weight SAM ViT",
        "torch": torch.__version__, "skimage": skimage.__version__,
    })}
    path = FIX / "medsam_tiny_ref.safetensors"
    save_file(out, str(path), metadata=meta)
    print(f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
