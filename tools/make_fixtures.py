#!/usr/bin/env python3
"""Produce the parity fixtures for the Rust port from the OFFICIAL PyTorch code.

Official code used (PyPI): segment-anything==1.0 (module `segment_anything`) and
mobilesam-mirror==1.0.0 (module `mobile_sam`, needs timm). Nothing in the model
math is re-implemented here: every reference tensor comes out of the official
modules / SamPredictor.

Writes to tests/fixtures/ (all tensors float32):
  sam_vit_tiny.pth / .json / _ref.safetensors / _keys.txt     (a, b, c)
  rgb_100x75.png                                              (c)
  mobilesam_tiny.pth / .json / _ref.safetensors / _keys.txt   (d)
  mobile_sam_keys.txt                                         (keys of the real checkpoint)
  nuclei_rgb.png, mobilesam_nuclei_ref.safetensors,
  mobilesam_nuclei_eval.json                                  (e; needs tools/fetch_assets.sh first)
and the large real-model reference to $SEGADAPT_CACHE/ref/mobilesam_nuclei_full.safetensors.

Usage:
  bash tools/fetch_assets.sh            # real checkpoint + nuclei data (for part e)
  python3 tools/make_fixtures.py        # all parts
  python3 tools/make_fixtures.py --only sam,mobilesam   # tiny random-weight models only
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from functools import partial
from pathlib import Path

warnings.filterwarnings("ignore")

import numpy as np
import torch
import torch.nn as nn
from PIL import Image
from safetensors.torch import save_file

import segment_anything
from segment_anything import SamPredictor as SamPredictorSA
from segment_anything.modeling import (
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
)
from segment_anything.modeling.common import LayerNorm2d as SamLayerNorm2d

import mobile_sam
from mobile_sam import SamPredictor as SamPredictorMS
from mobile_sam import sam_model_registry as ms_registry
from mobile_sam.modeling import Sam as MSSam
from mobile_sam.modeling import MaskDecoder as MSMaskDecoder
from mobile_sam.modeling import PromptEncoder as MSPromptEncoder
from mobile_sam.modeling import TwoWayTransformer as MSTwoWayTransformer
from mobile_sam.modeling.tiny_vit_sam import TinyViT
from mobile_sam.modeling.tiny_vit_sam import LayerNorm2d as TvLayerNorm2d

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures"
CACHE = Path(os.environ.get("SEGADAPT_CACHE", Path.home() / ".cache" / "segadapt"))

PIXEL_MEAN = [123.675, 116.28, 103.53]
PIXEL_STD = [58.395, 57.12, 57.375]

torch.set_grad_enabled(False)


# ----------------------------------------------------------------------------- helpers
def f32(t) -> torch.Tensor:
    if isinstance(t, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(t))
    return t.detach().to(torch.float32).contiguous().clone()


def save_st(tensors: dict, path: Path, meta: dict | None = None):
    tensors = {k: f32(v) for k, v in tensors.items()}
    # one metadata entry only: safetensors keeps metadata in a hash map, so several keys would be
    # written in a random order and the file bytes would differ between identical runs
    info = json.dumps({k: str(v) for k, v in (meta or {}).items()}, sort_keys=True)
    save_file(tensors, str(path), metadata={"fixture_info": info})
    print(f"  wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} "
          f"({len(tensors)} tensors, {path.stat().st_size / 1e6:.2f} MB)")
    return tensors


def write_keys(state_dict: dict, path: Path, extra_header: str = ""):
    lines = []
    if extra_header:
        lines += ["# " + l for l in extra_header.splitlines()]
    lines.append(f"# {len(state_dict)} entries: key<TAB>shape<TAB>dtype")
    for k, v in state_dict.items():
        lines.append(f"{k}\t{list(v.shape)}\t{str(v.dtype).replace('torch.', '')}")
    path.write_text("\n".join(lines) + "\n")
    print(f"  wrote {path.relative_to(ROOT)} ({len(state_dict)} keys)")


def randomize_(model: nn.Module, gen: torch.Generator):
    """Make every parameter non-trivial (deterministically).

    * LayerNorm / LayerNorm2d / BatchNorm weight  -> 1 + N(0, 0.1)   (kept around 1)
    * their biases                                -> N(0, 0.1)
    * pos_embed                                   -> N(0, 0.1)
    * rel_pos_h / rel_pos_w                       -> N(0, 0.2)
    * attention_biases (TinyViT)                  -> N(0, 0.2)
    * Linear / Conv2d / ConvTranspose2d weights   -> N(0, 2 / fan_in) (He normal; keeps the
      activations, and so the mask logits, of order 1 instead of shrinking layer by layer)
    * everything else (biases, nn.Embedding tokens, PE matrix buffer untouched):
      official init + N(0, 0.02) (so zero-initialised biases are non-zero)
    * BatchNorm running_mean -> N(0, 0.1), running_var -> U(0.5, 2.0) (BN is not identity)
    """
    norm_types = (nn.LayerNorm, nn.BatchNorm2d, SamLayerNorm2d, TvLayerNorm2d)
    handled = set()
    for mname, m in model.named_modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            w = m.weight
            if isinstance(m, nn.ConvTranspose2d):   # weight: (in, out/groups, kh, kw)
                fan_in = w.shape[0] * w.shape[2] * w.shape[3] // (m.stride[0] * m.stride[1])
            else:                                   # weight: (out, in/groups, ...)
                fan_in = w[0].numel()
            w.copy_(torch.randn(w.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
            handled.add(id(w))
        if isinstance(m, norm_types):
            m.weight.copy_(1.0 + 0.1 * torch.randn(m.weight.shape, generator=gen))
            m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))
            handled.add(id(m.weight))
            handled.add(id(m.bias))
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=gen))
                m.running_var.copy_(0.5 + 1.5 * torch.rand(m.running_var.shape, generator=gen))
    for name, p in model.named_parameters():
        if id(p) in handled:
            continue
        leaf = name.split(".")[-1]
        if leaf == "pos_embed":
            p.copy_(0.1 * torch.randn(p.shape, generator=gen))
        elif leaf in ("rel_pos_h", "rel_pos_w", "attention_biases"):
            p.copy_(0.2 * torch.randn(p.shape, generator=gen))
        else:
            p.add_(0.02 * torch.randn(p.shape, generator=gen))


def capture(modules: dict):
    """Register forward hooks; returns (store, remove_fn)."""
    store, handles = {}, []
    for name, mod in modules.items():
        def hook(_m, _inp, out, name=name):
            store[name] = out.detach().clone()
        handles.append(mod.register_forward_hook(hook))
    return store, lambda: [h.remove() for h in handles]


def tiny_prompt_cases(gen: torch.Generator, mask_hw: int):
    """Prompt cases in the 128-px model-input frame (what SamPredictor feeds after apply_coords)."""
    mask_input = 2.0 * torch.randn((1, 1, mask_hw, mask_hw), generator=gen)
    return {
        "pts": dict(coords=torch.tensor([[[40.5, 30.0], [90.0, 100.25]]]),
                    labels=torch.tensor([[1, 0]]), box=None, mask=None),
        "box": dict(coords=None, labels=None,
                    box=torch.tensor([[20.0, 30.0, 100.0, 90.0]]), mask=None),
        "boxpts": dict(coords=torch.tensor([[[40.0, 60.0]]]), labels=torch.tensor([[1]]),
                       box=torch.tensor([[10.0, 15.0, 70.0, 110.0]]), mask=None),
        "mask": dict(coords=torch.tensor([[[64.0, 64.0]]]), labels=torch.tensor([[1]]),
                     box=None, mask=mask_input),
    }


def run_prompt_cases(sam, cases: dict, image_embedding: torch.Tensor, out: dict):
    out["dense_pe"] = sam.prompt_encoder.get_dense_pe()
    for case, c in cases.items():
        points = (c["coords"], c["labels"]) if c["coords"] is not None else None
        sparse, dense = sam.prompt_encoder(points=points, boxes=c["box"], masks=c["mask"])
        out[f"sparse_{case}"] = sparse
        out[f"dense_{case}"] = dense
        if c["coords"] is not None:
            out[f"coords_{case}"] = c["coords"]
            out[f"labels_{case}"] = c["labels"]
        if c["box"] is not None:
            out[f"box_{case}"] = c["box"]
        if c["mask"] is not None:
            out["mask_input"] = c["mask"]
        for multi, tag in ((True, "multi"), (False, "single")):
            low, iou = sam.mask_decoder(
                image_embeddings=image_embedding,
                image_pe=sam.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=multi,
            )
            out[f"low_res_{case}_{tag}"] = low
            out[f"iou_{case}_{tag}"] = iou


def decoder_config(dim, mlp_dim, heads, iou_hidden):
    return {
        "transformer_dim": dim, "num_multimask_outputs": 3, "iou_head_depth": 3,
        "iou_head_hidden_dim": iou_hidden,
        "transformer": {"depth": 2, "embedding_dim": dim, "mlp_dim": mlp_dim, "num_heads": heads,
                        "attention_downsample_rate": 2, "mlp_activation": "relu",
                        "layernorm_eps": 1e-5},
        "upscaling_activation": "gelu(erf)", "layernorm2d_eps": 1e-6,
        "hypernetwork_mlp": [dim, dim, dim // 8, 3],
    }


# ----------------------------------------------------------------------------- (a)(b)(c) tiny SAM
SAM_TINY = dict(
    img_size=128, patch_size=16, in_chans=3, embed_dim=32, depth=4, num_heads=2, mlp_ratio=4.0,
    out_chans=32, qkv_bias=True, use_abs_pos=True, use_rel_pos=True, rel_pos_zero_init=True,
    window_size=3, global_attn_indexes=[1, 3],
)


def build_tiny_sam() -> Sam:
    c = SAM_TINY
    emb = c["img_size"] // c["patch_size"]
    sam = Sam(
        image_encoder=ImageEncoderViT(
            img_size=c["img_size"], patch_size=c["patch_size"], in_chans=c["in_chans"],
            embed_dim=c["embed_dim"], depth=c["depth"], num_heads=c["num_heads"],
            mlp_ratio=c["mlp_ratio"], out_chans=c["out_chans"], qkv_bias=c["qkv_bias"],
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), use_abs_pos=c["use_abs_pos"],
            use_rel_pos=c["use_rel_pos"], rel_pos_zero_init=c["rel_pos_zero_init"],
            window_size=c["window_size"], global_attn_indexes=tuple(c["global_attn_indexes"]),
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=c["out_chans"], image_embedding_size=(emb, emb),
            input_image_size=(c["img_size"], c["img_size"]), mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=32, mlp_dim=64, num_heads=2),
            transformer_dim=32, iou_head_depth=3, iou_head_hidden_dim=32,
        ),
        pixel_mean=PIXEL_MEAN, pixel_std=PIXEL_STD,
    )
    return sam


def make_tiny_sam():
    print("[a/b/c] tiny SAM ViT (official segment_anything classes, random weights)")
    torch.manual_seed(0)
    sam = build_tiny_sam()
    gen = torch.Generator().manual_seed(1)
    randomize_(sam, gen)
    sam.eval()

    pth = FIX / "sam_vit_tiny.pth"
    torch.save(sam.state_dict(), pth)
    # reload through the same path a user would take and use the reloaded model
    sam = build_tiny_sam()
    sam.load_state_dict(torch.load(pth, map_location="cpu"))
    sam.eval()
    print(f"  wrote {pth.relative_to(ROOT)} ({pth.stat().st_size / 1e6:.2f} MB)")
    write_keys(sam.state_dict(), FIX / "sam_vit_tiny_keys.txt",
               "official segment_anything Sam (tiny config), torch.save(sam.state_dict())\n"
               "not in state_dict (persistent=False buffers): pixel_mean, pixel_std")

    emb = SAM_TINY["img_size"] // SAM_TINY["patch_size"]
    cfg = {
        "model": "sam_vit",
        "official_code": f"segment-anything=={getattr(segment_anything, '__version__', '1.0')}",
        "torch_version": torch.__version__,
        "image_encoder": dict(SAM_TINY, norm_layer="LayerNorm(eps=1e-6)", act_layer="GELU (exact erf)",
                              neck_layernorm2d_eps=1e-6),
        "prompt_encoder": {"embed_dim": 32, "image_embedding_size": [emb, emb],
                           "input_image_size": [128, 128], "mask_in_chans": 16,
                           "mask_input_size": [4 * emb, 4 * emb], "activation": "gelu(erf)",
                           "pe_num_pos_feats": 16, "pe_scale": 1.0},
        "mask_decoder": decoder_config(32, 64, 2, 32),
        "pixel_mean": PIXEL_MEAN, "pixel_std": PIXEL_STD, "mask_threshold": 0.0,
        "seeds": {"torch.manual_seed (construction)": 0, "randomize generator": 1,
                  "reference inputs generator": 2, "rgb image numpy default_rng": 3},
        "randomization": randomize_.__doc__.strip(),
        "state_dict_not_included": ["pixel_mean", "pixel_std (Sam buffers, persistent=False)"],
    }
    (FIX / "sam_vit_tiny.json").write_text(json.dumps(cfg, indent=2) + "\n")
    print("  wrote tests/fixtures/sam_vit_tiny.json")

    # (b) reference outputs
    gen = torch.Generator().manual_seed(2)
    x = torch.randn((1, 3, 128, 128), generator=gen)
    enc = sam.image_encoder
    mods = {"patch_embed": enc.patch_embed, "neck_0": enc.neck[0], "neck_1": enc.neck[1],
            "neck_2": enc.neck[2]}
    mods.update({f"block_{i}": b for i, b in enumerate(enc.blocks)})
    store, remove = capture(mods)
    image_embedding = enc(x)
    remove()
    out = {"input": x}
    out["patch_embed"] = store["patch_embed"]                      # B,H,W,C (before pos_embed)
    out["patch_embed_pos"] = store["patch_embed"] + enc.pos_embed   # after + pos_embed
    for i in range(len(enc.blocks)):
        out[f"block_{i}"] = store[f"block_{i}"]                     # B,H,W,C
    for k in ("neck_0", "neck_1", "neck_2"):
        out[k] = store[k]                                           # B,C,H,W
    out["image_embedding"] = image_embedding
    cases = tiny_prompt_cases(gen, 4 * emb)
    run_prompt_cases(sam, cases, image_embedding, out)

    # (c) the full SamPredictor path on a small non-square RGB image
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, size=(75, 100, 3), dtype=np.uint8)   # H=75, W=100
    png = FIX / "rgb_100x75.png"
    Image.fromarray(rgb, "RGB").save(png)
    rgb = np.array(Image.open(png).convert("RGB"))
    pred = SamPredictorSA(sam)
    resized = pred.transform.apply_image(rgb)                      # PIL bilinear via torchvision
    pred.set_image(rgb)
    pred_input = sam.preprocess(torch.as_tensor(resized).permute(2, 0, 1)[None].float())
    assert torch.equal(pred.features, sam.image_encoder(pred_input))
    box = np.array([10, 8, 80, 60], dtype=np.float32)                 # original pixel coords x0,y0,x1,y1
    masks, iou, low = pred.predict(box=box, multimask_output=True, return_logits=True)
    out.update({
        "pred_resized": torch.from_numpy(resized.astype(np.float32)),  # H,W,3 (96,128,3) uint8 values
        "pred_input": pred_input,                                      # 1,3,128,128 normalised+padded
        "pred_image_embedding": pred.features,
        "pred_box": torch.from_numpy(box)[None],
        "pred_box_transformed": torch.from_numpy(pred.transform.apply_boxes(box, pred.original_size)),
        "pred_masks_logits": torch.from_numpy(masks),                  # 3,75,100 (before > 0)
        "pred_iou": torch.from_numpy(iou),
        "pred_low_res": torch.from_numpy(low),                         # 3,32,32
    })
    print("  wrote tests/fixtures/rgb_100x75.png")
    save_st(out, FIX / "sam_vit_tiny_ref.safetensors", {
        "layouts": "patch_embed/patch_embed_pos/block_i: B,H,W,C; neck_i, image_embedding, dense_*: B,C,H,W; "
                   "sparse_*: B,N,C; low_res_*: B,M,4h,4w; pred_resized: H,W,3",
        "original_size_hw": "75,100", "input_size_hw": str(tuple(pred.input_size)),
    })


# ----------------------------------------------------------------------------- (d) tiny MobileSAM
MS_TINY = dict(
    img_size=128, in_chans=3, embed_dims=[16, 32, 48, 320], depths=[1, 1, 2, 1],
    num_heads=[1, 2, 3, 5], window_sizes=[2, 5, 3, 4], mlp_ratio=2.0, drop_rate=0.0,
    drop_path_rate=0.0, mbconv_expand_ratio=4.0, local_conv_size=3, layer_lr_decay=0.8,
    num_classes=10,  # unused classifier (norm_head/head) kept small; the real checkpoint has 1000
)
MS_TINY_NECK = 32


class TinyViTGrid(TinyViT):
    """Official TinyViT; only forward_features' hard-coded `x.view(B, 64, 64, C)` is made
    `x.view(B, h, w, C)` with h = w = img_size // 16 (== 64 for the real 1024-px model)."""

    def forward_features(self, x):
        x = self.patch_embed(x)
        x = self.layers[0](x)
        for i in range(1, len(self.layers)):
            x = self.layers[i](x)
        B, _, C = x.size()
        g = self.img_size // 16
        x = x.view(B, g, g, C)
        x = x.permute(0, 3, 1, 2)
        x = self.neck(x)
        return x


