#!/usr/bin/env python3
"""The PyTorch side of `segadapt bench --pytorch`: the official `segment_anything` and
`mobile_sam` code on the same cases, shapes and protocol as src/bench.rs, so the ratios
ours/PyTorch compare like with like.

Cases (comma-separated in --cases; the names are the ones src/bench.rs prints):
  encoder/<model>              image_encoder on a (1, 3, 1024, 1024) input, random weights
  prompt/<model>/box<S>        SamPredictor.predict(box, multimask_output=False, return_logits=True)
                               on an S×S image whose embedding is set once
  train/<model>/<method>[+ckpt][+blocksA-B]  one training step at 1024², 1 image, --objects box prompts:
                               adapters on every qkv (rank 4, alpha 16), mask decoder trained,
                               BCE+Dice + IoU-MSE loss, AdamW (Adam for α); the frozen prefix
                               (patch embedding; TinyViT stem + conv stage) computed once, as the
                               Rust trainer does; NAS cells in the search stage (all ops, α trained).
                               +ckpt: torch.utils.checkpoint around every encoder block.
                               +blocksA-B (ViT): adapters on blocks A..=B only; blocks < A join
                               the frozen prefix.
  throughput/<model>           images/s: set_image + one box prediction per image
model: vit_t (MobileSAM, mobile_sam package), vit_b / vit_l / vit_h (segment_anything).
method: nas-lora, nas-pc-lora, lora, conv-lora — a straightforward PyTorch implementation of the
adapters as DESIGN.md §1 defines them (same as tools/nas_cell_ref.py for the cell).

Timing: the first call is "cold", the median of the rest "warm" (CUDA synchronised).
Memory: CUDA max_memory_reserved over the case (and max_memory_allocated as peak_alloc_bytes);
CPU peak RSS (VmHWM, reset through /proc/self/clear_refs before the case).
"""
import argparse
import json
import math
import os
import statistics
import sys
import time
import warnings

warnings.filterwarnings("ignore")

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

OPS = ["identity", "conv3x3", "conv5x5", "dil_conv3x3", "avg_pool3x3", "max_pool3x3"]


# ----------------------------------------------------------------------------- adapters
def _op(name, x, w):
    if name == "identity":
        return x
    if name == "conv3x3":
        return F.conv2d(x, w, padding=1)
    if name == "conv5x5":
        return F.conv2d(x, w, padding=2)
    if name == "dil_conv3x3":
        return F.conv2d(x, w, padding=2, dilation=2)
    if name == "avg_pool3x3":
        return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    if name == "max_pool3x3":
        return F.max_pool2d(x, 3, stride=1, padding=1)
    raise ValueError(name)


class NasCell(nn.Module):
    """h = Σ softmax(α/T)_i O_i(z) on (B, r, h, w); PC variant mixes ceil(r/K) channels."""

    def __init__(self, r, k=1, temperature=1.0):
        super().__init__()
        self.r = r
        self.k = k
        self.m = math.ceil(r / k) if k > 1 else r
        self.t = temperature
        self.alpha = nn.Parameter(torch.zeros(len(OPS)))
        self.w = nn.ParameterDict()
        for n, ks in [("conv3x3", 3), ("conv5x5", 5), ("dil_conv3x3", 3)]:
            w = torch.empty(self.m, self.m, ks, ks)
            nn.init.kaiming_uniform_(w, a=math.sqrt(5))
            self.w[n] = nn.Parameter(w)

    def forward(self, z):  # (B, H, W, r)
        z = z.permute(0, 3, 1, 2)
        head, tail = z[:, : self.m], z[:, self.m :]
        a = torch.softmax(self.alpha / self.t, 0)
        mixed = sum(a[i] * _op(n, head, self.w[n] if n in self.w else None) for i, n in enumerate(OPS))
        out = torch.cat([mixed, tail], 1) if tail.shape[1] else mixed
        if self.m < self.r and self.r % self.k == 0:
            b, c, h, w = out.shape
            out = out.view(b, self.k, c // self.k, h, w).transpose(1, 2).reshape(b, c, h, w)
        return out.permute(0, 2, 3, 1)


class ConvLoraMoE(nn.Module):
    """Conv-LoRA: expert i = upsample ×(i+1), conv3x3, GELU, resize back; noisy top-1 gate on
    the pooled bottleneck; load-balancing loss (cv² of importance) × 1e-2."""

    aux = []

    def __init__(self, r, experts=8):
        super().__init__()
        self.experts = nn.ModuleList([nn.Conv2d(r, r, 3, padding=1) for _ in range(experts)])
        self.gate = nn.Parameter(torch.zeros(r, experts))
        self.noise = nn.Parameter(torch.zeros(r, experts))
        self.noisy = True

    def forward(self, z):  # (B, H, W, r)
        b, h, w, r = z.shape
        zc = z.permute(0, 3, 1, 2)
        pooled = zc.mean((2, 3))
        logits = pooled @ self.gate
        if self.noisy:
            logits = logits + torch.randn_like(logits) * F.softplus(pooled @ self.noise)
        probs = torch.softmax(logits, 1)
        top = probs.detach().argmax(1).tolist()
        outs = []
        for s, e in enumerate(top):
            x = zc[s : s + 1]
            f = e + 1
            if f > 1:
                x = F.interpolate(x, size=(h * f, w * f), mode="bilinear", align_corners=False)
            y = F.gelu(self.experts[e](x))
            if f > 1:
                y = F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False)
            outs.append(y * probs[s, e])
        y = torch.cat(outs, 0).permute(0, 2, 3, 1)
        if self.noisy:
            imp = probs.sum(0)
            ConvLoraMoE.aux.append(imp.var(unbiased=False) / (imp.mean() ** 2 + 1e-10) * 1e-2)
        return z + y


