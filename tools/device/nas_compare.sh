#!/usr/bin/env bash
# Issue 13's held-out comparison on the device: one `segadapt train --test-data` process per
# job, all at once (they share the GPU; kernel compilation is CPU-side), each in its own
# session so a later call can collect them. Results: /tmp/cmp/<job>.json (report) + .log.
#
#   usage (repo root on the device):
#     tools/device/nas_compare.sh prep            unpack loaders, model and .devdata into /tmp
#                                                 (a call of its own when the carry limit
#                                                 cannot hold model and binary together)
#     tools/device/nas_compare.sh run JOBFILE     start every job of JOBFILE, return at once
#     tools/device/nas_compare.sh wait SECONDS    wait until all jobs end or SECONDS pass,
#                                                 then pack /tmp/cmp into $OUT/cmp.tgz
# JOBFILE lines: NAME TRAIN_DIR TEST_DIR ARGS... (ARGS go to `segadapt train` as they are,
# e.g. `--method lora --seed 1`); '#' starts a comment.
# Needs carried: .gl (Vulkan loader debs), .devmodel/mobile_sam.pt.xz and .devdata (prep);
# .devbin/segadapt.xz (run). Data dirs in JOBFILE may name /tmp/devdata/<set>.
set -uo pipefail
CMP=/tmp/cmp
mkdir -p "$CMP"
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
# Keep every compiled shader in NVIDIA's disk cache (it shortens later cold starts).
export __GL_SHADER_DISK_CACHE_SIZE=${__GL_SHADER_DISK_CACHE_SIZE:-10737418240}
export __GL_SHADER_DISK_CACHE_SKIP_CLEANUP=1
export __GL_SHADER_DISK_CACHE_PATH=${__GL_SHADER_DISK_CACHE_PATH:-/tmp/glcache}
mkdir -p "$__GL_SHADER_DISK_CACHE_PATH"

prep() {
  for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
  [ -f /tmp/mobile_sam.pt ] || xz -dc .devmodel/mobile_sam.pt.xz > /tmp/mobile_sam.pt
  [ -d .devdata ] && { rm -rf /tmp/devdata; cp -r .devdata /tmp/devdata; }
  ls -la /tmp/mobile_sam.pt /tmp/devdata
}

case "${1:-}" in
prep) prep ;;
run)
  ldconfig -p | grep -q libvulkan || prep
  if [ -f .devbin/segadapt.xz ]; then xz -dc .devbin/segadapt.xz > /tmp/segadapt && chmod +x /tmp/segadapt; fi
  nvidia-smi -L
  while read -r name train test args; do
    [ -z "$name" ] || [ "${name:0:1}" = "#" ] && continue
    # shellcheck disable=SC2086
    setsid /usr/bin/time -v /tmp/segadapt --device gpu train --model /tmp/mobile_sam.pt \
      --data "$train" --test-data "$test" --min-area 60 \
      --out "$CMP/$name.safetensors" --report "$CMP/$name.json" $args \
      > "$CMP/$name.log" 2>&1 < /dev/null &
    echo "started $name: $args"
  done < "$2"
  ;;
wait)
  end=$(( $(date +%s) + ${2:-500} ))
  while pgrep -f "segadapt --device gpu train" >/dev/null && [ "$(date +%s)" -lt "$end" ]; do
    sleep 10
  done
  echo "running: $(pgrep -fc 'segadapt --device gpu train')"
  for l in "$CMP"/*.log; do
    printf '%s: %s\n' "$(basename "$l" .log)" "$(grep -aoE '^step [0-9]+: .{0,40}|held-out.*|no adapter.*|Error.*' "$l" | tail -1)"
  done
  tar czf "$OUT/cmp.tgz" -C "$CMP" $(cd "$CMP" && ls *.json *.log 2>/dev/null)
  du -sh "$__GL_SHADER_DISK_CACHE_PATH"
  ls -la "$OUT"
  ;;
*)
  echo "usage: $0 prep | run JOBFILE | wait SECONDS" >&2; exit 2 ;;
esac
