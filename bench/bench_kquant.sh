#!/usr/bin/env bash
# Quantized types' speed (issue 11): numalm next to llama.cpp's llama-bench
# on TinyLlama-shape models (numalm mkmodel --preset 1b --type PRESET), same
# file, same threads, alternating runs, the machine's load printed beside
# every figure; numalm's decode against a read of the same weights by the
# same threads in the same process (run --read-probe, "paired"); then each
# type's matvec against a plain read of the same bytes (bench_kernels,
# kernel and read interleaved).
#
#   bench/bench_kquant.sh [PRESET...]      default: q4_k_m q5_k_m q6_k
#     PRESET: anything `numalm mkmodel --type` takes (q2_k, q3_k_m, q4_k_s,
#     q4_1, iq4_xs, q8_0, ...)
#   env: NUMALM (default build/numalm), BENCH_KERNELS (default next to it),
#        LLAMA_BENCH (default: llama-bench on PATH; without one, numalm only),
#        MODELS (dir for the models; default /tmp/numalm-bench; kept),
#        THREADS (2), N_DECODE (64), N_PROMPT (128), REPS (5),
#        SHAPE (mkmodel --preset: 1b, the default, or tiny for a quick try),
#        KERNEL_TYPES (default: the ten quantized types of issue 11;
#        empty: skip the kernel part)
#
# A rep runs, in this order: numalm decode (a one-word prompt, N_DECODE
# tokens: llama-bench's tg), llama-bench -p N_PROMPT -n N_DECODE -r 1, numalm
# prompt (exactly N_PROMPT prompt tokens, BOS included, in one batch:
# llama-bench's pp), numalm decode with --read-probe (32 tokens; only its
# paired ratio is used). Each run starts from a fully cached model file. The
# ratios are taken within a rep (runs seconds apart); the median and the best
# over the reps are printed: on a shared machine the median is the figure to
# quote, and the load column (1-minute load average before and after the
# rep) says how busy the machine was. A run that fails prints "-" and the
# script goes on.
set -uo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
NUMALM=${NUMALM:-$here/build/numalm}
BENCH_KERNELS=${BENCH_KERNELS:-$(dirname "$NUMALM")/bench_kernels}
LLAMA_BENCH=${LLAMA_BENCH:-$(command -v llama-bench || true)}
MODELS=${MODELS:-/tmp/numalm-bench}
THREADS=${THREADS:-2}
N_DECODE=${N_DECODE:-64}
N_PROMPT=${N_PROMPT:-128}
REPS=${REPS:-5}
SHAPE=${SHAPE:-1b}
KERNEL_TYPES=${KERNEL_TYPES-q2_k q3_k q4_k q5_k q6_k q4_1 q5_0 q5_1 iq4_nl iq4_xs}
presets=("$@")
[ ${#presets[@]} -gt 0 ] || presets=(q4_k_m q5_k_m q6_k)

command -v jq >/dev/null || { echo "bench_kquant: needs jq" >&2; exit 1; }
[ -x "$NUMALM" ] || { echo "bench_kquant: no numalm binary at $NUMALM" >&2; exit 1; }
have_llama=0
[ -n "$LLAMA_BENCH" ] && [ -x "$LLAMA_BENCH" ] && have_llama=1
[ $have_llama = 1 ] || echo "bench_kquant: no llama-bench (set LLAMA_BENCH or PATH): numalm only"
mkdir -p "$MODELS" || exit 1

load() { awk '{print $1}' /proc/loadavg; }
warm() { cat "$1" >/dev/null; }
num() { [[ $1 =~ ^[0-9.eE+-]+$ ]] && [ "$1" != 0 ]; }
# median and largest of the numbers in a list ("-" for failed runs left out),
# printed with format $1
median() { tr ' ' '\n' | grep -E '^[0-9.]+$' | sort -g | awk -v f="%$1" '{v[NR] = $1} END {if (NR) printf f, v[int((NR + 1) / 2)]; else printf "-"}'; }
maxof() { tr ' ' '\n' | grep -E '^[0-9.]+$' | sort -g | awk -v f="%$1" '{m = $1} END {if (NR) printf f, m; else printf "-"}'; }
ratio() { if num "$1" && num "$2"; then jq -n "$1 / $2 * 100 | round / 100"; else echo -; fi; }
fmt() { if num "$2"; then printf "%$1" "$2"; else echo -; fi; }

# numalm run's --json line for prompt $1, $2 tokens generated (more options
# after); empty when the run fails
numalm_run() {
    local p=$1 n=$2
    shift 2
    warm "$model"
    "$NUMALM" run -m "$model" -p "$p" -n "$n" -t "$THREADS" --no-echo --no-progress --json "$@" \
        2>&1 >/dev/null | tail -1 | grep '^{' || true
}
field() { jq -r "$1 // \"-\"" 2>/dev/null <<<"$2" || echo -; }

# A prompt of exactly N_PROMPT tokens, BOS included: digits, which the
# generated SentencePiece vocab spells as one byte token each.
prompt_of_n() {
    local len=$N_PROMPT got=0 i
    for i in 1 2 3 4 5 6; do
        prompt=$(head -c "$len" /dev/zero | tr '\0' '7')
        got=$(field .n_prompt "$(numalm_run "$prompt" 1 --batch "$N_PROMPT")")
        [ "$got" = "$N_PROMPT" ] && return 0
        num "$got" || break
        len=$((len + N_PROMPT - got))
    done
    echo "bench_kquant: cannot make a prompt of $N_PROMPT tokens (got $got)" >&2
    return 1
}

echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'), load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')," \
    "$(ls -d /sys/devices/system/node/node* 2>/dev/null | wc -l) NUMA node(s)"
echo "numalm: $NUMALM ($("$NUMALM" --version 2>/dev/null | head -1)), $THREADS threads"
if [ $have_llama = 1 ]; then
    echo "llama-bench: $LLAMA_BENCH"
    cache=$(dirname "$LLAMA_BENCH")/../CMakeCache.txt
    [ -f "$cache" ] && echo "llama.cpp build flags: $(grep -E '^(GGML_(NATIVE|AVX[A-Z0-9_]*|AMX[A-Z0-9_]*|OPENMP|BLAS)|CMAKE_BUILD_TYPE):' "$cache" |
        sed 's/:[A-Z]*=/=/' | tr '\n' ' ')"
