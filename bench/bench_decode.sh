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
# The runs of the two tools alternate, so that a noisy neighbour hurts both.
# Each run starts from a fully cached model file (read just before): a
# machine may page out cold page cache that nobody maps (the dev VM's DAMON
# pageout scheme does within ~30-60 s), and then numalm's auto mode copies
# the missing pieces into its arena while llama.cpp faults them from disk.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
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

# A prompt of about N_PROMPT tokens: words of the demo vocab (letters).
prompt=""
words=(the cat sat on a mat and 'then' ran far away from home to see big red ball)
while [ $(( ${#prompt} / 3 )) -lt "$N_PROMPT" ]; do
    prompt+="${words[$(( ${#prompt} % ${#words[@]} ))]} "
done

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
have_llama=0
if [ -n "$LLAMA_BENCH" ] && [ -x "$LLAMA_BENCH" ]; then
    have_llama=1
else
    echo "bench_decode: no llama-bench (put it on PATH or set LLAMA_BENCH): numalm only" >&2
fi

report_bw() { [ -z "$bw" ] || echo "membw: $THREADS threads read $bw GB/s (best of the runs so far)"; }
report_bw
warm() { cat "$1" >/dev/null; }
# numalm run on $model from a warm file; its --json line (extra options in "$@")
numalm_run() {
    warm "$model"
    # shellcheck disable=SC2086
    "$NUMALM" run -m "$model" -p "$prompt" -n "$N_DECODE" -t "$THREADS" --no-echo --no-progress \
        --json $EXTRA "$@" 2>&1 >/dev/null | tail -1
}
median() { tr ' ' '\n' | grep . | sort -g | awk '{v[NR] = $1} END {print NR ? v[int((NR + 1) / 2)] : 0}'; }
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
    ratio="-" mratio="-" pct="-" fpct="-" lfpct="-"
    [ $have_llama = 1 ] && ratio=$(jq -n "$best_dec / $best_ldec * 100 | round / 100")
    [ $have_llama = 1 ] && mratio=$(jq -n "$(median <<<"$ratios") * 100 | round / 100")
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
