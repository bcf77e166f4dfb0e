#!/usr/bin/env bash
# Issue 4's real-data comparison: MobileSAM on the stardist nuclei image, train on the top half,
# test on the bottom half with box and point prompts; base vs LoRA vs NAS-LoRA vs NAS-PC-LoRA vs
# Conv-LoRA, same steps, same seed. One `segadapt train --test-data` process per method (it
# evaluates base and adapted in the same process, so kernels compile once); the four run at the
# same time when PARALLEL=1 (default), which shares the GPU: their step times are then upper
# bounds, and `segadapt bench` gives the uncontended ones.
#   usage: train_compare.sh SEGADAPT_BIN MODEL OUT [STEPS] [DEVICE]
set -uo pipefail
BIN=$1; MODEL=$2; OUT=$3; STEPS=${4:-300}; DEV=${5:-gpu}
PARALLEL=${PARALLEL:-1}
METHODS=${METHODS:-lora nas-lora nas-pc-lora conv-lora}
HERE=$(cd "$(dirname "$0")/../.." && pwd)
TOP=$HERE/assets/nuclei_halves/top
BOTTOM=$HERE/assets/nuclei_halves/bottom
mkdir -p "$OUT"
W=$(mktemp -d)
one() {
  local m=$1
  /usr/bin/time -v "$BIN" --device "$DEV" train --model "$MODEL" --data "$TOP" --test-data "$BOTTOM" \
      --method "$m" --steps "$STEPS" --seed 0 --min-area 60 --patience 0 \
      --out "$W/$m.safetensors" --report "$OUT/report_$m.json" > "$OUT/train_$m.log" 2>&1
  echo "$m rc=$?"
}
for m in $METHODS; do
  if [ "$PARALLEL" = 1 ]; then one $m & else one $m; fi
done
wait
for m in $METHODS; do
  echo "=== $m"; grep -v "^\s*$" "$OUT/train_$m.log" | grep -E "held-out|^(base|adapted) |step time|Maximum resident|beats|no adapter|chosen|stage" | head -30
done
(cd "$W" && ls -la)