def build_tiny_mobilesam() -> MSSam:
    c = MS_TINY
    enc = TinyViTGrid(**c)
    # the official neck hard-codes 256 channels; same structure, MS_TINY_NECK channels
    enc.neck = nn.Sequential(
        nn.Conv2d(c["embed_dims"][-1], MS_TINY_NECK, kernel_size=1, bias=False),
        TvLayerNorm2d(MS_TINY_NECK),
        nn.Conv2d(MS_TINY_NECK, MS_TINY_NECK, kernel_size=3, padding=1, bias=False),
        TvLayerNorm2d(MS_TINY_NECK),
    )
    emb = c["img_size"] // 16
    sam = MSSam(
        image_encoder=enc,
        prompt_encoder=MSPromptEncoder(
            embed_dim=MS_TINY_NECK, image_embedding_size=(emb, emb),
            input_image_size=(c["img_size"], c["img_size"]), mask_in_chans=16,
        ),
        mask_decoder=MSMaskDecoder(
            num_multimask_outputs=3,
            transformer=MSTwoWayTransformer(depth=2, embedding_dim=MS_TINY_NECK, mlp_dim=64, num_heads=2),
            transformer_dim=MS_TINY_NECK, iou_head_depth=3, iou_head_hidden_dim=32,
        ),
        pixel_mean=PIXEL_MEAN, pixel_std=PIXEL_STD,
    )
    return sam


