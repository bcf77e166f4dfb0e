#!/usr/bin/env bash
# Builds the fuzz targets with the same instrumentation as `cargo fuzz build` (libFuzzer
# coverage + AddressSanitizer), on the machine's stable toolchain: RUSTC_BOOTSTRAP=1 lets
# stable rustc take the -Z sanitizer flag when no nightly is installed. Binaries land in
# target/x86_64-unknown-linux-gnu/fuzzing/<target>; run.sh runs them.
set -euo pipefail
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Zsanitizer=address ${RUSTFLAGS:-}"
exec cargo build --manifest-path Cargo.toml --target x86_64-unknown-linux-gnu --profile fuzzing --bins "$@"