class LoraLinear(nn.Module):
    """Frozen nn.Linear plus s·B(cell(A x)), with x viewed as a (B, h, w, C) map."""

    def __init__(self, base, method, r=4, alpha=16.0):
        super().__init__()
        self.base = base
        d_in, d_out = base.in_features, base.out_features
        a = torch.empty(r, d_in)
        nn.init.kaiming_uniform_(a, a=math.sqrt(5))
        self.lora_a = nn.Parameter(a.t().contiguous())
        self.lora_b = nn.Parameter(torch.zeros(r, d_out))
        self.scale = alpha / r
        self.cell = None
        self.moe = None
        if method == "nas-lora":
            self.cell = NasCell(r, 1)
        elif method == "nas-pc-lora":
            self.cell = NasCell(r, 2)
        elif method == "conv-lora":
            self.moe = ConvLoraMoE(r)
        elif method != "lora":
            raise ValueError(method)

    def forward(self, x):
        y = self.base(x)
        if x.dim() == 3:  # TinyViT attention: (B', N, C) windows, N = ws²
            b, n, c = x.shape
            s = int(round(math.sqrt(n)))
            x4 = x.reshape(b, s, s, c)
        else:
            x4 = x
        z = x4 @ self.lora_a
        if self.cell is not None:
            z = self.cell(z)
        if self.moe is not None:
            z = self.moe(z)
        d = (z @ self.lora_b) * self.scale
        return y + d.reshape(y.shape)


# ----------------------------------------------------------------------------- models
def build(model):
    if model == "vit_t":
        from mobile_sam import SamPredictor, sam_model_registry

        sam = sam_model_registry["vit_t"](checkpoint=None)
    else:
        from segment_anything import SamPredictor, sam_model_registry

        sam = sam_model_registry[model](checkpoint=None)
    sam.eval()
    return sam, SamPredictor


def attn_modules(sam, model, blocks=None):
    enc = sam.image_encoder
    if model == "vit_t":
        if blocks is not None:
            raise ValueError("+blocks is only implemented for the ViT encoders")
        return [blk.attn for layer in enc.layers[1:] for blk in layer.blocks]
    return [blk.attn for i, blk in enumerate(enc.blocks) if blocks is None or i in blocks]


def encoder_prefix_suffix(sam, model, ckpt, first=0):
    """(prefix(x) computed once without grad, suffix(prefix) -> embedding); for ViT the
    prefix also runs the blocks before `first`, the first adapted one."""
    enc = sam.image_encoder
    from torch.utils.checkpoint import checkpoint

    def run(blk, x):
        return checkpoint(blk, x, use_reentrant=False) if ckpt else blk(x)

    if model == "vit_t":

        def prefix(x):
            return enc.layers[0](enc.patch_embed(x))

        def suffix(x):
            for layer in enc.layers[1:]:
                for blk in layer.blocks:
                    x = run(blk, x)
                if layer.downsample is not None:
                    x = layer.downsample(x)
            b, _, c = x.shape
            return enc.neck(x.view(b, 64, 64, c).permute(0, 3, 1, 2))

    else:

        def prefix(x):
            x = enc.patch_embed(x)
            x = x + enc.pos_embed if enc.pos_embed is not None else x
            for blk in enc.blocks[:first]:
                x = blk(x)
            return x

        def suffix(x):
            for blk in enc.blocks[first:]:
                x = run(blk, x)
            return enc.neck(x.permute(0, 3, 1, 2))

    return prefix, suffix


