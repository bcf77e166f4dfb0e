#!/usr/bin/env python3
"""DICOM fixtures of tests/dicom.rs (written to tests/fixtures/dicom/).

The .dcm files are pydicom's own test files (pydicom/data/test_files/ inside the pydicom
wheel, MIT licence; CT_small and MR_small are downsized NEMA WG04 sample images). Each
`<name>.png` is what segadapt's import should make of `<name>.dcm`, computed here by pydicom
and numpy, independently of the Rust code:

* pixel values: `ds.pixel_array` (frame 0 of a multi-frame file), then
  `pydicom.pixels.apply_modality_lut` (Rescale Slope/Intercept);
* a file with Window Center/Width: `pydicom.pixels.apply_voi_lut` (DICOM's LINEAR window),
  whose output range [y_min, y_max] is found by windowing two extreme values, then mapped to
  0..255 as `(y - y_min) / (y_max - y_min) * 255`;
* otherwise the README's rule: numpy's linear 0.5/99.5 percentiles of the values (held as
  float32, as the importer holds them), stretched to 0..255, clipped, rounded half-to-even;
* MR_small_percentile.png: MR_small by the percentile rule, ignoring its window (what a
  user-chosen `p0.5,99.5` window must give);
* MONOCHROME1 (MR_small_mono1.dcm: MR_small relabelled here): 255 minus the MONOCHROME2
  result (PS3.3 C.7.6.3.1.2: the minimum value is white);
* 8-bit RGB: the pixels as pydicom decodes them (Pillow for JPEG baseline; YBR -> RGB).

Files refused with an error are copied as they are: MR_truncated.dcm (pixel data cut short),
rtplan.dcm (no image), MR_small_jp2klossless.dcm (JPEG 2000, not built in).

Run: /work/.venv-torch/bin/python tools/make_dicom_ref.py  (needs pydicom 3, numpy, Pillow).
"""

import json
import pathlib
import shutil

import numpy as np
import pydicom
from PIL import Image
from pydicom.pixels import apply_modality_lut, apply_voi_lut

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "dicom"
SRC = pathlib.Path(pydicom.__file__).parent / "data" / "test_files"

IMAGES = [
    "CT_small.dcm",  # 16-bit signed CT, slope 1 intercept -1024, no window
    "MR_small.dcm",  # 16-bit MR, window 600/1600
    "MR_small_RLE.dcm",  # the same, RLE Lossless
    "MR_small_bigendian.dcm",  # the same, explicit VR big endian
    "rtdose.dcm",  # 15 frames, 32-bit unsigned: frame 0
    "SC_rgb_small_odd.dcm",  # 3x3 8-bit RGB, uncompressed
    "SC_rgb_rle.dcm",  # 8-bit RGB, RLE
    "SC_rgb_jpeg_dcmtk.dcm",  # 8-bit YBR_FULL, JPEG baseline
]
REFUSED = ["MR_truncated.dcm", "rtplan.dcm", "MR_small_jp2klossless.dcm"]


def percentile_rule(v):
    v = v.astype(np.float32).astype(np.float64)
    lo, hi = np.percentile(v, [0.5, 99.5])
    rng = hi - lo if hi > lo else 1.0
    return np.rint(np.clip((v - lo) / rng * 255.0, 0, 255)).astype(np.uint8)


def window_rule(v, ds):
    y = apply_voi_lut(v, ds)
    ends = apply_voi_lut(np.array([-1e12, 1e12]), ds)
    y_min, y_max = float(ends[0]), float(ends[1])
    return np.rint(np.clip((y - y_min) / (y_max - y_min) * 255.0, 0, 255)).astype(np.uint8)


def expected(ds):
    arr = ds.pixel_array
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        arr = arr[0]
    if ds.SamplesPerPixel == 3:
        return arr.astype(np.uint8), "rgb"
    v = apply_modality_lut(arr, ds).astype(np.float64)
    if "WindowCenter" in ds and "WindowWidth" in ds:
        out, how = window_rule(v, ds), "file window"
    else:
        out, how = percentile_rule(v), "percentile 0.5..99.5"
    if ds.PhotometricInterpretation == "MONOCHROME1":
        out = 255 - out
    return out, how


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for name in IMAGES + REFUSED:
        shutil.copyfile(SRC / name, OUT / name)
    ds = pydicom.dcmread(SRC / "MR_small.dcm")
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.save_as(OUT / "MR_small_mono1.dcm")
    meta = {}
    for name in IMAGES + ["MR_small_mono1.dcm"]:
        ds = pydicom.dcmread(OUT / name)
        out, how = expected(ds)
        Image.fromarray(out, "RGB" if out.ndim == 3 else "L").save(OUT / name.replace(".dcm", ".png"))
        meta[name] = {
            "transfer_syntax": str(ds.file_meta.TransferSyntaxUID.name),
            "size": [int(ds.Columns), int(ds.Rows)],
            "frames": int(ds.get("NumberOfFrames", 1) or 1),
            "photometric": str(ds.PhotometricInterpretation),
            "mapping": how,
        }
        print(name, meta[name])
    ds = pydicom.dcmread(OUT / "MR_small.dcm")
    v = apply_modality_lut(ds.pixel_array, ds).astype(np.float64)
    Image.fromarray(percentile_rule(v), "L").save(OUT / "MR_small_percentile.png")
    (OUT / "reference.json").write_text(json.dumps(meta, indent=1) + "\n")
    shutil.copyfile(pathlib.Path(pydicom.__file__).parent.parent / f"pydicom-{pydicom.__version__}.dist-info" / "licenses" / "LICENSE", OUT / "LICENSE.pydicom")


if __name__ == "__main__":
    main()
