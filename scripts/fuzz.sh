#!/bin/bash
# Builds the GGUF fuzzer (clang, libFuzzer + ASan/UBSan) and runs it on a copy
# of fuzz/corpus for FUZZ_SECONDS (default 60). Exits non-zero when the build
# fails or the fuzzer finds a crash, leak, timeout or sanitizer report; the
# reproducer is then left in the build dir (crash-*, leak-*, timeout-*).
#   usage: scripts/fuzz.sh [BUILD_DIR]      (default: build-fuzz)
set -euo pipefail

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-build-fuzz}
seconds=${FUZZ_SECONDS:-60}
jobs=${FUZZ_BUILD_JOBS:-2}

cc=${CC:-}
if [ -z "$cc" ]; then
    for c in clang clang-14 clang-15 clang-16 clang-17 clang-18; do
        if command -v "$c" >/dev/null; then cc=$c; break; fi
    done
fi
[ -n "$cc" ] || { echo "fuzz.sh: clang is needed for libFuzzer" >&2; exit 2; }

cmake -S "$src" -B "$build" -DCMAKE_C_COMPILER="$cc" -DCMAKE_BUILD_TYPE=Debug \
    -DNUMALM_FUZZ=ON -DNUMALM_SANITIZE=ON >/dev/null
cmake --build "$build" --target fuzz_gguf -j "$jobs"

build=$(cd "$build" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$src"/fuzz/corpus/* "$work"/

echo "fuzz.sh: running fuzz_gguf for ${seconds}s on $(ls "$work" | wc -l) seeds"
# -timeout: a single input taking >10 s is a hang; -rss_limit_mb: the reader
# caps metadata at 512 MiB, so more than 2 GiB is a bug.
"$build/fuzz_gguf" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -max_len=65536 -print_final_stats=1 -artifact_prefix="$build/" "$work"
