#!/usr/bin/env bash
# Issue 6 on a several-GPU H200 lease: steady-state training steps at 1024² (--warmup 3), one
# process per GPU so their cold starts (CPU-bound kernel compilation, 16 cores per GPU) overlap
# and their steps don't share a GPU; then the official PyTorch code on the same cases.
#   default: NAS-LoRA, ViT-B on GPU 0 and MobileSAM on GPU 1, with the build FIRST names (wgsl,
#            the default build; spirv = `--features vulkan-spirv`); with 4 GPUs the other build
#            runs beside it on GPUs 2-3
#   PLAN=ckpt_cl: ViT-B NAS-LoRA with gradient checkpointing + MobileSAM Conv-LoRA (WGSL)
#   PLAN=blocks:  ViT-B NAS-LoRA on blocks 8-11 only, without and with checkpointing (WGSL)
# carry: .gl .devbin/segadapt.xz (WGSL build) [.devbin/segadapt_spirv.xz] .devbin/py
#   usage (repo root on the device): [PLAN=..] [FIRST=..] tools/device/compilers.sh
set -uo pipefail
OUT="${OUT:-/tmp/out}"; mkdir -p "$OUT"
for f in .gl/*.deb; do dpkg -x "$f" / ; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
export PYTHONPATH="$PWD/.devbin/py${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
for c in wgsl spirv; do
  src=.devbin/segadapt.xz; [ $c = spirv ] && src=.devbin/segadapt_spirv.xz
  [ -f $src ] && xz -dc $src > /tmp/segadapt_$c && chmod +x /tmp/segadapt_$c
done
ngpu=$(nvidia-smi -L | wc -l); nvidia-smi -L
T=${T_S:-420}
one() { # gpu compiler model [extra bench args]: one training-step case in its own process
  local gpu=$1 c=$2 m=$3; shift 3
  local name="${c}_${m}${SUFFIX:-}"
  CUBECL_WGPU_DEFAULT_DEVICE="DiscreteGpu($gpu)" timeout "$T" /tmp/segadapt_$c --device gpu bench \
    --json "$OUT/ours_$name.json" --sections train --train-models "$m" --methods "${METHOD:-nas-lora}" \
    --iters "${ITERS:-5}" --warmup "${WARMUP:-3}" --budget-s 15 "$@" > "$OUT/log_$name.txt" 2>&1
  echo "$name rc=$? $(grep -cE '^    call' "$OUT/log_$name.txt") calls; $(grep -E 'failed|train/' "$OUT/log_$name.txt" | tail -n 1)"
}
first=${FIRST:-wgsl}; second=spirv; [ "$first" = spirv ] && second=wgsl
if [ "${PLAN:-}" = ckpt_cl ]; then
  # ViT-B NAS-LoRA with gradient checkpointing (the 8 GB memory target) and MobileSAM
  # Conv-LoRA (its GPU routing fix), WGSL build
  SUFFIX=_ckpt one 0 wgsl vit_b --checkpointing on &
  SUFFIX=_cl METHOD=conv-lora one 1 wgsl vit_t &
  cases=train/vit_b/nas-lora+ckpt,train/vit_t/conv-lora
elif [ "${PLAN:-}" = blocks ]; then
  # ViT-B NAS-LoRA on the last 4 blocks only (blocks 0-7 join the frozen prefix), without and
  # with gradient checkpointing: the memory levers the trainer's planner suggests
  SUFFIX=_b8 one 0 wgsl vit_b --blocks 8,9,10,11 &
  SUFFIX=_b8ckpt one 1 wgsl vit_b --blocks 8,9,10,11 --checkpointing on &
  cases=train/vit_b/nas-lora+blocks8-11,train/vit_b/nas-lora+ckpt+blocks8-11
else
  one 0 "$first" vit_b &
  one 1 "$first" vit_t &
  if [ "$ngpu" -ge 4 ]; then one 2 "$second" vit_b & one 3 "$second" vit_t & fi
  cases=train/vit_b/nas-lora,train/vit_t/nas-lora
fi
wait
CUDA_VISIBLE_DEVICES=0 timeout "${TP_S:-90}" python3 tools/bench_pytorch.py --device cuda \
  --cases "$cases" --iters 5 --budget-s 15 --json "$OUT/pt.json" > "$OUT/log_pt.txt" 2>&1
echo "pytorch rc=$?"
for c in wgsl spirv; do # pair_bench takes every report of one build at once
  ls "$OUT"/ours_${c}_*.json >/dev/null 2>&1 && echo "== $c" && python3 tools/pair_bench.py "$OUT/pt.json" "$OUT"/ours_${c}_*.json
done
nvidia-smi --query-gpu=index,memory.used --format=csv
