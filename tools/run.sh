#!/usr/bin/env bash
# Fetch the default model (MobileSAM, hash-checked) and start the app.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/fetch_assets.sh
export SEGADAPT_CACHE="${SEGADAPT_CACHE:-$HOME/.cache/segadapt}"
exec cargo run --locked -- "$@"
