#!/usr/bin/env python3
"""Reference outputs of segadapt's merged export, computed by the OFFICIAL code.

segadapt writes a merged export of the tiny fixture models with deterministic, non-zero
adapters (tests/merged_export.rs, `write_exports_for_reference`: plain LoRA on every ViT
projection plus a changed decoder token; NAS-PC-LoRA cells discretised to identity on every
TinyViT projection). This script loads each file into the official modules
(segment-anything==1.0 / mobilesam-mirror==1.0.0, built exactly as tools/make_fixtures.py
built the tiny models) with `load_state_dict(strict=True)`, runs the image encoder and the
prompt encoder + mask decoder on one box, and writes tests/fixtures/merged_export_ref.safetensors:

  input                      1,3,128,128 (normalised model input, torch seed 5)
  {vit,tinyvit}_image_embedding, _low_res (multimask, box 20,30,100,90), _iou
  {vit,tinyvit}_key_sums     per float tensor (sorted keys): sum, sum of squares (ties the
                             reference to the export it was made from)

Usage (needs torch, timm, safetensors, numpy, pillow, segment-anything==1.0,
mobilesam-mirror==1.0.0; the exports are made by cargo unless --exports is given):
  python3 tools/make_merged_ref.py [--exports DIR]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_fixtures import FIX, build_tiny_mobilesam, build_tiny_sam, save_st  # noqa: E402

torch.set_grad_enabled(False)
BOX = torch.tensor([[20.0, 30.0, 100.0, 90.0]])


def make_exports(out: Path):
    env = dict(os.environ, SEGADAPT_MERGED_OUT=str(out))
    subprocess.run(
        ["cargo", "test", "--locked", "--test", "merged_export", "--",
         "--ignored", "--exact", "write_exports_for_reference"],
        check=True, env=env, cwd=FIX.parent.parent,
    )


def key_sums(sd: dict) -> torch.Tensor:
    rows = []
    for k in sorted(sd):
        v = sd[k]
        if v.dtype == torch.float32:
            d = v.double()
            rows += [d.sum().item(), (d * d).sum().item()]
    return torch.tensor(rows, dtype=torch.float32)


def run(tag: str, sam, path: Path, x: torch.Tensor, out: dict):
    sd = load_file(str(path))
    # strict: every key of the official state_dict, nothing else, same shapes
    sam.load_state_dict(sd, strict=True)
    # after loading: TinyViT's eval() caches attention_biases[:, idxs] as `ab`
    sam.eval()
    emb = sam.image_encoder(x)
    sparse, dense = sam.prompt_encoder(points=None, boxes=BOX, masks=None)
    low, iou = sam.mask_decoder(
        image_embeddings=emb, image_pe=sam.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
        multimask_output=True,
    )
    out[f"{tag}_image_embedding"] = emb
    out[f"{tag}_low_res"] = low
    out[f"{tag}_iou"] = iou
    out[f"{tag}_key_sums"] = key_sums(sd)
    print(f"  {tag}: {path.name} loaded strictly ({len(sd)} tensors); "
          f"embedding {tuple(emb.shape)}, low_res {tuple(low.shape)}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--exports", type=Path, help="dir with {vit,tinyvit}_merged.safetensors")
    args = ap.parse_args()
    tmp = None
    if args.exports is None:
        tmp = tempfile.TemporaryDirectory()
        args.exports = Path(tmp.name)
        make_exports(args.exports)
    x = torch.randn((1, 3, 128, 128), generator=torch.Generator().manual_seed(5))
    out = {"input": x}
    run("vit", build_tiny_sam(), args.exports / "vit_merged.safetensors", x, out)
    run("tinyvit", build_tiny_mobilesam(), args.exports / "tinyvit_merged.safetensors", x, out)
    save_st(out, FIX / "merged_export_ref.safetensors", {
        "made_by": "tools/make_merged_ref.py", "torch": torch.__version__,
        "box_xyxy": "20,30,100,90", "input": "torch.randn seed 5",
    })


if __name__ == "__main__":
    main()
