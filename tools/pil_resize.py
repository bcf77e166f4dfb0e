#!/usr/bin/env python3
"""Exact specification of the image resize used by the official SamPredictor.

segment_anything / mobile_sam `ResizeLongestSide.apply_image` does
    np.array(torchvision.transforms.functional.resize(to_pil_image(img), (newh, neww)))
i.e. Pillow's BILINEAR resample on a uint8 RGB image. Pillow implements it as two separable
1-D passes in fixed point, HORIZONTAL FIRST, with the intermediate image rounded and clipped
to uint8, then VERTICAL. This file re-implements that with numpy (the algorithm a Rust port
must follow to get bit-identical `pred_input` tensors) and checks it against the real thing:

    python3 tools/pil_resize.py          # prints max |diff| (must be 0) for a few shapes

Per output index xx of a pass (in_size -> out_size):
    scale = in_size / out_size; filterscale = max(scale, 1)   # >1 only when downscaling (antialias)
    support = 1.0 * filterscale                                # bilinear (triangle) filter radius
    center = (xx + 0.5) * scale
    xmin = max(int(center - support + 0.5), 0); xmax = min(int(center + support + 0.5), in_size)
    w[x] = max(0, 1 - |(x - center + 0.5) / filterscale|) for x in [xmin, xmax)
    w /= sum(w)                                                # renormalised at the borders
    wi = trunc(w * 2^22 + 0.5) (w >= 0; trunc(w * 2^22 - 0.5) for w < 0)   # PRECISION_BITS = 22
    out = clip((2^21 + sum(wi * in[x])) >> 22, 0, 255)         # integer arithmetic
Target size: scale = L / max(h, w); newh = int(h * scale + 0.5); neww = int(w * scale + 0.5).
"""
import numpy as np

PRECISION_BITS = 22


def coeffs(in_size: int, out_size: int):
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 1.0 * filterscale
    out = []
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size)
        w = np.array([max(0.0, 1.0 - abs((x - center + 0.5) / filterscale)) for x in range(xmin, xmax)])
        tot = w.sum()
        if tot != 0:
            w = w / tot
        wi = np.where(w < 0, np.trunc(w * (1 << PRECISION_BITS) - 0.5),
                      np.trunc(w * (1 << PRECISION_BITS) + 0.5)).astype(np.int64)
        out.append((xmin, wi))
    return out


def resample_axis(a: np.ndarray, out_size: int, axis: int) -> np.ndarray:
    a = np.moveaxis(a, axis, 0).astype(np.int64)
    res = np.zeros((out_size,) + a.shape[1:], np.int64)
    for i, (xmin, wi) in enumerate(coeffs(a.shape[0], out_size)):
        acc = (1 << (PRECISION_BITS - 1)) + np.tensordot(wi, a[xmin:xmin + len(wi)], axes=(0, 0))
        res[i] = np.clip(acc >> PRECISION_BITS, 0, 255)
    return np.moveaxis(res, 0, axis).astype(np.uint8)


def pil_bilinear(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """img: H x W x C uint8. Horizontal pass first (only if width changes), then vertical."""
    x = img
    if out_w != img.shape[1]:
        x = resample_axis(x, out_w, 1)
    if out_h != img.shape[0]:
        x = resample_axis(x, out_h, 0)
    return x


def preprocess_shape(h: int, w: int, long_side: int):
    scale = long_side * 1.0 / max(h, w)
    return int(h * scale + 0.5), int(w * scale + 0.5)


if __name__ == "__main__":
    from segment_anything.utils.transforms import ResizeLongestSide

    rng = np.random.default_rng(0)
    for (h, w, target) in [(75, 100, 128), (512, 512, 1024), (300, 200, 1024), (1200, 900, 1024),
                           (1024, 1024, 1024), (1, 7, 128)]:
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        ref = ResizeLongestSide(target).apply_image(img)
        nh, nw = preprocess_shape(h, w, target)
        mine = pil_bilinear(img, nh, nw)
        assert mine.shape == ref.shape, (mine.shape, ref.shape)
        d = int(np.abs(mine.astype(int) - ref.astype(int)).max())
        print(f"{h}x{w} -> {ref.shape[0]}x{ref.shape[1]}: max |diff| = {d}")
        assert d == 0
    print("pil_resize: exact")
