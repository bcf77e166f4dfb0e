#!/usr/bin/env python3
"""Reference values for the Conv-LoRA tests in src/adapt/conv_lora.rs, from plain math (no
PyTorch, not a port of the Rust code), following autogluon's MoEGate (k = 1):

  noisy  = clean + randn · (softplus(x @ w_noise) + 1e-2)
  load   = Σ_b P(in top 1):  Φ((clean - 2nd noisy) / std) for the top expert,
                             Φ((clean - top noisy) / std) for the others
  loss   = 1e-2 · (cv²(importance) + cv²(load)),  cv² = unbiased var / (mean² + 1e-10)

and PyTorch's bicubic weights (upsample_bicubic2d, a = -0.75, align_corners=False).
"""
import math

A = -0.75


def cc1(x):
    return ((A + 2) * x - (A + 3)) * x * x + 1


def cc2(x):
    return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A


def cubic_matrix(n_in, n_out):
    m = [[0.0] * n_in for _ in range(n_out)]
    for o in range(n_out):
        src = (o + 0.5) * n_in / n_out - 0.5
        i0 = math.floor(src)
        t = src - i0
        for j, w in enumerate([cc2(t + 1), cc1(t), cc1(1 - t), cc2(2 - t)]):
            m[o][min(max(i0 - 1 + j, 0), n_in - 1)] += w
    return m


def cv2(x):
    m = sum(x) / len(x)
    return 0.0 if len(x) == 1 else sum((a - m) ** 2 for a in x) / (len(x) - 1) / (m * m + 1e-10)


def aux_case():
    sp = lambda v: math.log1p(math.exp(v))
    phi = lambda v: 0.5 * (1 + math.erf(v / math.sqrt(2)))
    pooled, wg, wn = [1.0, 2.0], [0.0, 1.0, -1.0], [0.5, 0.0, -0.5]
    noise = [[1.0, -0.2, 0.1], [0.0, 0.3, -0.4]]
    imp, load = [0.0] * 3, [0.0] * 3
    for b in range(2):
        clean = [pooled[b] * w for w in wg]
        std = [sp(pooled[b] * w) + 1e-2 for w in wn]
        noisy = [c + n * s for c, n, s in zip(clean, noise[b], std)]
        top = sorted(noisy, reverse=True)
        imp[noisy.index(top[0])] += 1
        for i in range(3):
            thr = top[1] if noisy[i] > top[1] else top[0]
            load[i] += phi((clean[i] - thr) / std[i])
    return imp, load, 1e-2 * (cv2(imp) + cv2(load))


if __name__ == "__main__":
    print("cubic 2->4", cubic_matrix(2, 4))
    print("cubic 4->2", cubic_matrix(4, 2))
    print("importance, load, aux loss", aux_case())
