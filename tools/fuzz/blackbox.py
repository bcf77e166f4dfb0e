#!/usr/bin/env python3
"""Black-box mutation fuzzing of the built `segadapt` binary (no instrumented build needed).

    python3 tools/fuzz/blackbox.py image      SECONDS [--bin target/debug/segadapt]
    python3 tools/fuzz/blackbox.py checkpoint SECONDS

`image`: mutated PNG/JPEG/BMP/WebP/TIFF (8/16/32-bit, float, multi-page)/NIfTI(.gz) files go
to `segadapt segment --image` (the image is read before the model, so a missing model ends
the run right after decoding). `checkpoint`: mutated copies of the tiny fixture checkpoints
go to `segadapt segment --model`. A run fails when the process panics, dies from a signal,
or exceeds the time limit; the input is kept in tools/fuzz/artifacts/blackbox-<mode>/.
Complements the libFuzzer targets (build.sh / run.sh), which are far faster per input.
"""
import gzip
import io
import os
import random
import struct
import subprocess
import sys
import tempfile
import time
import zipfile

import numpy as np
from PIL import Image

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def nifti(vol, datatype, bitpix):
    h = bytearray(352)
    struct.pack_into("<i", h, 0, 348)
    dims = [vol.ndim] + list(vol.shape[::-1]) + [1] * (7 - vol.ndim)
    struct.pack_into("<8h", h, 40, *dims)
    struct.pack_into("<hh", h, 70, datatype, bitpix)
    struct.pack_into("<8f", h, 76, *([1.0] * 8))
    struct.pack_into("<fff", h, 108, 352.0, 1.0, 0.0)
    h[344:348] = b"n+1\0"
    return bytes(h) + vol.astype(vol.dtype.newbyteorder("<")).tobytes()


def image_seeds():
    import tifffile

    rng = np.random.default_rng(0)
    seeds = []
    for fmt, mode in [("PNG", "RGB"), ("PNG", "L"), ("PNG", "RGBA"), ("JPEG", "RGB"), ("BMP", "RGB"), ("WEBP", "RGB")]:
        b = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)).convert(mode).save(b, fmt)
        seeds.append(("img." + fmt.lower(), b.getvalue()))
    b = io.BytesIO()
    Image.fromarray(rng.integers(0, 65535, (12, 16), dtype=np.uint16)).save(b, "PNG")
    seeds.append(("g16.png", b.getvalue()))
    for name, arr, kw in [
        ("u16.tif", rng.integers(0, 65535, (12, 16), dtype=np.uint16), {}),
        ("f32.tif", rng.normal(size=(12, 16)).astype(np.float32), {}),
        ("stack.tif", rng.integers(0, 255, (3, 12, 16), dtype=np.uint8), {}),
        ("rgb16.tif", rng.integers(0, 65535, (12, 16, 3), dtype=np.uint16), {"photometric": "rgb"}),
        ("lzw.tif", rng.integers(0, 4, (12, 16), dtype=np.uint16), {"compression": "zlib"}),
    ]:
        b = io.BytesIO()
        tifffile.imwrite(b, arr, **kw)
        seeds.append((name, b.getvalue()))
    vol = rng.integers(-1000, 1000, (3, 6, 5), dtype=np.int16)
    seeds.append(("vol.nii", nifti(vol, 4, 16)))
    seeds.append(("vol.nii.gz", gzip.compress(nifti(vol, 4, 16))))
    seeds.append(("volf.nii", nifti(rng.normal(size=(2, 4, 4)).astype(np.float32), 16, 32)))
    return seeds


def checkpoint_seeds():
    return [(n, open(os.path.join(ROOT, "tests/fixtures", n), "rb").read()) for n in ["sam_vit_tiny.pth"]]