fi
summary=()
for t in "${presets[@]}"; do
    model="$MODELS/$SHAPE-$t.gguf"
    if [ ! -s "$model" ]; then
        echo "bench_kquant: writing $model" >&2
        if ! "$NUMALM" mkmodel "$model.tmp" --preset "$SHAPE" --type "$t" >&2; then
            echo "bench_kquant: mkmodel --type $t failed: skipped" >&2
            rm -f "$model.tmp"
            continue
        fi
        mv "$model.tmp" "$model"
    fi
    if [ -z "${prompt:-}" ]; then prompt_of_n || exit 1; fi
    echo
    echo "== $t ($(stat -c %s "$model") bytes): tg$N_DECODE and pp$N_PROMPT tokens/s"
    [ $have_llama = 1 ] &&
        "$LLAMA_BENCH" -m "$model" -t "$THREADS" -p 0 -n 1 -r 1 -o json 2>/dev/null |
        jq -r '.[0] | "llama.cpp build \(.build_number) (\(.build_commit)), \(.model_type), \(.backends)"' 2>/dev/null
    printf "%4s %11s %9s %9s %6s %9s %9s %6s %7s\n" rep load "numalm tg" "llama tg" ratio \
        "numalm pp" "llama pp" ratio paired
    rtg="" rpp="" ntg="" npp="" ltg="" lpp="" prd=""
    for rep in $(seq "$REPS"); do
        l1=$(load)
        dec=$(field .decode_tok_s "$(numalm_run "the" "$N_DECODE")")
        ldec=- lppv=-
        if [ $have_llama = 1 ]; then
            warm "$model"
            lj=$("$LLAMA_BENCH" -m "$model" -t "$THREADS" -p "$N_PROMPT" -n "$N_DECODE" -r 1 \
                -o json 2>/dev/null)
            ldec=$(field '[.[] | select(.n_gen > 0) | .avg_ts] | first' "$lj")
            lppv=$(field '[.[] | select(.n_prompt > 0) | .avg_ts] | first' "$lj")
        fi
        pp=$(field .prompt_tok_s "$(numalm_run "$prompt" 1 --batch "$N_PROMPT")")
        pr=$(field .read_probe.of_read "$(numalm_run "the" 32 --read-probe)")
        l2=$(load)
        rt=$(ratio "$dec" "$ldec") rp=$(ratio "$pp" "$lppv")
        rtg+=" $rt" rpp+=" $rp" ntg+=" $dec" npp+=" $pp" ltg+=" $ldec" lpp+=" $lppv" prd+=" $pr"
        printf "%4d %11s %9s %9s %6s %9s %9s %6s %7s\n" "$rep" "$l1->$l2" "$(fmt .2f "$dec")" \
            "$(fmt .2f "$ldec")" "$rt" "$(fmt .1f "$pp")" "$(fmt .1f "$lppv")" "$rp" "$(fmt .2f "$pr")"
    done
    line=$(printf "%-7s tg%s: numalm %s, llama %s (medians), ratio median %s best %s; pp%s: numalm %s, llama %s, ratio median %s best %s; decode/paired read median %s" \
        "$t" "$N_DECODE" "$(median .2f <<<"$ntg")" "$(median .2f <<<"$ltg")" \
        "$(median .2f <<<"$rtg")" "$(maxof .2f <<<"$rtg")" "$N_PROMPT" "$(median .1f <<<"$npp")" \
        "$(median .1f <<<"$lpp")" "$(median .2f <<<"$rpp")" "$(maxof .2f <<<"$rpp")" \
        "$(median .2f <<<"$prd")")
    echo "$line"
    summary+=("$line")
done

if [ -n "$KERNEL_TYPES" ] && [ -x "$BENCH_KERNELS" ]; then
    echo
    echo "== matvec of a 2048 x 5632 matrix against a plain read of the same bytes, $THREADS threads (load $(load))"
    for k in $KERNEL_TYPES; do
        "$BENCH_KERNELS" --type "$k" --no-scalar --interleave --only-threads "$THREADS" --time 0.5 2>/dev/null |
            awk -v t="$k" 'NR > 2 && NF >= 7 {printf "%-6s %-12s read %6.2f GB/s  matvec %6.2f GB/s  ratio %.2f  matmat %6.0f tok/s\n", t, $2, $4, $5, $6, $7}'
    done
    echo "(load after: $(load))"
fi

echo
echo "== summary (load average at the end: $(cut -d' ' -f1-3 /proc/loadavg))"
printf '%s\n' "${summary[@]}"
echo
echo "numalm: $NUMALM run -m MODEL -t $THREADS --json -p the -n $N_DECODE (tg);" \
    "-p <$N_PROMPT tokens> -n 1 --batch $N_PROMPT (pp); -p the -n 32 --read-probe (paired)"
[ $have_llama = 1 ] && echo "llama.cpp: $LLAMA_BENCH -m MODEL -t $THREADS -p $N_PROMPT -n $N_DECODE -r 1 -o json"
[ -n "$KERNEL_TYPES" ] && echo "bench_kernels: $BENCH_KERNELS --type T --no-scalar --interleave --only-threads $THREADS --time 0.5"
exit 0
