#!/usr/bin/env bash
# Device: cold-start counts with the kernel-cache build (bench --cold mask,train), first and
# second launch, on the lent GPU.
set -u
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
xz -dc .devbin/segadapt.xz > /tmp/segadapt && chmod +x /tmp/segadapt
nvidia-smi -L
cd /tmp && timeout ${LIMIT:-560} /tmp/segadapt --device gpu bench --cold ${CASES:-mask,train} --cold-dir /tmp/cold \
  --json "$OUT/gpu_cold.json" 2>&1 | grep -v XDG | tee "$OUT/gpu_cold.log" | tail -20