# ----------------------------------------------------------------------------- timing
def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def time_calls(iters, budget_s, f, dev):
    t_case = time.perf_counter()
    calls = []
    while True:
        t = time.perf_counter()
        f()
        sync(dev)
        calls.append((time.perf_counter() - t) * 1e3)
        warm = len(calls) - 1
        if warm >= iters or (warm >= 1 and time.perf_counter() - t_case > budget_s):
            return calls


def record(case, calls, note=""):
    warm = calls[1:]
    return {
        "case": case,
        "cold_ms": calls[0],
        "warm_ms": statistics.median(warm) if warm else None,
        "warm_min_ms": min(warm) if warm else None,
        "calls_ms": calls,
        "peak_bytes": None,
        "mem_kind": None,
        "per_s": None,
        "note": note,
    }


class Mem:
    def __init__(self, dev):
        self.dev = dev
        if dev.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        else:
            try:
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")
            except OSError:
                pass

    def finish(self, rec):
        if self.dev.type == "cuda":
            torch.cuda.synchronize()
            rec["peak_bytes"] = torch.cuda.max_memory_reserved()
            rec["peak_alloc_bytes"] = torch.cuda.max_memory_allocated()
            rec["mem_kind"] = "gpu-reserved"
        else:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        rec["peak_bytes"] = int(line.split()[1]) * 1024
            rec["mem_kind"] = "cpu-vmhwm"


def test_image(size):
    x = np.arange(size)[None, :]
    y = np.arange(size)[:, None]
    r = ((x * 7 + y * 13) % 256).astype(np.uint8)
    g = np.broadcast_to(x % 256, (size, size)).astype(np.uint8)
    b = np.broadcast_to(y % 256, (size, size)).astype(np.uint8)
    return np.stack([r, g, b], -1)


# ----------------------------------------------------------------------------- cases
def bench_encoder(model, a, dev):
    sam, _ = build(model)
    sam.to(dev)
    x = torch.randn(1, 3, 1024, 1024, device=dev)
    mem = Mem(dev)
    with torch.inference_mode():
        calls = time_calls(a.iters, a.budget_s, lambda: sam.image_encoder(x), dev)
    rec = record(f"encoder/{model}", calls, "1x3x1024x1024 f32, random weights")
    mem.finish(rec)
    return rec


def bench_prompt(model, a, dev, size):
    sam, Pred = build(model)
    sam.to(dev)
    p = Pred(sam)
    p.set_image(test_image(size))
    box = np.array([0.2 * size, 0.25 * size, 0.7 * size, 0.8 * size])
    with torch.inference_mode():
        calls = time_calls(a.prompt_iters, a.budget_s, lambda: p.predict(box=box, multimask_output=False, return_logits=True), dev)
    return record(f"prompt/{model}/box{size}", calls, f"SamPredictor.predict(box) on a {size}x{size} image")


def bench_throughput(model, a, dev):
    sam, Pred = build(model)
    sam.to(dev)
    p = Pred(sam)
    size = a.image_size
    img = test_image(size)
    box = np.array([0.2 * size, 0.25 * size, 0.7 * size, 0.8 * size])
    calls = []
    with torch.inference_mode():
        for _ in range(max(1, a.images)):
            t = time.perf_counter()
            p.set_image(img)
            p.predict(box=box, multimask_output=False, return_logits=True)
            sync(dev)
            calls.append((time.perf_counter() - t) * 1e3)
    rec = record(f"throughput/{model}", calls, f"{len(calls)} images of {size}x{size}: set_image + one box")
    if rec["warm_ms"]:
        rec["per_s"] = 1e3 / rec["warm_ms"]
    return rec


