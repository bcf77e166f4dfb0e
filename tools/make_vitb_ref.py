#!/usr/bin/env python3
"""Full-size SAM ViT-B with random weights, built by the official `segment_anything` code,
plus reference outputs for `segadapt check-parity` (run where the 375 MB checkpoint may live,
e.g. the GPU machine). Writes OUT/vitb.pth, OUT/vitb.json, OUT/vitb_ref.safetensors.
    python3 tools/make_vitb_ref.py OUT [cuda|cpu]
"""
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from make_fixtures import randomize_, run_prompt_cases, save_st, decoder_config  # noqa: E402
from segment_anything import sam_model_registry  # noqa: E402


def main():
    out = Path(sys.argv[1])
    dev = sys.argv[2] if len(sys.argv) > 2 else ("cuda" if torch.cuda.is_available() else "cpu")
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    sam = sam_model_registry["vit_b"](checkpoint=None).eval()
    randomize_(sam, torch.Generator().manual_seed(1))
    torch.save(sam.state_dict(), out / "vitb.pth")
    g = torch.Generator().manual_seed(2)
    x = torch.randn((1, 3, 1024, 1024), generator=g)
    scale = 1024 / 128
    cases = {
        "pts": dict(coords=torch.tensor([[[40.5, 30.0], [90.0, 100.25]]]) * scale, labels=torch.tensor([[1, 0]]), box=None, mask=None),
        "box": dict(coords=None, labels=None, box=torch.tensor([[20.0, 30.0, 100.0, 90.0]]) * scale, mask=None),
        "boxpts": dict(coords=torch.tensor([[[40.0, 60.0]]]) * scale, labels=torch.tensor([[1]]),
                       box=torch.tensor([[10.0, 15.0, 70.0, 110.0]]) * scale, mask=None),
        "mask": dict(coords=torch.tensor([[[512.0, 512.0]]]), labels=torch.tensor([[1]]), box=None,
                     mask=2.0 * torch.randn((1, 1, 256, 256), generator=g)),
    }
    sam = sam.to(dev)
    refs = {"input": x}
    with torch.no_grad():
        # full fp32 on GPU: no TF32 shortcuts in the reference
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        emb = sam.image_encoder(x.to(dev))
        refs["image_embedding"] = emb
        cases = {k: {kk: (v.to(dev) if torch.is_tensor(v) else v) for kk, v in c.items()} for k, c in cases.items()}
        run_prompt_cases(sam, cases, emb, refs)
    save_st({k: v.detach().float().cpu().contiguous() for k, v in refs.items()}, out / "vitb_ref.safetensors")
    cfg = {
        "image_encoder": {"img_size": 1024, "patch_size": 16, "in_chans": 3, "embed_dim": 768, "depth": 12, "num_heads": 12,
                          "mlp_ratio": 4.0, "out_chans": 256, "qkv_bias": True, "use_rel_pos": True, "window_size": 14,
                          "global_attn_indexes": [2, 5, 8, 11]},
        "prompt_encoder": {"embed_dim": 256, "image_embedding_size": [64, 64], "input_image_size": [1024, 1024], "mask_in_chans": 16},
        "mask_decoder": decoder_config(256, 2048, 8, 256),
        "pixel_mean": [123.675, 116.28, 103.53], "pixel_std": [58.395, 57.12, 57.375],
    }
    (out / "vitb.json").write_text(json.dumps(cfg, indent=1))
    print("wrote", out)


if __name__ == "__main__":
    main()
