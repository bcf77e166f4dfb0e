#!/usr/bin/env bash
# Device: warm speed of the default build (autotune + kernel cache) against the build without
# autotune, same card, same call, nothing else running (issue 14: the no-autotune build meets
# every cold-start target; whether it can be the default depends on this warm cost).
#
# Carry .gl (Vulkan loader debs) and .devbin/both.tar.xz, holding `segadapt` (default build)
# and `segadapt-noat` (`cargo build --no-default-features --features kernel-cache`):
#   tar cf both.tar segadapt segadapt-noat
#   xz -T1 --lzma2=preset=6,dict=320MiB both.tar      # ~38 MB for two stripped binaries
# First each build fills its own kernel cache with one bench process (the autotune build's
# tuning happens there), then the timed processes alternate A B A B on the warm caches.
# Results: $OUT/ab_{default,noat}_{1,2}.json and .log, $OUT/warmup_*.log.
# The autotune build's warm-up takes about 5 min on a fresh H100 (mask 2 min, training step 3
# min), more than fits one call beside the rounds: PHASE=warmup in one call, PHASE=rounds in the
# next, back to back while the machine is still warm (the caches stay in /tmp); default both.
set -u
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
xz -dc .devbin/both.tar.xz | tar x -C /tmp
nvidia-smi -L
ARGS=(--device gpu bench --sections encoder,prompt,train --models vit_t --prompt-models vit_t
  --train-models vit_t --methods "${METHODS:-nas-lora,lora}")
# bench BUILD SECONDS ARGS...: one bench process of that build on its own kernel cache.
bench() {
  local b=$1 limit=$2 bin=/tmp/segadapt; shift 2
  [ "$b" = noat ] && bin=/tmp/segadapt-noat
  SEGADAPT_KERNEL_CACHE=/tmp/kc_$b timeout "$limit" "$bin" "${ARGS[@]}" "$@"
}
cd /tmp
PHASE=${PHASE:-all}
for b in default noat; do
  [ "$PHASE" = rounds ] && break
  bench $b 500 > "$OUT/warmup_$b.log" 2>&1
  echo "warm-up $b: exit $?, $SECONDS s"
done
[ "$PHASE" = warmup ] && exit 0
for round in $(seq 1 "${ROUNDS:-2}"); do
  for b in default noat; do
    bench $b 200 --json "$OUT/ab_${b}_$round.json" > "$OUT/ab_${b}_$round.log" 2>&1
    echo "round $round $b: exit $?, $SECONDS s"
    grep -E '^(encoder|prompt|train)/' "$OUT/ab_${b}_$round.log" | grep -v '/decode/'
  done
done
