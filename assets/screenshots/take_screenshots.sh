#!/usr/bin/env bash
# Screenshots of the real app window under Xvfb, one per main screen, driven by the app's
# autopilot (SEGADAPT_AUTOPILOT=annotate|train|ab; see src/app/autopilot.rs).
#
#   assets/screenshots/take_screenshots.sh            # all three, into assets/screenshots/
#   OUT=/tmp/shots TRAIN_WAIT=240 assets/screenshots/take_screenshots.sh train
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
BIN=target/debug/segadapt

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
    esac
done
