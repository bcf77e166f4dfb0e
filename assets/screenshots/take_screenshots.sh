#!/usr/bin/env bash
# Screenshots of the real app window under Xvfb, one per main screen, driven by the app's
# autopilot (SEGADAPT_AUTOPILOT=annotate|train|ab; see src/app/autopilot.rs).
#
#   assets/screenshots/take_screenshots.sh            # all three, into assets/screenshots/
#   OUT=/tmp/shots TRAIN_WAIT=240 assets/screenshots/take_screenshots.sh train
#   assets/screenshots/take_screenshots.sh large      # large_tiled + large_tiled_zoom (4000² image)
#
# Needs: xvfb, imagemagick (import, convert), mesa-vulkan-drivers + libvulkan1 (wgpu on lavapipe), and
# the MobileSAM checkpoint in ${SEGADAPT_CACHE:-~/.cache/segadapt}/models (tools/fetch_assets.sh).
# The demo project is created in a scratch cache folder so your own demo stays untouched.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-assets/screenshots}"
SCENES="${*:-annotate train ab}"
DISPLAY_NUM="${DISPLAY_NUM:-:99}"
SIZE="${SIZE:-1360x860}"  # the window's inner size (src/app/mod.rs)
CACHE_SRC="${SEGADAPT_CACHE:-$HOME/.cache/segadapt}"
SCRATCH="${SCRATCH:-$(mktemp -d)}"
mkdir -p "$OUT" "$SCRATCH/models"
ln -sf "$CACHE_SRC/models/mobile_sam.pt" "$SCRATCH/models/mobile_sam.pt"
export SEGADAPT_CACHE="$SCRATCH" XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
cargo build --quiet
BIN="${CARGO_TARGET_DIR:-target}/debug/segadapt"

Xvfb "$DISPLAY_NUM" -screen 0 "${SIZE}x24" -nolisten tcp >/dev/null 2>&1 &
XPID=$!
trap 'kill $XPID 2>/dev/null || true' EXIT
sleep 2
export DISPLAY="$DISPLAY_NUM"

shot() { # scene, seconds to wait, file
    SEGADAPT_AUTOPILOT="$1" "$BIN" >"$SCRATCH/$1.log" 2>&1 &
    local pid=$!
    sleep "$2"
    import -window root "$3.png"
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    # Small files for the README: 1020 px wide JPEG.
    convert "$3.png" -resize 1020x -quality 82 "$3.jpg" && rm "$3.png"
    grep '^frames' "$SCRATCH/$1.log" | tail -n 1 || true
    echo "wrote $3.jpg"
}

for s in $SCENES; do
    case "$s" in
        annotate) shot annotate "${ANNOTATE_WAIT:-150}" "$OUT/annotate" ;;
        train)    SEGADAPT_AUTOPILOT_STEPS="${TRAIN_STEPS:-40}" shot train "${TRAIN_WAIT:-300}" "$OUT/train" ;;
        ab)       SEGADAPT_AUTOPILOT_STEPS="${AB_STEPS:-2}" shot ab "${AB_WAIT:-420}" "$OUT/ab" ;;
        large)
            # A 4000×4000 image: the 512² nuclei image repeated 8×8 (nuclei of 15–30 px).
            # Five nucleus boxes in five different tiles; the last one stays a draft and the
            # zoomed shot centres on it.
            NUC="$CACHE_SRC/data/nuclei_eval/images/img2d.tif"
            [ -f "$NUC" ] || NUC="$CACHE_SRC/data/nuclei/img2d.tif"
            convert "$NUC" -auto-level -depth 8 "$SCRATCH/n8.png"
            convert -size 4000x4000 "tile:$SCRATCH/n8.png" -type TrueColor "$SCRATCH/large.png"
            export SEGADAPT_AUTOPILOT_IMAGE="$SCRATCH/large.png"
            export SEGADAPT_AUTOPILOT_BOXES="566,611,593,642;1800,1211,1835,1232;2861,2942,2894,2970"
            export SEGADAPT_AUTOPILOT_ZOOM="2877,2956,6"
            # One session, two shots: the whole image once the last box has its mask, then
            # the view zoomed on that box (the autopilot says when on stderr).
            SEGADAPT_AUTOPILOT=large "$BIN" >"$SCRATCH/large.log" 2>&1 &
            pid=$!
            for what in ready zoomed; do
                for _ in $(seq "${LARGE_WAIT:-600}"); do
                    grep -q "autopilot: large $what" "$SCRATCH/large.log" && break
                    sleep 1
                done
                sleep 2
                f="$OUT/large_tiled"; [ "$what" = zoomed ] && f="$OUT/large_tiled_zoom"
                import -window root "$f.png"
                convert "$f.png" -resize 1020x -quality 82 "$f.jpg" && rm "$f.png"
                echo "wrote $f.jpg"
            done
            kill "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
            ;;
    esac
done
