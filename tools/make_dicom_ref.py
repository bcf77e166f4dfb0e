#!/usr/bin/env python3
"""DICOM fixtures of tests/dicom.rs (written to tests/fixtures/dicom/).

The .dcm files are pydicom's own test files (pydicom/data/test_files/ inside the pydicom
wheel, MIT licence; CT_small and MR_small are downsized NEMA WG04 sample images). Each
`<name>.png` is what segadapt's import should make of `<name>.dcm`, computed here by pydicom
and numpy, independently of the Rust code:

* pixel values: `ds.pixel_array` (frame 0 of a multi-frame file), then
  `pydicom.pixels.apply_modality_lut` (Rescale Slope/Intercept);
* then the README's rule, as for every >8-bit format: numpy's linear 0.5/99.5 percentiles of
  the values (held as float32, as the importer holds them), stretched to 0..255, clipped,
  rounded half-to-even (the file's Window Center/Width is not used); plain 8-bit gray (no
  rescale) is kept as is, as for an 8-bit PNG;
* CT_small_window.png: CT_small with a user window of -160..240 HU (level 40, width 400),
  i.e. on the Modality LUT's output;
* MONOCHROME1 (MR_small_mono1.dcm: MR_small relabelled here): 255 minus the MONOCHROME2
  result (PS3.3 C.7.6.3.1.2: the minimum value is white);
* 8-bit RGB: the pixels as pydicom decodes them (Pillow for JPEG baseline; YBR -> RGB).
  SC_rgb_jpeg_gdcm.dcm (JPEG Lossless) needs a decoder pydicom does not bundle; being
  lossless, it must give exactly SC_rgb_rle.png (the same image), so it gets no PNG.

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
from pydicom.pixels import apply_modality_lut

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
    "image_dfl.dcm",  # 512x512 8-bit gray, deflated
]
# Copied without a PNG: refused with an error, or checked against another file's PNG.
OTHERS = ["MR_truncated.dcm", "rtplan.dcm", "MR_small_jp2klossless.dcm", "SC_rgb_jpeg_gdcm.dcm"]


def percentile_rule(v):
    v = v.astype(np.float32).astype(np.float64)
    lo, hi = np.percentile(v, [0.5, 99.5])
    rng = hi - lo if hi > lo else 1.0
    return np.rint(np.clip((v - lo) / rng * 255.0, 0, 255)).astype(np.uint8)


def range_rule(v, lo, hi):
    v = v.astype(np.float32).astype(np.float64)
    return np.rint(np.clip((v - lo) / (hi - lo) * 255.0, 0, 255)).astype(np.uint8)


def expected(ds):
    arr = ds.pixel_array
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        arr = arr[0]
    if ds.SamplesPerPixel == 3:
        return arr.astype(np.uint8), "rgb"
    plain8 = ds.BitsAllocated == 8 and float(ds.get("RescaleSlope", 1)) == 1 and float(ds.get("RescaleIntercept", 0)) == 0
    if plain8:
        out, how = arr.astype(np.uint8), "8-bit as is"
    else:
        out, how = percentile_rule(apply_modality_lut(arr, ds)), "modality LUT, percentile 0.5..99.5"
    if ds.PhotometricInterpretation == "MONOCHROME1":
        out = 255 - out
    return out, how


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for name in IMAGES + OTHERS:
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
    ds = pydicom.dcmread(OUT / "CT_small.dcm")
    v = apply_modality_lut(ds.pixel_array, ds)
    Image.fromarray(range_rule(v, -160.0, 240.0), "L").save(OUT / "CT_small_window.png")
    (OUT / "reference.json").write_text(json.dumps(meta, indent=1) + "\n")
    shutil.copyfile(pathlib.Path(pydicom.__file__).parent.parent / f"pydicom-{pydicom.__version__}.dist-info" / "licenses" / "LICENSE", OUT / "LICENSE.pydicom")


if __name__ == "__main__":
    main()