def mutate(data, rng, pkl_range=None):
    b = bytearray(data)
    for _ in range(rng.choice([1, 1, 2, 4, 8])):
        op = rng.randrange(7)
        if not b:
            b = bytearray(b"\0")
        if pkl_range and rng.random() < 0.7:
            lo, hi = pkl_range
        else:
            lo, hi = 0, len(b)
        i = rng.randrange(lo, max(lo + 1, min(hi, len(b))))
        if op == 0:
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1:
            b[i] = rng.choice([0, 0xFF, 0x7F, 0x80, rng.randrange(256)])
        elif op == 2:
            for k in range(4):
                if i + k < len(b):
                    b[i + k] = rng.choice([0, 0xFF])
        elif op == 3:
            del b[i : i + rng.randrange(1, 64)]
        elif op == 4:
            j = rng.randrange(len(b))
            b[i:i] = b[j : j + rng.randrange(1, 64)]
        elif op == 5:
            b = b[: rng.randrange(len(b) + 1)]
        elif len(b) >= 4:
            struct.pack_into("<I", b, min(i, len(b) - 4), rng.choice([0, 1, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 1 << 20]))
    return bytes(b)


def pkl_span(data):
    # Offsets of data.pkl inside the zip (the pickle is where structure lives).
    try:
        z = zipfile.ZipFile(io.BytesIO(data))
        info = [i for i in z.infolist() if i.filename.endswith("data.pkl")][0]
        start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
        return (start, start + info.compress_size)
    except Exception:
        return None


def main():
    mode, secs = sys.argv[1], float(sys.argv[2])
    exe = os.path.join(ROOT, "target/debug/segadapt")
    if "--bin" in sys.argv:
        exe = sys.argv[sys.argv.index("--bin") + 1]
    rng = random.Random(1234)
    seeds = image_seeds() if mode == "image" else checkpoint_seeds()
    spans = {n: (pkl_span(d) if mode == "checkpoint" else None) for n, d in seeds}
    art = os.path.join(ROOT, "tools/fuzz/artifacts", "blackbox-" + mode)
    os.makedirs(art, exist_ok=True)
    tmp = tempfile.mkdtemp()
    png = os.path.join(ROOT, "tests/fixtures/rgb_100x75.png")
    t0, n, fails, outcomes = time.time(), 0, 0, {}
    while time.time() - t0 < secs:
        name, data = rng.choice(seeds)
        m = mutate(data, rng, spans.get(name))
        p = os.path.join(tmp, name)
        open(p, "wb").write(m)
        if mode == "image":
            args = [exe, "--device", "cpu", "segment", "--model", os.path.join(tmp, "none.pth"), "--image", p, "--box", "0,0,1,1", "--out", os.path.join(tmp, "o.png")]
        else:
            args = [exe, "--device", "cpu", "segment", "--model", p, "--image", png, "--box", "1,1,5,5", "--out", os.path.join(tmp, "o.png")]
        try:
            r = subprocess.run(args, capture_output=True, timeout=60)
            err = r.stderr.decode(errors="replace")
            bad = r.returncode < 0 or r.returncode == 101 or "panicked" in err
            key = err.strip().splitlines()[-1][:90] if err.strip() else f"exit {r.returncode}"
        except subprocess.TimeoutExpired:
            bad, key, err = True, "TIMEOUT", "timeout"
        n += 1
        k = key
        for path in (p, tmp):
            k = k.replace(path, "<file>")
        k = k[:70]
        outcomes[k] = outcomes.get(k, 0) + 1
        if bad:
            fails += 1
            out = os.path.join(art, f"crash-{n}-{name}")
            open(out, "wb").write(m)
            print(f"FAIL ({key}): {out}\n{err[-2000:]}", flush=True)
    print(f"{mode}: {n} inputs in {time.time() - t0:.0f} s, {fails} failures")
    for k, v in sorted(outcomes.items(), key=lambda kv: -kv[1])[:25]:
        print(f"  {v:6d}  {k}")


if __name__ == "__main__":
    main()
