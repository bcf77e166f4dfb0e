#!/usr/bin/env bash
# GPU numbers for issue 6 on the lent H200 (device tool `run`, carry: .gl .devbin).
# Usage (in the repo root on the device machine):  tools/device/h200_bench.sh PHASE
#   PHASE = a | b | c   (each fits in one 10-minute call; results land in $OUT)
#   a: encoders, prompt→mask, throughput, MobileSAM training steps (4 methods), ours + PyTorch
#   b: ViT-B training steps (4 methods; NAS-LoRA also with gradient checkpointing), ours + PyTorch
#   c: cold start again in fresh processes with the kernel cache that a/b left on disk,
#      and the SPIR-V build when .devbin has one
# .devbin/ holds segadapt_bench*.xz (stripped release builds) and py/ (segment_anything and
# mobile_sam sources, which the device image lacks).
set -uo pipefail
phase="${1:-a}"
OUT="${OUT:-/tmp/out}"; mkdir -p "$OUT"
for f in .gl/*.deb; do dpkg -x "$f" / ; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
export PYTHONPATH="$PWD/.devbin/py${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# One persistent cubecl environment for every process of this machine (kernel-cache builds).
mkdir -p /tmp/cubecl-env
printf '[environment]\npath = { directory = "/tmp/cubecl-env" }\n[compilation]\ncache = true\n' > /tmp/cubecl.toml
cp /tmp/cubecl.toml ./cubecl.toml
BIN=/tmp/segadapt_bench
[ -x $BIN ] || { xz -dc .devbin/segadapt_bench.xz > $BIN && chmod +x $BIN; }
if [ -f .devbin/segadapt_bench_spirv.xz ] && [ ! -x ${BIN}_spirv ]; then xz -dc .devbin/segadapt_bench_spirv.xz > ${BIN}_spirv && chmod +x ${BIN}_spirv; fi
nvidia-smi --query-gpu=name,memory.total,memory.used,clocks.sm --format=csv | tee -a "$OUT/env.txt"
python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name(0))' | tee -a "$OUT/env.txt"
common=(--device gpu --pytorch --pytorch-device cuda --iters 5 --budget-s 40)
case "$phase" in
  a)
    $BIN "${common[@]}" --sections encoder,prompt,throughput,train --models vit_t,vit_b,vit_h \
      --prompt-models vit_t,vit_b --throughput-models vit_t,vit_b --images 8 --prompt-iters 30 \
      --train-models vit_t --json "$OUT/h200_a.json" 2>&1 | tee "$OUT/h200_a.log"
    ;;
  b)
    $BIN "${common[@]}" --sections train --train-models vit_b --checkpointing off \
      --json "$OUT/h200_b.json" 2>&1 | tee "$OUT/h200_b.log"
    $BIN --device gpu --sections train --train-models vit_b --methods nas-lora --checkpointing on --iters 4 \
      --pytorch --pytorch-device cuda --json "$OUT/h200_b_ckpt.json" 2>&1 | tee -a "$OUT/h200_b.log"
    ;;
  c)
    # Fresh processes: only the on-disk kernel/autotune cache survives from the earlier runs.
    $BIN --device gpu --sections encoder,prompt,train --models vit_b --prompt-models vit_b --train-models vit_b \
      --methods nas-lora --iters 3 --json "$OUT/h200_c_cached.json" 2>&1 | tee "$OUT/h200_c.log"
    if [ -x ${BIN}_spirv ]; then
      ${BIN}_spirv --device gpu --sections encoder,prompt,train --models vit_t,vit_b --prompt-models vit_b \
        --train-models vit_b --methods nas-lora --iters 5 --json "$OUT/h200_c_spirv.json" 2>&1 | tee -a "$OUT/h200_c.log"
    fi
    ;;
esac
du -sh /tmp/cubecl-env 2>/dev/null | tee -a "$OUT/env.txt"