def bench_train(model, method, ckpt, a, dev, blocks=None):
    torch.manual_seed(0)
    sam, _ = build(model)
    for prm in sam.parameters():
        prm.requires_grad_(False)
    for attn in attn_modules(sam, model, blocks):
        attn.qkv = LoraLinear(attn.qkv, method)
    for prm in sam.mask_decoder.parameters():
        prm.requires_grad_(True)
    sam.to(dev)
    prefix, suffix = encoder_prefix_suffix(sam, model, ckpt, min(blocks) if blocks else 0)
    k, low = a.objects, 256
    boxes = []
    for i in range(k):
        o = 64.0 + 96.0 * i
        boxes.append([o, o * 0.8, o + 300.0, o * 0.8 + 260.0])
    target = torch.zeros(k, 1, low, low)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        target[i, 0, int(y0 / 4) : int(y1 / 4), int(x0 / 4) : int(x1 / 4)] = 1.0
    target = target.to(dev)
    boxes = torch.tensor(boxes, device=dev)
    x = torch.randn(1, 3, 1024, 1024, device=dev)
    with torch.no_grad():
        pre = prefix(x)
    alphas = [p for n, p in sam.named_parameters() if p.requires_grad and n.endswith("cell.alpha")]
    ids = {id(p) for p in alphas}
    rest = [p for p in sam.parameters() if p.requires_grad and id(p) not in ids]
    opt = torch.optim.AdamW(rest, lr=1e-4, weight_decay=0.01)
    opt_a = torch.optim.Adam(alphas, lr=3e-3) if alphas else None

    def step():
        ConvLoraMoE.aux.clear()
        emb = suffix(pre)
        sparse, dense = sam.prompt_encoder(points=None, boxes=boxes, masks=None)
        low_res, iou_pred = sam.mask_decoder(
            image_embeddings=emb,
            image_pe=sam.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=False,
        )
        bce = F.binary_cross_entropy_with_logits(low_res, target, reduction="none").flatten(1).mean(1)
        p = torch.sigmoid(low_res).flatten(1)
        t = target.flatten(1)
        dice = 1 - (2 * (p * t).sum(1) + 1) / (p.sum(1) + t.sum(1) + 1)
        mask_l = (bce + dice).mean()
        with torch.no_grad():
            hp = (low_res > 0).float().flatten(1)
            inter = (hp * t).sum(1)
            union = (hp + t).clamp(max=1).sum(1)
            actual = inter / (union + 1e-6)
        iou_l = ((iou_pred.reshape(k) - actual) ** 2).mean()
        total = mask_l + iou_l
        if ConvLoraMoE.aux:
            total = total + sum(ConvLoraMoE.aux)
        opt.zero_grad(set_to_none=True)
        if opt_a:
            opt_a.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        if opt_a:
            opt_a.step()
        return total.item()

    mem = Mem(dev)
    calls = time_calls(a.iters, a.budget_s, step, dev)
    case = f"train/{model}/{method}{'+ckpt' if ckpt else ''}"
    if blocks:
        case += f"+blocks{min(blocks)}-{max(blocks)}"
    rec = record(case, calls, f"1 image 1024², {k} boxes, adapters on every qkv, decoder trained, AdamW")
    mem.finish(rec)
    return rec


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--cases", required=True)
    ap.add_argument("--json", required=True)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--prompt-iters", type=int, default=30)
    ap.add_argument("--budget-s", type=float, default=60.0)
    ap.add_argument("--image-size", type=int, default=512)
    ap.add_argument("--objects", type=int, default=4)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    out = {
        "tool": "pytorch",
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(0) if dev.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)",
        "threads": torch.get_num_threads(),
        "notes": "official segment_anything / mobile_sam, eager fp32, torch defaults (cuDNN conv TF32 on, matmul TF32 off)",
        "records": [],
    }
    for case in [c for c in a.cases.split(",") if c]:
        parts = case.split("/")
        try:
            if parts[0] == "encoder":
                rec = bench_encoder(parts[1], a, dev)
            elif parts[0] == "prompt":
                rec = bench_prompt(parts[1], a, dev, int(parts[2][3:]))
            elif parts[0] == "throughput":
                rec = bench_throughput(parts[1], a, dev)
            elif parts[0] == "train":
                # method[+ckpt][+blocksA-B], as segadapt names them
                method, *flags = parts[2].split("+")
                ckpt, blocks = "ckpt" in flags, None
                for f in flags:
                    if f.startswith("blocks"):
                        lo, hi = f[len("blocks"):].split("-")
                        blocks = list(range(int(lo), int(hi) + 1))
                rec = bench_train(parts[1], method, ckpt, a, dev, blocks)
            else:
                print(f"[pytorch] unknown case {case}", file=sys.stderr)
                continue
        except Exception as e:  # keep going: one failing case must not lose the others
            print(f"[pytorch] {case} failed: {type(e).__name__}: {e}", file=sys.stderr)
            continue
        w = rec["warm_ms"]
        mem = f"  mem {rec['peak_bytes'] / 2**30:.2f} GiB" if rec.get("peak_bytes") else ""
        print(f"[pytorch] {case:<38} cold {rec['cold_ms']:10.1f} ms  warm {w if w is None else round(w, 1)} ms{mem}", file=sys.stderr, flush=True)
        out["records"].append(rec)
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    with open(a.json, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
