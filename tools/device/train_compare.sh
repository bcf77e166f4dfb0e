#!/usr/bin/env bash
# Issue 4's real-data comparison on one machine: MobileSAM on the nuclei image, train on the
# top half, evaluate on the bottom half with box and point prompts; base vs LoRA vs NAS-LoRA vs
# NAS-PC-LoRA vs Conv-LoRA, same steps and seed. Writes logs and JSON reports to $OUT.
#   usage: train_compare.sh SEGADAPT_BIN MODEL OUT [STEPS] [DEVICE]
set -uo pipefail
BIN=$1; MODEL=$2; OUT=$3; STEPS=${4:-300}; DEV=${5:-gpu}
HERE=$(cd "$(dirname "$0")/../.." && pwd)
TOP=$HERE/assets/nuclei_halves/top
BOTTOM=$HERE/assets/nuclei_halves/bottom
W=$(mktemp -d)
mkdir -p "$OUT"
for p in box point; do
  "$BIN" --device "$DEV" eval --model "$MODEL" --data "$BOTTOM" --prompt $p --min-area 60 --json "$W/base_$p.json" > "$W/base_$p.log" 2>&1
done
for m in lora nas-lora nas-pc-lora conv-lora; do
  /usr/bin/time -v "$BIN" --device "$DEV" train --model "$MODEL" --data "$TOP" --method $m --steps "$STEPS" --seed 0 \
      --min-area 60 --patience 0 --out "$W/$m.safetensors" > "$W/train_$m.log" 2>&1
  if [ -f "$W/$m.safetensors" ]; then
    for p in box point; do
      "$BIN" --device "$DEV" eval --model "$MODEL" --adapter "$W/$m.safetensors" --data "$BOTTOM" --prompt $p --min-area 60 \
          --json "$W/${m}_$p.json" > "$W/${m}_$p.log" 2>&1
    done
  fi
done
tail -n 30 "$W"/train_*.log
(cd "$W" && tar czf "$OUT/compare.tgz" *.json *.log)
ls -la "$W" "$OUT"
