#!/usr/bin/env bash
# Issue 13's held-out comparison: one `segadapt train --test-data` process per job (it
# evaluates base and adapted on the test set with box and point prompts in the same process),
# then `segadapt export --timing-runs` on the written adapter (inference time against the base
# encoder). Results: $CMP/<job>.json (train report), <job>.merged.json (export + timing), .log.
# Tables: python3 tools/nas_compare_report.py $CMP
#
#   tools/device/nas_compare.sh all [PAR]        the whole comparison in one command: a
#                                                prewarm, then every method × seeds 0-2 ×
#                                                every data set, at most PAR jobs at once
#                                                (default 4), waits for all
#   tools/device/nas_compare.sh plan             print that job list
#   tools/device/nas_compare.sh run JOBFILE      start every job of JOBFILE at once, each in
#                                                its own session, and return (device calls)
#   tools/device/nas_compare.sh wait SECONDS     wait for started jobs, pack $CMP into $OUT
#   tools/device/nas_compare.sh prep             device only: unpack the carried Vulkan
#                                                loaders, model and .devdata into /tmp
#   tools/device/nas_compare.sh prewarm ARGS...  one short training run (6 steps, test set
#                                                evaluated) that fills a kernel cache; `run`
#                                                then gives every job a copy of it, so no job
#                                                autotunes on a GPU shared with the others
# JOBFILE lines: NAME TRAIN_DIR TEST_DIR ARGS... (ARGS go to `segadapt train` as they are);
# NAME is <set>_<method>_s<seed>, which the report script reads; '#' starts a comment.
# Environment: SEGADAPT_BIN (default /tmp/segadapt, else target/release or target/debug),
# MODEL (default /tmp/mobile_sam.pt, else ~/.cache/segadapt/models/mobile_sam.pt),
# DATA (held-out sets from tools/fetch_heldout.sh; default /tmp/devdata, else the cache),
# DEVICE (gpu), CMP (/tmp/cmp).
set -uo pipefail
CMP=${CMP:-/tmp/cmp}
mkdir -p "$CMP"
CACHE=${SEGADAPT_CACHE:-$HOME/.cache/segadapt}
DEVICE=${DEVICE:-gpu}
if [ -d /usr/local/nvidia/share/vulkan ]; then
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
fi
# Keep every compiled shader in NVIDIA's disk cache (it shortens later cold starts).
export __GL_SHADER_DISK_CACHE_SIZE=${__GL_SHADER_DISK_CACHE_SIZE:-10737418240}
export __GL_SHADER_DISK_CACHE_SKIP_CLEANUP=1

# Peak memory per run where GNU time exists.
TIME=""; [ -x /usr/bin/time ] && TIME="/usr/bin/time -v"
pick() { for p in "$@"; do [ -e "$p" ] && { echo "$p"; return; }; done; echo "$1"; }
BIN=${SEGADAPT_BIN:-$(pick /tmp/segadapt target/release/segadapt target/debug/segadapt)}
MODEL=${MODEL:-$(pick /tmp/mobile_sam.pt "$CACHE/models/mobile_sam.pt")}
DATA=${DATA:-$(pick /tmp/devdata "$CACHE/data")}

prep() {
  for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
  [ -f /tmp/mobile_sam.pt ] || xz -dc .devmodel/mobile_sam.pt.xz > /tmp/mobile_sam.pt
  [ -d .devdata ] && { rm -rf /tmp/devdata; cp -r .devdata /tmp/devdata; }
  ls -la /tmp/mobile_sam.pt /tmp/devdata
}

# job NAME TRAIN TEST ARGS...: train, then time the written adapter against the base encoder.
job() {
  local name=$1 train=$2 test=$3; shift 3
  # One kernel cache per job, started as a copy of the pre-warmed one where `prewarm` ran:
  # concurrent jobs writing one cache would each still tune what the others had not finished,
  # and the job's export then reuses what its training tuned.
  export SEGADAPT_KERNEL_CACHE="$CMP/kernels/$name"
  if [ -d "$CMP/kernels/_warm" ] && [ ! -e "$SEGADAPT_KERNEL_CACHE" ]; then
    cp -r "$CMP/kernels/_warm" "$SEGADAPT_KERNEL_CACHE"
  fi
  {
    $TIME "$BIN" --device "$DEVICE" train --model "$MODEL" --data "$train" \
      --test-data "$test" --min-area 60 --out "$CMP/$name.safetensors" \
      --report "$CMP/$name.json" "$@"
    if [ -f "$CMP/$name.safetensors" ]; then
      "$BIN" --device "$DEVICE" export --model "$MODEL" --adapter "$CMP/$name.safetensors" \
        --merged "$CMP/$name.merged.safetensors" --drop-side-branches --timing-runs 5
      rm -f "$CMP/$name.merged.safetensors"
    fi
  } > "$CMP/$name.log" 2>&1 < /dev/null
}

