#!/usr/bin/env python3
"""Independent reference of the NAS-LoRA cell, written straight from the formula in
DESIGN.md §1 with plain PyTorch ops (not a port of the Rust code):

    h = s · B( Σ_i softmax(α/T)_i · O_i(A x) )          (NAS-LoRA)
    PC: the mixed op sees the first ceil(r/K) channels, the rest pass through,
        then PC-DARTS channel_shuffle(x, K).

Writes tests/fixtures/nas_cell_ref.safetensors with inputs, parameters and outputs.
"""
import math
import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

OPS = ["identity", "conv3x3", "conv5x5", "dil_conv3x3", "avg_pool3x3", "max_pool3x3"]


def op(name, x, w):
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


def channel_shuffle(x, groups):
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


def cell(z_bhwr, alpha, weights, temperature, k):
    z = z_bhwr.permute(0, 3, 1, 2)
    r = z.shape[1]
    m = math.ceil(r / k) if k > 1 else r
    head, tail = z[:, :m], z[:, m:]
    a = torch.softmax(alpha / temperature, 0)
    mixed = sum(a[i] * op(n, head, weights.get(n)) for i, n in enumerate(OPS))
    out = torch.cat([mixed, tail], 1)
    if m < r and r % k == 0:
        out = channel_shuffle(out, k)
    return out.permute(0, 2, 3, 1)


def main():
    g = torch.Generator().manual_seed(7)
    out = {}
    b, h, w, d_in, d_out, r = 2, 7, 5, 12, 18, 4
    scale = 4.0
    for tag, k in [("full", 1), ("pc", 2)]:
        m = math.ceil(r / k) if k > 1 else r
        x = torch.randn(b, h, w, d_in, generator=g)
        A = torch.randn(d_in, r, generator=g) * 0.3
        B = torch.randn(r, d_out, generator=g) * 0.3
        alpha = torch.randn(len(OPS), generator=g)
        temperature = 0.7
        weights = {n: torch.randn(m, m, kk, kk, generator=g) * 0.2 for n, kk in [("conv3x3", 3), ("conv5x5", 5), ("dil_conv3x3", 3)]}
        z = x @ A
        y = (cell(z, alpha, weights, temperature, k) @ B) * scale
        for name, t in [("x", x), ("A", A), ("B", B), ("alpha", alpha), ("y", y)]:
            out[f"{tag}_{name}"] = t.contiguous()
        for n, t in weights.items():
            out[f"{tag}_w_{n}"] = t.contiguous()
        out[f"{tag}_meta"] = torch.tensor([scale, temperature, float(k)])
    path = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "nas_cell_ref.safetensors")
    save_file(out, path)
    print("wrote", os.path.normpath(path))


if __name__ == "__main__":
    main()
