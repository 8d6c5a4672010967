#!/usr/bin/env bash
# Tokenizer speed: `numalm tokenize` next to llama.cpp's llama-tokenize on the
# same vocab and the same 1 MiB text, in the same run, runs alternating.
# Both are whole processes that read the vocab, tokenize and print the ids
# (--ids, to /dev/null); each tool's time for the 1 MiB text minus its time
# for a one-word text is its tokenizing time, so that loading the vocab
# (which differs between the tools) is not counted. Both add BOS as the vocab
# says and parse no special tokens; the script first checks that both give
# the same ids for the whole text.
#
# The text: the two BPE vocabs' test strings (.inp, multilingual),
# shared/models/story.txt, then this repository's own docs and C sources
# (git ls-files order), cut at 1 MiB: English prose and C code, little
# repetition.
#
#   bench/bench_tokenize.sh [VOCAB...]    default: vocab-llama3 vocab-qwen3
#   env: NUMALM (default build/numalm), LLAMA_TOKENIZE (llama.cpp's
#        llama-tokenize; default llama-tokenize on PATH), SHARED (default
#        ../shared), REPS (5: the median is kept), TEXT_BYTES (1048576)
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
NUMALM=${NUMALM:-$here/build/numalm}
LLAMA_TOKENIZE=${LLAMA_TOKENIZE:-$(command -v llama-tokenize || true)}
SHARED=${SHARED:-$here/../shared}
REPS=${REPS:-5}
TEXT_BYTES=${TEXT_BYTES:-1048576}
[ -x "$NUMALM" ] || { echo "bench_tokenize: no numalm at $NUMALM (build first)" >&2; exit 1; }
[ -x "$LLAMA_TOKENIZE" ] || {
    echo "bench_tokenize: set LLAMA_TOKENIZE to llama.cpp's llama-tokenize" >&2
    exit 1
}
vocabs=("$@")
[ ${#vocabs[@]} -gt 0 ] || vocabs=(vocab-llama3 vocab-qwen3)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat "$SHARED/models/vocab/vocab-llama3.gguf.inp" "$SHARED/models/vocab/vocab-qwen3.gguf.inp" \
    "$SHARED/models/story.txt" >"$tmp/text"
while [ "$(stat -c %s "$tmp/text")" -lt "$TEXT_BYTES" ]; do
    (cd "$here" && git ls-files '*.md' '*.c' '*.h' | xargs cat) >>"$tmp/text"
done
head -c "$TEXT_BYTES" "$tmp/text" >"$tmp/big.txt"
printf 'Hello' >"$tmp/small.txt"

numalm_cmd() { "$NUMALM" tokenize -m "$1" -f "$2" --ids; }
# --no-escape: llama-tokenize turns \n in its input into a newline by default
llama_cmd() { "$LLAMA_TOKENIZE" -m "$1" -f "$2" --ids --no-parse-special --no-escape --log-disable 2>/dev/null; }

# seconds of one run of CMD MODEL TEXT, output discarded
seconds() {
    local t0 t1
    t0=$(date +%s.%N)
    "$@" >/dev/null
    t1=$(date +%s.%N)
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f\n", b - a }'
}
median() { sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }

echo "## bench_tokenize: $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "uptime: $(uptime)"
echo "text: $(stat -c %s "$tmp/big.txt") bytes; $REPS runs of each, alternating; medians"
printf '%-14s %9s %12s %12s %12s %12s %8s\n' vocab tokens numalm_s llama_s numalm_tok/s llama_tok/s ratio
for v in "${vocabs[@]}"; do
    model=$SHARED/models/vocab/$v.gguf
    numalm_cmd "$model" "$tmp/big.txt" >"$tmp/n.ids"
    llama_cmd "$model" "$tmp/big.txt" >"$tmp/l.ids"
    cmp -s "$tmp/n.ids" "$tmp/l.ids" || {
        echo "bench_tokenize: $v: numalm and llama.cpp give different ids for the text" >&2
        exit 1
    }
    tokens=$(tr -cd ',' <"$tmp/n.ids" | wc -c)
    tokens=$((tokens + 1))
    : >"$tmp/nb" >"$tmp/ns" >"$tmp/lb" >"$tmp/ls"
    for ((r = 0; r < REPS; r++)); do
        seconds numalm_cmd "$model" "$tmp/big.txt" >>"$tmp/nb"
        seconds llama_cmd "$model" "$tmp/big.txt" >>"$tmp/lb"
        seconds numalm_cmd "$model" "$tmp/small.txt" >>"$tmp/ns"
        seconds llama_cmd "$model" "$tmp/small.txt" >>"$tmp/ls"
    done
    n_s=$(awk -v a="$(median <"$tmp/nb")" -v b="$(median <"$tmp/ns")" 'BEGIN { print a - b }')
    l_s=$(awk -v a="$(median <"$tmp/lb")" -v b="$(median <"$tmp/ls")" 'BEGIN { print a - b }')
    awk -v v="$v" -v t="$tokens" -v n="$n_s" -v l="$l_s" 'BEGIN {
        printf "%-14s %9d %12.3f %12.3f %12.0f %12.0f %7.2fx\n", v, t, n, l, t / n, t / l, l / n }'
    echo "  load+print (one-word text), median s: numalm $(median <"$tmp/ns"), llama.cpp $(median <"$tmp/ls")"
done
echo "uptime: $(uptime)"
