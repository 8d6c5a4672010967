# shellcheck shell=bash disable=SC2034,SC2153,SC2154
# What the decode benchmarks share (sourced by bench_decode.sh and
# bench_moe.sh): the prompt, a warm model file before each run, one
# alternating rep of `numalm run` and llama-bench, and the median. The
# caller sets NUMALM, THREADS, N_DECODE, N_PROMPT, EXTRA, LLAMA_BENCH and
# `model` before a rep; the results come back in globals.

# A prompt of about N_PROMPT tokens: words of the demo vocab (letters).
bench_words_prompt() {
    local words=(the cat sat on a mat and 'then' ran far away from home to see big red ball)
    prompt=""
    while [ $(( ${#prompt} / 3 )) -lt "$N_PROMPT" ]; do
        prompt+="${words[$(( ${#prompt} % ${#words[@]} ))]} "
    done
}

# have_llama=1 when LLAMA_BENCH names an executable; else a note on stderr.
bench_find_llama() { # script name
    have_llama=0
    if [ -n "$LLAMA_BENCH" ] && [ -x "$LLAMA_BENCH" ]; then
        have_llama=1
    else
        echo "$1: no llama-bench (put it on PATH or set LLAMA_BENCH): numalm only" >&2
    fi
}

# Each run starts from a fully cached model file: a machine may page out
# cold page cache that nobody maps (the dev VM's DAMON pageout scheme does
# within ~30-60 s), and then numalm's auto mode copies the missing pieces
# into its arena while llama.cpp faults them from disk.
warm() { cat "$1" >/dev/null; }

# numalm run on $model from a warm file: its --json line (more options in "$@").
numalm_run() {
    warm "$model"
    # shellcheck disable=SC2086
    "$NUMALM" run -m "$model" -p "$prompt" -n "$N_DECODE" -t "$THREADS" --no-echo --no-progress \
        --json $EXTRA "$@" 2>&1 >/dev/null | tail -1
}

# Middle value of the numbers on stdin (the lower of the two middle ones), 0 for none.
median() { tr ' ' '\n' | grep . | sort -g | awk '{v[NR] = $1} END {print NR ? v[int((NR + 1) / 2)] : 0}'; }

# One rep on $model: numalm run (options in "$@"), then llama-bench on the same
# prompt length. Keeps the best decode and prompt rates of each tool
# (best_dec best_pp best_ldec best_lpp), appends the rep's decode ratio to
# `ratios`, and sets wbytes (weight bytes a decode step reads) and n_prompt.
bench_rep() {
    local js dec pp lj ldec lpp
    js=$(numalm_run "$@")
    dec=$(jq -r .decode_tok_s <<<"$js")
    pp=$(jq -r .prompt_tok_s <<<"$js")
    wbytes=$(jq -r .weight_bytes_per_token <<<"$js")
    n_prompt=$(jq -r .n_prompt <<<"$js")
    best_dec=$(jq -n "[$best_dec, $dec] | max")
    best_pp=$(jq -n "[$best_pp, $pp] | max")
    [ "$have_llama" = 1 ] || return 0
    warm "$model"
    lj=$("$LLAMA_BENCH" -m "$model" -t "$THREADS" -p "$n_prompt" -n "$N_DECODE" -r 1 -o json 2>/dev/null)
    ldec=$(jq -r '[.[] | select(.n_gen > 0) | .avg_ts] | first' <<<"$lj")
    lpp=$(jq -r '[.[] | select(.n_prompt > 0) | .avg_ts] | first' <<<"$lj")
    best_ldec=$(jq -n "[$best_ldec, $ldec] | max")
    best_lpp=$(jq -n "[$best_lpp, $lpp] | max")
    ratios+=" $(jq -n "$dec / $ldec")"
}

# Rounded ratio of two rates, or "-" without llama-bench.
bench_ratio() { [ "$have_llama" = 1 ] && jq -n "$1 / $2 * 100 | round / 100" || echo -; }
