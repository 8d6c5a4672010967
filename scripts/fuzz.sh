#!/bin/bash
# Builds the fuzzers (clang, libFuzzer + ASan/UBSan) and runs each on a copy of
# its corpus for FUZZ_SECONDS (default 60), side by side (one core each): the
# GGUF reader on fuzz/corpus, the tokenizers on fuzz/corpus_tokenizer (skipped
# without the vocabs in ../shared/models/vocab). Exits non-zero when a build
# fails or a fuzzer finds a crash, leak, timeout or sanitizer report; the
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
cmake --build "$build" --target fuzz_gguf fuzz_tokenizer -j "$jobs"

build=$(cd "$build" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# run TARGET CORPUS_DIR: -timeout: a single input taking >10 s is a hang;
# -rss_limit_mb: the GGUF reader caps metadata at 512 MiB and the tokenizers
# hold four vocabs (~0.5 GiB), so more than 2 GiB is a bug. Its output goes
# to $work/TARGET.log, shown when it ends.
run() {
    mkdir -p "$work/$1"
    cp "$2"/* "$work/$1"/
    echo "fuzz.sh: running $1 for ${seconds}s on $(ls "$work/$1" | wc -l) seeds"
    "$build/$1" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -max_len=65536 -print_final_stats=1 -artifact_prefix="$build/" "$work/$1" \
        >"$work/$1.log" 2>&1
}

pids=()
names=()
run fuzz_gguf "$src/fuzz/corpus" &
pids+=($!) names+=(fuzz_gguf)
vocab=${NUMALM_SHARED:-$src/../shared}/models/vocab
if [ -f "$vocab/vocab-llama3.gguf" ] && [ -f "$vocab/vocab-qwen3.gguf" ] &&
    [ -f "$vocab/ggml-vocab-llama-spm.gguf" ]; then
    run fuzz_tokenizer "$src/fuzz/corpus_tokenizer" &
    pids+=($!) names+=(fuzz_tokenizer)
else
    echo "fuzz.sh: skipping fuzz_tokenizer: no vocabs in $vocab"
fi
# Each fuzzer's result: its final stats when it passed, its report (the
# end of its log) when it failed.
fail=0
for i in "${!pids[@]}"; do
    if wait "${pids[$i]}"; then
        echo "fuzz.sh: ${names[$i]}: no failure; $(grep -E '^(#[0-9]+.*DONE|Done [0-9]+ runs)' \
            "$work/${names[$i]}.log" | tail -1)"
        grep -E '^stat::' "$work/${names[$i]}.log" | sed "s/^/  ${names[$i]}: /"
    else
        echo "fuzz.sh: ${names[$i]} FAILED (reproducer in $build/):"
        tail -60 "$work/${names[$i]}.log"
        fail=1
    fi
done
exit $fail