def make_tiny_mobilesam():
    print("[d] tiny MobileSAM (official mobile_sam TinyViT classes, random weights)")
    torch.manual_seed(0)
    sam = build_tiny_mobilesam()
    gen = torch.Generator().manual_seed(1)
    randomize_(sam, gen)
    sam.eval()   # NB: TinyViT Attention caches `ab` = attention_biases[:, idxs] in .eval()/.train(False)

    pth = FIX / "mobilesam_tiny.pth"
    torch.save(sam.state_dict(), pth)
    sam = build_tiny_mobilesam()
    sam.eval()
    sam.load_state_dict(torch.load(pth, map_location="cpu"))
    sam.eval()   # recompute the cached `ab` from the loaded attention_biases (see quirks)
    print(f"  wrote {pth.relative_to(ROOT)} ({pth.stat().st_size / 1e6:.2f} MB)")
    sd = sam.state_dict()
    write_keys(sd, FIX / "mobilesam_tiny_keys.txt",
               "official mobile_sam Sam + TinyViT (tiny config), torch.save(sam.state_dict())\n"
               "not in state_dict (persistent=False buffers): pixel_mean, pixel_std, "
               "*.attn.attention_bias_idxs, *.attn.ab")

    enc = sam.image_encoder
    bias_idx = {}
    for name, m in enc.named_modules():
        if hasattr(m, "attention_bias_idxs"):
            bias_idx[name] = {"num_offsets": int(m.attention_biases.shape[1]),
                              "idxs_shape": list(m.attention_bias_idxs.shape)}
    res = [tuple(l.input_resolution) for l in enc.layers]
    cfg = {
        "model": "mobilesam_tinyvit",
        "official_code": "mobilesam-mirror==1.0.0 (mobile_sam.modeling.tiny_vit_sam.TinyViT)",
        "torch_version": torch.__version__,
        "image_encoder": dict(MS_TINY, neck_out_chans=MS_TINY_NECK,
                              layer_input_resolutions=[list(r) for r in res],
                              patch_merging_stride={f"layers.{i}.downsample": (
                                  1 if MS_TINY["embed_dims"][i + 1] in (320, 448, 576) else 2)
                                  for i in range(3)},
                              final_grid=[128 // 16, 128 // 16],
                              activation="GELU (exact erf) everywhere in TinyViT",
                              batchnorm_eps=1e-5, layernorm_eps=1e-5, neck_layernorm2d_eps=1e-6),
        "deviations_from_official_class": [
            "neck has 32 channels instead of the hard-coded 256 (same layers: Conv1x1(no bias), "
            "LayerNorm2d(eps 1e-6), Conv3x3 pad 1 (no bias), LayerNorm2d)",
            "forward_features reshapes tokens to (B, img_size//16, img_size//16, C) instead of the "
            "hard-coded (B, 64, 64, C)",
        ],
        "prompt_encoder": {"embed_dim": MS_TINY_NECK, "image_embedding_size": [8, 8],
                           "input_image_size": [128, 128], "mask_in_chans": 16,
                           "mask_input_size": [32, 32]},
        "mask_decoder": decoder_config(MS_TINY_NECK, 64, 2, 32),
        "pixel_mean": PIXEL_MEAN, "pixel_std": PIXEL_STD, "mask_threshold": 0.0,
        "seeds": {"torch.manual_seed (construction)": 0, "randomize generator": 1,
                  "reference inputs generator": 2},
        "randomization": randomize_.__doc__.strip(),
        "state_dict": {
            "n_keys": len(sd),
            "includes": ["*.bn.running_mean", "*.bn.running_var", "*.bn.num_batches_tracked (int64)",
                         "*.attn.attention_biases (num_heads, num_offsets)",
                         "image_encoder.norm_head.* and image_encoder.head.* (unused classifier)",
                         "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"],
            "excluded_buffers": ["pixel_mean", "pixel_std",
                                 "*.attn.attention_bias_idxs (int64, (ws*ws, ws*ws); rebuild from window size)",
                                 "*.attn.ab (eval-mode cache of attention_biases[:, attention_bias_idxs])"],
            "attention_bias_modules": bias_idx,
        },
    }
    (FIX / "mobilesam_tiny.json").write_text(json.dumps(cfg, indent=2) + "\n")
    print("  wrote tests/fixtures/mobilesam_tiny.json")

    gen = torch.Generator().manual_seed(2)
    x = torch.randn((1, 3, 128, 128), generator=gen)
    mods = {"patch_embed": enc.patch_embed, "neck_in_perm": enc.neck[0]}
    for i, layer in enumerate(enc.layers):
        mods[f"layer_{i}"] = layer
        for j, blk in enumerate(layer.blocks):
            mods[f"layer_{i}_block_{j}"] = blk
        if layer.downsample is not None:
            mods[f"layer_{i}_downsample"] = layer.downsample
    store, remove = capture(mods)
    image_embedding = sam.image_encoder(x)
    remove()
    out = {"input": x}
    for k, v in store.items():
        if k != "neck_in_perm" and not k.endswith("_downsample"):
            out[k] = v
    out["image_embedding"] = image_embedding
    cases = tiny_prompt_cases(gen, 32)
    run_prompt_cases(sam, cases, image_embedding, out)
    save_st(out, FIX / "mobilesam_tiny_ref.safetensors", {
        "layouts": "patch_embed, layer_0_block_j: B,C,H,W; layer_0 (after PatchMerging), "
                   "layer_i_block_j (i>=1), layer_i: B,L,C tokens (row-major h*W+w); "
                   "image_embedding: B,C,H,W",
        "layer_resolutions": str([list(r) for r in res]),
    })


# ----------------------------------------------------------------------------- (e) real MobileSAM
def nuclei_to_rgb(img16: np.ndarray) -> np.ndarray:
    x = img16.astype(np.float64)
    lo, hi = np.percentile(x, [0.5, 99.5])
    x = (x - lo) / (hi - lo) * 255.0
    x = np.clip(x, 0.0, 255.0)
    x = np.round(x).astype(np.uint8)       # numpy round = half to even
    return np.stack([x, x, x], axis=-1)


def iou_dice(pred: np.ndarray, gt: np.ndarray):
    inter = np.logical_and(pred, gt).sum()
    union = np.logical_or(pred, gt).sum()
    s = pred.sum() + gt.sum()
    return float(inter / union) if union else 1.0, float(2 * inter / s) if s else 1.0


def make_real_mobilesam(threads: int):
    import tifffile
    from scipy.ndimage import distance_transform_edt

    print("[e] real MobileSAM checkpoint on the nuclei image")
    ckpt = CACHE / "models" / "mobile_sam.pt"
    img_p, mask_p = CACHE / "data" / "nuclei" / "img2d.tif", CACHE / "data" / "nuclei" / "mask2d.tif"
    for p in (ckpt, img_p, mask_p):
        if not p.exists():
            sys.exit(f"missing {p}: run tools/fetch_assets.sh first (or use --only sam,mobilesam)")
    torch.set_num_threads(threads)

    img16 = tifffile.imread(img_p)
    gt = tifffile.imread(mask_p)
    rgb = nuclei_to_rgb(img16)
    png = FIX / "nuclei_rgb.png"
    Image.fromarray(rgb, "RGB").save(png, optimize=True)
    assert np.array_equal(np.array(Image.open(png).convert("RGB")), rgb)
    print(f"  wrote tests/fixtures/nuclei_rgb.png ({png.stat().st_size / 1e6:.2f} MB)")

    sd = torch.load(ckpt, map_location="cpu")
    write_keys(sd, FIX / "mobile_sam_keys.txt",
               "real MobileSAM checkpoint mobile_sam.pt (sha256 6dbb9052...6c2f), plain state_dict")

    model = ms_registry["vit_t"](checkpoint=str(ckpt))
    # build_sam_vit_t calls .eval() BEFORE load_state_dict, so the TinyViT attention-bias
    # cache `ab` still holds the zero init; the official README calls .eval() again.
    stale_ab = model.image_encoder.layers[1].blocks[0].attn.ab.abs().max().item()
    model.eval()
    pred = SamPredictorMS(model)

    # --- timings (official code, torch.set_num_threads(threads))
    resized = pred.transform.apply_image(rgb)
    x_in = model.preprocess(torch.as_tensor(resized).permute(2, 0, 1)[None].float())

    def bench(fn, n=3):
        fn()
        ts = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            ts.append((time.perf_counter() - t0) * 1e3)
        return float(np.mean(ts)), [round(t, 2) for t in ts]

    enc_ms, enc_runs = bench(lambda: model.image_encoder(x_in))
    set_ms, set_runs = bench(lambda: pred.set_image(rgb))

    # --- per-stage outputs (large; cache only)
    enc = model.image_encoder
    mods = {"patch_embed": enc.patch_embed}
    mods.update({f"layer_{i}": l for i, l in enumerate(enc.layers)})
    store, remove = capture(mods)
    image_embedding = enc(x_in)
    remove()
    pred.set_image(rgb)
    assert torch.allclose(pred.features, image_embedding)

    # --- objects, boxes, points
    ids = [int(k) for k in np.unique(gt) if k != 0]
    objs = []
    for k in ids:
        m = gt == k
        area = int(m.sum())
        ys, xs = np.nonzero(m)
        box = [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())]
        dt = distance_transform_edt(m)
        r, c = np.unravel_index(int(np.argmax(dt)), dt.shape)
        objs.append(dict(id=k, area=area, box=box, point=[int(c), int(r)], mask=m))
    evald = [o for o in objs if o["area"] >= 60]

    box_t = np.array(evald[0]["box"], dtype=np.float32)
    pr_ms, pr_runs = bench(lambda: pred.predict(box=box_t, multimask_output=False))

    # --- 3 box prompts (small / median / large object) + 1 point prompt
    by_area = sorted(evald, key=lambda o: (o["area"], o["id"]))
    picks = {"a": by_area[len(by_area) // 10], "b": by_area[len(by_area) // 2],
             "c": by_area[(9 * len(by_area)) // 10]}
    small, full = {"image_embedding": image_embedding}, {}
    prompts = {}
    for tag, o in picks.items():
        b = np.array(o["box"], dtype=np.float32)
        masks, iou, low = pred.predict(box=b, multimask_output=False, return_logits=True)
        small[f"box_{tag}"] = torch.from_numpy(b)[None]
        small[f"low_res_box_{tag}"] = torch.from_numpy(low)[None]
        small[f"iou_box_{tag}"] = torch.from_numpy(iou)[None]
        full[f"masks_logits_box_{tag}"] = torch.from_numpy(masks)[None]
        prompts[f"box_{tag}"] = {"object_id": o["id"], "area": o["area"], "box_xyxy": o["box"],
                                 "multimask_output": False}
    o = picks["b"]
    pc = np.array([o["point"]], dtype=np.float32)
    pl = np.array([1], dtype=np.int64)
    masks, iou, low = pred.predict(point_coords=pc, point_labels=pl, multimask_output=True,
                                   return_logits=True)
    small["point_coords_p"] = torch.from_numpy(pc)[None]
    small["point_labels_p"] = torch.from_numpy(pl.astype(np.float32))[None]
    small["low_res_point_p"] = torch.from_numpy(low)[None]
    small["iou_point_p"] = torch.from_numpy(iou)[None]
    full["masks_logits_point_p"] = torch.from_numpy(masks)[None]
    prompts["point_p"] = {"object_id": o["id"], "point_xy": o["point"], "label": 1,
                          "multimask_output": True}
    meta = {"original_size_hw": "512,512", "input_size_hw": str(tuple(pred.input_size)),
            "prompts": json.dumps(prompts),
            "layouts": "image_embedding: 1,256,64,64; low_res_*: 1,M,256,256; box_*: 1,4 xyxy; "
                       "point_coords_p: 1,N,2 xy; all prompts in ORIGINAL 512x512 pixel coords"}
    save_st(small, FIX / "mobilesam_nuclei_ref.safetensors", meta)
    (CACHE / "ref").mkdir(parents=True, exist_ok=True)
    full.update(small)
    full["input"] = x_in
    full["resized_rgb"] = torch.from_numpy(resized.astype(np.float32))
    full.update(store)
    save_st(full, CACHE / "ref" / "mobilesam_nuclei_full.safetensors",
            dict(meta, layouts=meta["layouts"] + "; patch_embed, layer_0.. as the tiny ref"))

    # --- eval protocol
    def run_eval(predictor):
        per = []
        for o in evald:
            b = np.array(o["box"], dtype=np.float32)
            mb, sb, _ = predictor.predict(box=b, multimask_output=False)
            ib, db = iou_dice(mb[0], o["mask"])
            pc = np.array([o["point"]], dtype=np.float32)
            mp, sp, _ = predictor.predict(point_coords=pc, point_labels=np.array([1]),
                                          multimask_output=True)
            best = int(np.argmax(sp))
            ip, dp = iou_dice(mp[best], o["mask"])
            per.append(dict(id=o["id"], area=o["area"], box=o["box"], point=o["point"],
                            box_iou=round(ib, 6), box_dice=round(db, 6), box_score=round(float(sb[0]), 6),
                            point_iou=round(ip, 6), point_dice=round(dp, 6), point_best=best,
                            point_score=round(float(sp[best]), 6)))
        return per

    per = run_eval(pred)
    summary = lambda key: {"mean_iou": float(np.mean([p[f"{key}_iou"] for p in per])),
                           "mean_dice": float(np.mean([p[f"{key}_dice"] for p in per])),
                           "n_objects": len(per)}
    result = {
        "box": summary("box"),
        "point": summary("point"),
        "timing_ms": {
            "torch_num_threads": threads,
            "encoder_mean": round(enc_ms, 2), "encoder_runs": enc_runs,
            "set_image_mean": round(set_ms, 2), "set_image_runs": set_runs,
            "predict_box_mean": round(pr_ms, 2), "predict_box_runs": pr_runs,
            "note": "mean of 3 runs after 1 warm-up; encoder = image_encoder on 1x3x1024x1024; "
                    "set_image = resize+preprocess+encoder; predict_box = SamPredictor.predict(box, "
                    "multimask_output=False) incl. postprocess to 512x512 and thresholding",
            "cpu": _cpu_name(), "torch_version": torch.__version__,
        },
        "protocol": {
            "image": "img2d.tif uint16 -> float64, np.percentile 0.5/99.5 (linear), (x-lo)/(hi-lo)*255, "
                     "clip [0,255], np.round (half-to-even) -> uint8, replicate to RGB (= nuclei_rgb.png)",
            "objects": "every label k>0 of mask2d.tif with area >= 60 px",
            "box": "tight box [xmin, ymin, xmax, ymax] of the object's pixels (inclusive, integer, "
                   "original 512x512 coords), SamPredictor.predict(box, multimask_output=False), "
                   "mask = logits > 0 at original size",
            "point": "one positive point (x=col, y=row) at np.argmax (first in row-major order) of "
                     "scipy.ndimage.distance_transform_edt(mask==k); multimask_output=True; "
                     "keep the mask with the highest predicted IoU",
            "metrics": "per-object IoU = |P&G|/|P|G|, Dice = 2|P&G|/(|P|+|G|); mean over objects",
            "model": "mobile_sam.sam_model_registry['vit_t'](checkpoint) then .eval() again (official README)",
        },
        "n_labels_total": len(ids),
        "excluded_small_objects": [{"id": o["id"], "area": o["area"]} for o in objs if o["area"] < 60],
        "per_object": per,
    }

    # quirk: stale (zero) attention-bias cache if .eval() is not called after loading
    stale_model = ms_registry["vit_t"](checkpoint=str(ckpt))
    sp_ = SamPredictorMS(stale_model)
    sp_.set_image(rgb)
    per_stale = run_eval(sp_)
    result["quirk_stale_attention_bias_cache"] = {
        "explanation": "build_sam_vit_t() calls .eval() before load_state_dict(), so TinyViT's cached "
                       "`ab` buffers hold the zero-initialised attention_biases until .eval()/.train(False) "
                       "is called again. Results of that (wrong) model for reference:",
        "ab_max_abs_before_reeval": stale_ab,
        "box_mean_iou": float(np.mean([p["box_iou"] for p in per_stale])),
        "point_mean_iou": float(np.mean([p["point_iou"] for p in per_stale])),
    }
    (FIX / "mobilesam_nuclei_eval.json").write_text(json.dumps(result, indent=1) + "\n")
    print("  wrote tests/fixtures/mobilesam_nuclei_eval.json")
    print(f"  box:   mean IoU {result['box']['mean_iou']:.4f}  mean Dice {result['box']['mean_dice']:.4f}"
          f"  n={result['box']['n_objects']}")
    print(f"  point: mean IoU {result['point']['mean_iou']:.4f}  mean Dice {result['point']['mean_dice']:.4f}")
    print(f"  timing ms (threads={threads}): encoder {enc_ms:.1f}, set_image {set_ms:.1f}, "
          f"predict(box) {pr_ms:.1f}")
    print(f"  stale-ab model: box mean IoU {result['quirk_stale_attention_bias_cache']['box_mean_iou']:.4f}")


def _cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="sam,mobilesam,real",
                    help="comma list of: sam (a,b,c), mobilesam (d), real (e)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads for the real-model timing")
    args = ap.parse_args()
    FIX.mkdir(parents=True, exist_ok=True)
    parts = set(args.only.split(","))
    if "sam" in parts:
        make_tiny_sam()
    if "mobilesam" in parts:
        make_tiny_mobilesam()
    if "real" in parts:
        make_real_mobilesam(args.threads)
    total = sum(p.stat().st_size for p in FIX.iterdir() if p.is_file())
    print(f"tests/fixtures total: {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
