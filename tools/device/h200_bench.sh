#!/usr/bin/env bash
# GPU numbers for issue 6 on the lent H200 (device tool `run`, carry: .gl .devbin/segadapt.xz .devbin/py).
# Usage (repo root on the device machine):  tools/device/h200_bench.sh PHASE   (t1 | t2 | a)
#   t1: MobileSAM training steps, 4 methods;  t2: ViT-B NAS-LoRA / Conv-LoRA / NAS-LoRA+checkpointing
#   a: encoders (vit_t, vit_b, vit_h), prompt→mask, throughput
#   tt: MobileSAM NAS-LoRA alone (PyTorch first, so a lease that ends early still has it)
#   tn: the two NAS-LoRA steps the README table needs, ViT-B and MobileSAM at 1024², in two
#       processes started together: their cold starts (CPU-bound kernel compilation) overlap,
#       then PyTorch runs alone on the same cases
# GPU choice on a several-GPU machine: CUBECL_WGPU_DEFAULT_DEVICE=DiscreteGpu(N) for ours,
# CUDA_VISIBLE_DEVICES for PyTorch (x2_session.sh sets both).
# Each phase: ours (segadapt_bench), then the official PyTorch code on the same cases, then the
# paired table; every process under its own timeout so a phase fits one 10-minute call and a
# run cut short still returns what it measured (both sides write JSON after every case).
set -uo pipefail
phase="${1:-t}"
OUT="${OUT:-/tmp/out}"; mkdir -p "$OUT"
log="$OUT/log_$phase.txt"
if [ -z "${SETUP_DONE:-}" ]; then for f in .gl/*.deb; do dpkg -x "$f" / ; done; ldconfig; fi
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
export PYTHONPATH="$PWD/.devbin/py${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
SEG=/tmp/segadapt
[ -x $SEG ] || { xz -dc .devbin/segadapt.xz > $SEG && chmod +x $SEG; }
{ nvidia-smi --query-gpu=name,memory.total,memory.used,clocks.sm,clocks.max.sm --format=csv
  python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name(0))'; } 2>&1 | tee -a "$log"
ours() { # name, timeout, args...
  local name=$1 t=$2; shift 2
  echo "== ours $name: $*" | tee -a "$log"
  timeout "$t" $SEG --device gpu bench --json "$OUT/ours_$name.json" "$@" >>"$log" 2>&1; echo "rc=$?" | tee -a "$log"
  grep -E "^  (train|encoder|prompt|throughput)/" "$log" | tail -n 3
}
pt() { # name, timeout, args...: the cases ours measured (prompt sub-cases left out)
  local name=$1 t=$2; shift 2
  local cases="${CASES:-}"; [ -n "$cases" ] || cases=$(python3 -c 'import json,sys; print(",".join(r["case"] for r in json.load(open(sys.argv[1]))["records"] if r["case"].count("/") <= 2 and not r["case"].startswith("ops/")))' "$OUT/ours_$name.json" 2>/dev/null)
  echo "== pytorch $name: $cases" | tee -a "$log"
  [ -n "$cases" ] && timeout "$t" python3 tools/bench_pytorch.py --device cuda --cases "$cases" --json "$OUT/pt_$name.json" "$@" >>"$log" 2>&1; echo "rc=$?" | tee -a "$log"
}
merge() { # target, parts...: one report from several runs of ours
  local target=$1; shift
  python3 - "$OUT" "$target" "$@" <<'PY'
import json, os, sys
out, target, parts = sys.argv[1], sys.argv[2], sys.argv[3:]
rep, recs = None, []
for n in parts:
    p = os.path.join(out, f"ours_{n}.json")
    if os.path.exists(p):
        r = json.load(open(p)); rep = rep or r; recs += r["records"]; os.remove(p)
rep = rep or {"tool": "segadapt", "device": "", "threads": 0}
rep["records"] = recs
json.dump(rep, open(os.path.join(out, f"ours_{target}.json"), "w"), indent=1)
PY
}
table() { python3 tools/pair_bench.py "$OUT/pt_$1.json" "$OUT/ours_$1.json" | tee -a "$log"; }
case "$phase" in
  t1) # MobileSAM: every method in one process (uncontended, same warm-up), then PyTorch
    ours t1 200 --sections train --train-models vit_t --methods nas-lora,conv-lora,lora,nas-pc-lora --iters 4 --budget-s 15
    pt t1 90 --iters 4 --budget-s 15
    table t1
    ;;
  t2) # ViT-B at 1024²: NAS-LoRA, Conv-LoRA, NAS-LoRA with gradient checkpointing; then PyTorch
    ours t2a 200 --sections train --train-models vit_b --methods nas-lora,conv-lora --iters 4 --budget-s 15
    ours t2b 90 --sections train --train-models vit_b --methods nas-lora --checkpointing on --iters 3 --budget-s 15
    merge t2 t2a t2b
    pt t2 120 --iters 4 --budget-s 15
    table t2
    ;;
  tn)
    ours tnb ${TNB_S:-420} --sections train --train-models vit_b --methods nas-lora --iters 4 --budget-s 15 &
    sleep 2
    ours tnt ${TNT_S:-300} --sections train --train-models vit_t --methods nas-lora --iters 4 --budget-s 15 &
    if [ -n "${TNM:-}" ]; then # cold start with cubecl's minimal autotuning, for comparison
      sleep 2; CUBECL_AUTOTUNE_LEVEL=minimal ours tnm ${TNT_S:-300} --sections train --train-models vit_t --methods nas-lora --iters 3 --budget-s 10 &
    fi
    wait
    merge tn tnb tnt
    CASES=train/vit_b/nas-lora,train/vit_t/nas-lora pt tn ${TNP_S:-100} --iters 4 --budget-s 15
    table tn
    ;;
  tt) # MobileSAM NAS-LoRA step alone, for a short lease: PyTorch first (seconds), then ours
    CASES=train/vit_t/nas-lora pt tt ${TTP_S:-40} --iters 4 --budget-s 10
    ours tt ${TT_S:-215} --sections train --train-models vit_t --methods nas-lora --iters 5 --budget-s 10
    table tt
    ;;
  a)
    ours a 300 --sections encoder,prompt,throughput --models vit_t,vit_b,vit_h --prompt-models vit_t \
      --throughput-models vit_b --images 8 --prompt-iters 30 --iters 5 --budget-s 20
    pt a 150 --iters 5 --prompt-iters 30 --budget-s 20 --images 8
    table a
    ;;
esac
nvidia-smi --query-gpu=memory.used,clocks.sm --format=csv | tee -a "$log"
