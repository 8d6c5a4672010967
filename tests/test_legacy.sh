#!/bin/bash
# Q4_1, Q5_0, Q5_1, IQ4_NL and IQ4_XS files from the command line: each type
# mkmodel writes loads with --verify in every placement and generates; an
# IQ4_XS file whose rows are not whole super-blocks falls back to IQ4_NL
# where llama-quantize does; a block whose scale or minimum is inf or NaN
# makes --verify fail naming the tensor, row and block; a file cut inside a
# block is refused when opened, naming the tensor. With a llama.cpp build
# (LLAMA_CPP_BIN, else llama-perplexity and llama-quantize on PATH): llama.cpp's
# perplexity on mkmodel's files agrees with numalm's, and the files
# llama-quantize writes for these presets (their mixtures, an IQ4_XS file
# with IQ4_NL fallbacks) load, generate and agree as well.
. "$(dirname "$0")/quant_lib.sh"

types="q4_1 q5_0 q5_1 iq4_nl iq4_xs"
for t in $types; do
    f=$dir/$t.gguf
    "$NUMALM" mkmodel "$f" --type $t >/dev/null 2>"$dir/err" || { bad "mkmodel $t: $(cat "$dir/err")"; continue; }
    load_everywhere "$f"
    "$NUMALM" info "$f" | grep -q "^weights: *mostly ${t^^}$" && ok ||
        bad "info on the $t file: $("$NUMALM" info "$f" | grep weights)"
    # cut inside a block of the last tensor (107 is no multiple of a block)
    expect_cut_refused "$f" 107
done

# rows of 288 values: the IQ4_XS matrices with such rows are IQ4_NL, the
# ones with rows of 768 (ffn_down) stay IQ4_XS, as llama-quantize does
xs=$dir/iq4_xs-288.gguf
if "$NUMALM" mkmodel "$xs" --type iq4_xs --embd 288 >/dev/null 2>"$dir/err"; then
    "$NUMALM" info "$xs" >"$dir/info"
    grep -q "blk.0.attn_q.weight *IQ4_NL" "$dir/info" && grep -q "blk.0.ffn_down.weight *IQ4_XS" "$dir/info" &&
        grep -q "^weights: *mostly IQ4_XS" "$dir/info" && ok || bad "iq4_xs --embd 288: $(cat "$dir/info")"
    load_everywhere "$xs"
else
    bad "mkmodel iq4_xs --embd 288: $(cat "$dir/err")"
fi
# llama-quantize defines no fallback for the 32-value block types
"$NUMALM" mkmodel "$dir/x.gguf" --type q4_1 --ff 784 >/dev/null 2>"$dir/err" &&
    bad "q4_1 with rows of 784 values was written" ||
    { grep -q "Q4_1 rows are 32-element blocks" "$dir/err" && ok || bad "q4_1 --ff 784: $(cat "$dir/err")"; }

# broken scales, each row 256 values (embd of the tiny preset) of ffn_up:
# TYPE BLOCK_BYTES ROW BLOCK BYTE_IN_BLOCK F16 (little-endian bytes)
while read -r t bb row blk at b1 b2; do
    f=$dir/$t.gguf
    [ -s "$f" ] || continue
    off=$(tensor_offset "$f" blk.1.ffn_up.weight)
    cp "$f" "$dir/bad.gguf"
    poke "$dir/bad.gguf" $((off + row * 256 / (bb == 136 ? 256 : 32) * bb + blk * bb + at)) $b1 $b2
    expect_verify_error "$dir/bad.gguf" \
        "tensor 'blk.1.ffn_up.weight' (${t^^}) row $row: block $blk has a scale that is not finite"
done <<'EOF'
q4_1 20 7 2 0 00 7c
q4_1 20 3 5 2 00 7e
q5_0 22 2 7 0 00 fc
q5_1 24 4 1 2 00 7c
iq4_nl 18 6 3 0 01 7e
iq4_xs 136 5 0 0 00 7c
EOF

