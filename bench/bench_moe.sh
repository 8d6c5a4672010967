#!/usr/bin/env bash
# Mixture-of-experts decode and prompt speed: `numalm run` on the
# Qwen3-30B-A3B-shaped demo model (numalm mkmodel --preset 30b-a3b: its block
# with 128 experts of 768, 8 used per token, in 12 of its 48 blocks) next to
# llama.cpp's llama-bench on the same file, in the same run, the two tools'
# runs alternating (a busy neighbour then hurts both).
#
#   bench/bench_moe.sh [TYPE...]            default: q8_0 q4_k_m
#   env: NUMALM (default build/numalm), MODELS (dir for the models; default
#        /tmp/numalm-bench), THREADS (2), N_DECODE (32), N_PROMPT (64),
#        REPS (3; best and median kept), BLOCKS (12),
#        LLAMA_BENCH (llama.cpp's llama-bench; default: llama-bench on PATH;
#        without one, numalm alone),
#        EXTRA (more numalm options, e.g. "--moe-placement experts")
# Each run starts from a fully cached model file (read just before), as
# bench/bench_decode.sh does. Prints the commands, `uptime` before and
# after, and a table: decode and prompt tok/s of both, their ratio (best of
# the runs and median of the per-run ratios), and the weight bytes a decode
# step reads (active experts only) with the GB/s that makes.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/bench_lib.sh
. "$here/bench/bench_lib.sh"
NUMALM=${NUMALM:-$here/build/numalm}
MODELS=${MODELS:-/tmp/numalm-bench}
THREADS=${THREADS:-2}
N_DECODE=${N_DECODE:-32}
N_PROMPT=${N_PROMPT:-64}
REPS=${REPS:-3}
BLOCKS=${BLOCKS:-12}
LLAMA_BENCH=${LLAMA_BENCH:-$(command -v llama-bench || true)}
EXTRA=${EXTRA:-}
types=("$@")
[ ${#types[@]} -gt 0 ] || types=(q8_0 q4_k_m)

command -v jq >/dev/null || { echo "bench_moe: needs jq" >&2; exit 1; }
[ -x "$NUMALM" ] || { echo "bench_moe: no numalm binary at $NUMALM" >&2; exit 1; }
bench_find_llama bench_moe
mkdir -p "$MODELS"

bench_words_prompt
echo "uptime before: $(uptime)"

printf "\n%-7s %9s %9s %6s %6s %9s %9s %6s %9s %8s\n" type numalm llama ratio ratio "numalm" \
    "llama" ratio "weights" "GB/s"
printf "%-7s %9s %9s %6s %6s %9s %9s %6s %9s %8s\n" "" "dec tok/s" "dec tok/s" "(best)" "(med)" \
    "pp tok/s" "pp tok/s" "(pp)" "per token" "(numalm)"
for t in "${types[@]}"; do
    model="$MODELS/30b-a3b-${BLOCKS}L-$t.gguf"
    if [ ! -f "$model" ]; then
        echo "bench_moe: writing $model" >&2
        "$NUMALM" mkmodel "$model" --preset 30b-a3b --blocks "$BLOCKS" --type "$t" >&2
    fi
    best_dec=0 best_pp=0 best_ldec=0 best_lpp=0 wbytes=0 n_prompt=0 ratios=""
    for _ in $(seq "$REPS"); do
        bench_rep -c 512
    done
    ratio=$(bench_ratio "$best_dec" "$best_ldec")
    pratio=$(bench_ratio "$best_pp" "$best_lpp")
    mratio=$(bench_ratio "$(median <<<"$ratios")" 1)
    printf "%-7s %9.2f %9.2f %6s %6s %9.1f %9.1f %6s %8.0fM %8.2f\n" "$t" "$best_dec" "$best_ldec" \
        "$ratio" "$mratio" "$best_pp" "$best_lpp" "$pratio" "$(jq -n "$wbytes / 1e6")" \
        "$(jq -n "$best_dec * $wbytes / 1e9")"
done
echo
echo "uptime after: $(uptime)"
echo "numalm: $NUMALM run -m MODEL -p <$N_PROMPT-ish tokens> -n $N_DECODE -t $THREADS -c 512 --no-echo $EXTRA"
[ $have_llama = 1 ] && echo "llama.cpp: $LLAMA_BENCH -m MODEL -t $THREADS -p N_PROMPT -n $N_DECODE -r 1"
echo "models: $NUMALM mkmodel MODEL --preset 30b-a3b --blocks $BLOCKS --type TYPE"
echo "best of $REPS alternating runs; 'ratio (med)' the median of the runs' numalm/llama.cpp"
echo "decode ratios; weights per token = what a decode step reads (8 of 128 experts)"
