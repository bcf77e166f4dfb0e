#!/usr/bin/env bash
# tools/fuzz/run.sh TARGET SECONDS [libFuzzer args...]: runs one target built by build.sh
# on corpus/TARGET (seeded from tests/fixtures), crashes to artifacts/TARGET/.
set -euo pipefail
cd "$(dirname "$0")"
t="$1"; secs="${2:-300}"; shift 2 || true
mkdir -p "corpus/$t" "artifacts/$t"
case "$t" in
  checkpoint_reader) cp -n ../../tests/fixtures/*.pth "corpus/$t/" 2>/dev/null || true ;;
  image_reader|label_reader) for f in ../../tests/fixtures/*.png ../../assets/demo/nuclei/labels/*.png; do
      [ -f "$f" ] && [ "$(stat -c %s "$f")" -lt 200000 ] && { printf '\x00' | cat - "$f" > "corpus/$t/$(basename "$f")"; }; done ;;
esac
export ASAN_OPTIONS="detect_odr_violation=0:allocator_may_return_null=1:${ASAN_OPTIONS:-}"
exec "target/x86_64-unknown-linux-gnu/fuzzing/$t" "corpus/$t" -artifact_prefix="artifacts/$t/" \
  -max_total_time="$secs" -rss_limit_mb=4096 -print_final_stats=1 "$@"
