#!/usr/bin/env bash
# Two-GPU lease (nvidia-h200-x2): issue 4's Conv-LoRA real-data run on GPU 0 and issue 6's
# NAS-LoRA training-step bench (h200_bench.sh tn) on GPU 1, at the same time, so neither shares
# a GPU with the other (kernel compilation is CPU-side; the host has 32 cores).
# The training run is started in its own session and writes to /tmp/cl, so a call that ends
# before it does can be followed by `x2_session.sh collect` (within the 30 s the machine stays
# warm) to wait for it and fetch its files.
#   usage (repo root on the device): tools/device/x2_session.sh [run|collect]
set -uo pipefail
OUT="${OUT:-/tmp/out}"; mkdir -p "$OUT" /tmp/cl
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
collect() { cp /tmp/cl/*.log /tmp/cl/*.json "$OUT"/ 2>/dev/null; ls -la /tmp/cl; }
if [ "${1:-run}" = collect ]; then
  while pgrep -f "segadapt --device gpu train" >/dev/null; do sleep 5; done
  collect; exit 0
fi
for f in .gl/*.deb; do dpkg -x "$f" / ; done; ldconfig
export SETUP_DONE=1
xz -dc .devbin/segadapt.xz > /tmp/segadapt && chmod +x /tmp/segadapt
xz -dc .devmodel/mobile_sam.pt.xz > /tmp/mobile_sam.pt
nvidia-smi -L
METHODS=${METHODS:-conv-lora}
CUBECL_WGPU_DEFAULT_DEVICE='DiscreteGpu(0)' PARALLEL=0 METHODS="$METHODS" setsid \
  tools/device/train_compare.sh /tmp/segadapt /tmp/mobile_sam.pt /tmp/cl "${STEPS:-300}" gpu \
  > /tmp/cl/compare_stdout.log 2>&1 < /dev/null &
CUBECL_WGPU_DEFAULT_DEVICE='DiscreteGpu(1)' CUDA_VISIBLE_DEVICES=1 tools/device/h200_bench.sh "${PHASE:-tn}"
nvidia-smi --query-gpu=index,memory.used --format=csv
# Give the training run what is left of this call, then hand back what it has so far.
end=$(( $(date +%s) + ${WAIT_S:-60} ))
while pgrep -f "segadapt --device gpu train" >/dev/null && [ "$(date +%s)" -lt "$end" ]; do sleep 5; done
collect
