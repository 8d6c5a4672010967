#!/usr/bin/env bash
# Decode and prompt speed of `numalm run` on TinyLlama-shape demo models
# (numalm mkmodel --preset 1b), next to llama.cpp's llama-bench on the same
# files in the same run, and the effective weight bandwidth of a decode step
# against two read-bandwidth probes (bench/membw): threads summing a fresh
# buffer ("of bw"), and threads summing the model file's own page cache
# ("of file"), the very pages a decode with --io auto (and llama.cpp's mmap)
# reads. On the dev VM (docs/benchmarks.md, "Machines") a fresh buffer reads
# at 30 to 57 GB/s depending on where the host put it, so the second is the
# steadier ceiling.
#
# The steadiest of all is the in-process probe: a `numalm run --read-probe`
# run follows each decode step with a read of the same weight bytes by the
# same threads (no compute), and reports the decode GB/s over that read's
# GB/s per pair ("paired": the median over the pairs; the column is the
# median over the REPS runs). The dev VM's bandwidth changes from one second
# to the next, which a probe run in another process cannot follow.
#
#   bench/bench_decode.sh [TYPE...]          default: f16 q8_0 q4_0
#   env: NUMALM (binary; default build/numalm), MEMBW (default next to it),
#        MODELS (dir for the demo models; default /tmp/numalm-bench),
#        THREADS (2), N_DECODE (64), N_PROMPT (64), REPS (3; best run kept),
#        LLAMA_BENCH (llama.cpp's llama-bench; default: llama-bench on PATH;
#        without one only numalm runs),
#        EXTRA (more numalm options, e.g. "--placement interleave"),
#        NEIGHBOUR (a CPU number: a busy loop runs pinned there for the whole
#        run, a noisy neighbour sharing one core with both tools' workers)
# The runs of the two tools alternate, so that a noisy neighbour hurts both,
# each from a fully cached model file (bench/bench_lib.sh says why).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/bench_lib.sh
. "$here/bench/bench_lib.sh"
NUMALM=${NUMALM:-$here/build/numalm}
MEMBW=${MEMBW:-$(dirname "$NUMALM")/membw}
MODELS=${MODELS:-/tmp/numalm-bench}
THREADS=${THREADS:-2}
N_DECODE=${N_DECODE:-64}
N_PROMPT=${N_PROMPT:-64}
REPS=${REPS:-3}
LLAMA_BENCH=${LLAMA_BENCH:-$(command -v llama-bench || true)}
EXTRA=${EXTRA:-}
types=("$@")
[ ${#types[@]} -gt 0 ] || types=(f16 q8_0 q4_0)

command -v jq >/dev/null || { echo "bench_decode: needs jq" >&2; exit 1; }
[ -x "$NUMALM" ] || { echo "bench_decode: no numalm binary at $NUMALM" >&2; exit 1; }
mkdir -p "$MODELS"

if [ -n "${NEIGHBOUR:-}" ]; then
    command -v taskset >/dev/null || { echo "bench_decode: NEIGHBOUR needs taskset" >&2; exit 1; }
    taskset -c "$NEIGHBOUR" sh -c 'while :; do :; done' &
    neighbour=$!
    trap 'kill "$neighbour" 2>/dev/null' EXIT
    echo "neighbour: a busy loop on CPU $NEIGHBOUR for the whole run"
fi

bench_words_prompt

# Read bandwidth: the best of membw runs before and after the models (a
# shared machine gives a low figure when a neighbour is busy).
bw=""
measure_bw() {
    [ -x "$MEMBW" ] || return 0
    local b
    b=$("$MEMBW" -t "$THREADS" --json | jq -r .best_gbps)
    bw=$(jq -n "[${bw:-0}, $b] | max")
}
measure_bw
bench_find_llama bench_decode

report_bw() { [ -z "$bw" ] || echo "membw: $THREADS threads read $bw GB/s (best of the runs so far)"; }
report_bw
printf "\n%-6s %9s %9s %6s %6s %9s %9s %9s %7s %8s %7s %7s %7s\n" type "numalm" "llama" "ratio" \
    "ratio" "np tok/s" "lp tok/s" "GB/s" "of bw" "file GB/s" "of file" "llama" "paired"
printf "%-6s %9s %9s %6s %6s %9s %9s %9s %7s %8s %7s %7s %7s\n" "" "dec tok/s" "dec tok/s" "(best)" \
    "(med)" "(prompt)" "(prompt)" "weights" "" "(read)" "" "of file" "of read"
for t in "${types[@]}"; do
    model="$MODELS/1b-$t.gguf"
    if [ ! -f "$model" ]; then
        echo "bench_decode: writing $model" >&2
        "$NUMALM" mkmodel "$model" --preset 1b --type "$t" >&2
    fi
    best_dec=0 best_pp=0 best_ldec=0 best_lpp=0 wbytes=0 n_prompt=0 best_file=0
    ratios="" paired=""
    for _ in $(seq "$REPS"); do
        # shellcheck disable=SC2119
        bench_rep
        pj=$(numalm_run --read-probe)
        paired+=" $(jq -r .read_probe.of_read <<<"$pj")"
        if [ -x "$MEMBW" ]; then
            warm "$model"
            fbw=$("$MEMBW" -t "$THREADS" --file "$model" --json | jq -r .best_gbps)
            best_file=$(jq -n "[$best_file, $fbw] | max")
        fi
    done
    measure_bw
    gbs=$(jq -n "$best_dec * $wbytes / 1e9")
    pct="-" fpct="-" lfpct="-"
    ratio=$(bench_ratio "$best_dec" "$best_ldec")
    mratio=$(bench_ratio "$(median <<<"$ratios")" 1)
    ppct=$(jq -n "$(median <<<"$paired") * 100 | round")%
    [ -n "$bw" ] && pct=$(jq -n "$gbs / $bw * 100 | round")%
    if [ "$best_file" != 0 ]; then
        fpct=$(jq -n "$gbs / $best_file * 100 | round")%
        [ $have_llama = 1 ] && lfpct=$(jq -n "$best_ldec * $wbytes / 1e9 / $best_file * 100 | round")%
    fi
    printf "%-6s %9.2f %9.2f %6s %6s %9.1f %9.1f %9.2f %7s %8.2f %7s %7s %7s\n" "$t" "$best_dec" \
        "$best_ldec" "$ratio" "$mratio" "$best_pp" "$best_lpp" "$gbs" "$pct" "$best_file" "$fpct" \
        "$lfpct" "$ppct"
done
report_bw
echo
echo "numalm: $NUMALM run -m MODEL -p <$N_PROMPT-ish tokens> -n $N_DECODE -t $THREADS --no-echo $EXTRA"
[ $have_llama = 1 ] && echo "llama.cpp: $LLAMA_BENCH -m MODEL -t $THREADS -p N_PROMPT -n $N_DECODE -r 1"
echo "membw: $MEMBW -t $THREADS [--file MODEL]"
echo "best of $REPS alternating runs ('ratio (med)': median of the runs' numalm/llama.cpp);"
echo "GB/s = decode tok/s x weight bytes read per token; 'of file' = that over the best plain"
echo "read of the model file's page cache; 'paired of read' = median over the runs of"
echo "numalm run --read-probe's of_read (decode steps against reads of the same weights by the"
echo "same threads, alternating in one process)"