# On the device: Vulkan loaders present, and the carried binary (if any) unpacked as BIN.
device_bin() {
  [ -d /usr/local/nvidia ] && { ldconfig -p | grep -q libvulkan || prep; }
  if [ -f .devbin/segadapt.xz ]; then
    xz -dc .devbin/segadapt.xz > /tmp/segadapt && chmod +x /tmp/segadapt; BIN=/tmp/segadapt
  fi
}

# prewarm ARGS...: a 6-step run on the nuclei halves (test set evaluated, so the inference
# kernels are tuned too) into $CMP/kernels/_warm, which every later job copies.
prewarm() {
  local start; start=$(date +%s)
  SEGADAPT_KERNEL_CACHE="$CMP/kernels/_warm" $TIME "$BIN" --device "$DEVICE" train \
    --model "$MODEL" --data assets/nuclei_halves/top --test-data assets/nuclei_halves/bottom \
    --min-area 60 --steps 6 --val-every 3 --out "$CMP/_prewarm.safetensors" \
    --report "$CMP/_prewarm.json" "$@" > "$CMP/_prewarm.log" 2>&1 < /dev/null
  echo "prewarm: exit $?, $(( $(date +%s) - start )) s"; tail -5 "$CMP/_prewarm.log"
}

plan() {
  local seeds="0 1 2"
  local sets="N:assets/nuclei_halves/top:assets/nuclei_halves/bottom
B:$DATA/buildings_left:$DATA/buildings_right
C:$DATA/bacteria_train:$DATA/bacteria_test"
  for s in $sets; do
    IFS=: read -r set train test <<< "$s"
    for m in decoder-only lora nas-lora nas-pc-lora conv-lora; do
      for seed in $seeds; do
        echo "${set}_${m}_s${seed} $train $test --method $m --seed $seed"
      done
    done
  done
}

collect() {
  echo "running: $(pgrep -fc "segadapt --device $DEVICE (train|export)")"
  for l in "$CMP"/*.log; do
    printf '%s: %s\n' "$(basename "$l" .log)" \
      "$(grep -aoE '^step [0-9]+: .{0,40}|held-out.*|no adapter.*|inference .*|Error.*|panicked.*' "$l" | tail -1)"
  done
  if [ -n "${OUT:-}" ]; then
    tar czf "$OUT/cmp.tgz" -C "$CMP" $(cd "$CMP" && ls *.json *.log 2>/dev/null)
    ls -la "$OUT"
  fi
}

case "${1:-}" in
prep) prep ;;
prewarm) shift; device_bin; prewarm "$@" ;;
plan) plan ;;
run)
  device_bin
  nvidia-smi -L 2>/dev/null
  while read -r name train test args; do
    [ -z "$name" ] || [ "${name:0:1}" = "#" ] && continue
    # shellcheck disable=SC2086
    setsid bash -c "$(declare -f job); TIME='$TIME' BIN='$BIN' MODEL='$MODEL' CMP='$CMP' DEVICE='$DEVICE' job $name $train $test $args" \
      >/dev/null 2>&1 </dev/null &  # not the caller's stdout: a pipe reader would wait for every job
    echo "started $name: $args"
  done < "$2"
  ;;
all)
  par=${2:-4}
  prewarm
  plan | {
    while read -r name train test args; do
      while [ "$(jobs -rp | wc -l)" -ge "$par" ]; do sleep 5; done
      # shellcheck disable=SC2086
      job "$name" "$train" "$test" $args &
      echo "started $name"
    done
    wait
  }
  collect
  python3 "$(dirname "$0")/../nas_compare_report.py" "$CMP"
  ;;
wait)
  end=$(( $(date +%s) + ${2:-500} ))
  while pgrep -f "segadapt --device $DEVICE (train|export)" >/dev/null && [ "$(date +%s)" -lt "$end" ]; do
    sleep 10
  done
  collect
  ;;
*)
  echo "usage: $0 all [PAR] | plan | run JOBFILE | wait SECONDS | prep | prewarm ARGS..." >&2; exit 2 ;;
esac