# ---- llama.cpp, when a build is at hand that runs these files ----------------
bin=${LLAMA_CPP_BIN:-$(dirname "$(command -v llama-perplexity || echo ./none)")}
for i in $(seq 40); do echo "Once upon a time there was a little girl who liked to play."; done >"$dir/text.txt"

# llama_ppl FILE: llama.cpp's perplexity over text.txt (64-token chunks),
# without weight repacking (its AMX kernels trap on VMs that advertise AMX
# without enabling it). llama.cpp logs from a thread that may lose its last
# lines at exit: tried until the last chunk's value shows.
llama_ppl() {
    local try out n
    for try in 1 2 3 4 5; do
        out=$(timeout 300 "$bin/llama-perplexity" -m "$1" -f "$dir/text.txt" -c 64 -b 64 -t 2 --no-repack 2>&1)
        n=$(echo "$out" | sed -n 's/.*perplexity over \([0-9]*\) chunks.*/\1/p')
        [ -n "$n" ] && echo "$out" | grep -o "\[$n\][0-9.]*" | sed 's/.*\]//' | grep . && return 0
    done
    return 1
}
# ppl_agrees FILE: numalm's perplexity within 0.5 % of llama.cpp's
ppl_agrees() {
    local ours theirs
    ours=$("$NUMALM" perplexity -m "$1" -f "$dir/text.txt" -c 64 2>/dev/null | sed -n 's/^PPL = //p')
    theirs=$(llama_ppl "$1")
    if [ -n "$ours" ] && [ -n "$theirs" ] &&
        awk -v a="$ours" -v b="$theirs" 'BEGIN { d = (a - b) / b; exit !(d < 5e-3 && d > -5e-3) }'; then
        echo "$(basename "$1"): PPL $ours, llama.cpp $theirs"
        ok
    else
        bad "$(basename "$1"): numalm PPL '$ours', llama.cpp '$theirs'"
    fi
}

if [ ! -x "$bin/llama-perplexity" ] || [ ! -x "$bin/llama-quantize" ]; then
    echo "note: no llama-perplexity and llama-quantize (set LLAMA_CPP_BIN or PATH): the llama.cpp cross-checks were not run"
elif ! llama_ppl "$dir/q4_1.gguf" >/dev/null; then
    echo "note: llama-perplexity at $bin does not run here: the llama.cpp cross-checks were not run"
else
    for t in $types; do
        ppl_agrees "$dir/$t.gguf"
    done
    ppl_agrees "$xs"
    # llama-quantize's presets (output.weight Q6_K; rows of 288: IQ4_NL
    # fallbacks and a Q8_0 output)
    "$NUMALM" mkmodel "$dir/f16.gguf" --type f16 --seed 5 >/dev/null &&
        "$NUMALM" mkmodel "$dir/f16-288.gguf" --type f16 --seed 5 --embd 288 >/dev/null ||
        bad "mkmodel f16"
    for p in Q4_1 Q5_0 Q5_1 IQ4_NL IQ4_XS IQ4_XS-288; do
        src=$dir/f16.gguf
        [ "$p" = IQ4_XS-288 ] && src=$dir/f16-288.gguf
        q=$dir/llama-$p.gguf
        if ! "$bin/llama-quantize" "$src" "$q" "${p%-288}" >"$dir/quant.log" 2>&1; then
            bad "llama-quantize $p: $(tail -2 "$dir/quant.log")"
            continue
        fi
        "$NUMALM" info "$q" >"$dir/info"
        out=Q6_K
        [ "$p" = IQ4_XS-288 ] && out=Q8_0
        grep -q "^weights: *mostly ${p%-288}$" "$dir/info" && grep -q "output.weight *$out" "$dir/info" &&
            ok || bad "llama-quantize's $p: $(grep -E "weights|output.weight" "$dir/info")"
        load_everywhere "$q"
        ppl_agrees "$q"
    done
    grep -q "blk.0.attn_q.weight *IQ4_NL" "$dir/info" && grep -q "blk.0.ffn_down.weight *IQ4_XS" "$dir/info" &&
        ok || bad "llama-quantize's IQ4_XS with rows of 288: $(cat "$dir/info")"
fi

quant_finish
