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
have_llama=0
if [ -n "$LLAMA_BENCH" ] && [ -x "$LLAMA_BENCH" ]; then
    have_llama=1
else
    echo "bench_moe: no llama-bench (put it on PATH or set LLAMA_BENCH): numalm only" >&2
fi
mkdir -p "$MODELS"

# A prompt of about N_PROMPT tokens of the demo vocab.
prompt=""
words=(the cat sat on a mat and 'then' ran far away from home to see big red ball)
while [ $(( ${#prompt} / 3 )) -lt "$N_PROMPT" ]; do
    prompt+="${words[$(( ${#prompt} % ${#words[@]} ))]} "
done

echo "uptime before: $(uptime)"
warm() { cat "$1" >/dev/null; }
numalm_run() {
    warm "$model"
    # shellcheck disable=SC2086
    "$NUMALM" run -m "$model" -p "$prompt" -n "$N_DECODE" -t "$THREADS" -c 512 --no-echo \
        --no-progress --json $EXTRA 2>&1 >/dev/null | tail -1
}
median() { tr ' ' '\n' | grep . | sort -g | awk '{v[NR] = $1} END {print NR ? v[int((NR + 1) / 2)] : 0}'; }

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
        js=$(numalm_run)
        dec=$(jq -r .decode_tok_s <<<"$js")
        pp=$(jq -r .prompt_tok_s <<<"$js")
        wbytes=$(jq -r .weight_bytes_per_token <<<"$js")
        n_prompt=$(jq -r .n_prompt <<<"$js")
        best_dec=$(jq -n "[$best_dec, $dec] | max")
        best_pp=$(jq -n "[$best_pp, $pp] | max")
        if [ $have_llama = 1 ]; then
            warm "$model"
            lj=$("$LLAMA_BENCH" -m "$model" -t "$THREADS" -p "$n_prompt" -n "$N_DECODE" -r 1 \
                 -o json 2>/dev/null)
            ldec=$(jq -r '[.[] | select(.n_gen > 0) | .avg_ts] | first' <<<"$lj")
            lpp=$(jq -r '[.[] | select(.n_prompt > 0) | .avg_ts] | first' <<<"$lj")
            best_ldec=$(jq -n "[$best_ldec, $ldec] | max")
            best_lpp=$(jq -n "[$best_lpp, $lpp] | max")
            ratios+=" $(jq -n "$dec / $ldec")"
        fi
    done
    ratio="-" mratio="-" pratio="-"
    if [ $have_llama = 1 ]; then
        ratio=$(jq -n "$best_dec / $best_ldec * 100 | round / 100")
        mratio=$(jq -n "$(median <<<"$ratios") * 100 | round / 100")
        pratio=$(jq -n "$best_pp / $best_lpp * 100 | round / 100")
    fi
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
