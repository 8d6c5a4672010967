#!/bin/bash
# K-quant files from the command line: every preset mkmodel writes loads with
# --verify in every placement and generates; a block whose scale is inf or
# NaN makes --verify fail naming the tensor, row and block; a file cut inside
# a super-block is refused when opened, naming the tensor. With llama.cpp's
# llama-quantize (LLAMA_CPP_BIN, else on PATH): the file it writes for every
# K-quant preset and for Q4_0 and Q8_0 (mixtures: output.weight Q6_K) loads
# with --verify and generates, info names the preset, and mkmodel's file of
# the same K-quant preset has the same type in every tensor.
. "$(dirname "$0")/quant_lib.sh"

for t in q2_k q3_k_s q3_k_m q3_k_l q4_k_s q4_k_m q5_k_s q5_k_m q6_k; do
    f=$dir/$t.gguf
    "$NUMALM" mkmodel "$f" --type $t >/dev/null 2>"$dir/err" || { bad "mkmodel $t: $(cat "$dir/err")"; continue; }
    load_everywhere "$f"
done

src=$dir/q4_k_m.gguf
# Q4_K ffn_up of block 1: rows are one 144-byte super-block (embd 256); d of
# row 7 set to +inf (F16 0x7c00)
off=$(tensor_offset "$src" blk.1.ffn_up.weight)
cp "$src" "$dir/bad.gguf"
poke "$dir/bad.gguf" $((off + 7 * 144)) 00 7c
expect_verify_error "$dir/bad.gguf" "tensor 'blk.1.ffn_up.weight' (Q4_K) row 7: block 0 has a scale that is not finite"
# dmin (bytes 2..3) of row 3 set to NaN
cp "$src" "$dir/bad.gguf"
poke "$dir/bad.gguf" $((off + 3 * 144 + 2)) 00 7e
expect_verify_error "$dir/bad.gguf" "tensor 'blk.1.ffn_up.weight' (Q4_K) row 3: block 0"
# Q6_K ffn_down of block 3 (768 values a row: 3 blocks of 210 bytes, d in
# the last two): row 5, block 2
off=$(tensor_offset "$src" blk.3.ffn_down.weight)
cp "$src" "$dir/bad.gguf"
poke "$dir/bad.gguf" $((off + 5 * 630 + 2 * 210 + 208)) 00 fc
expect_verify_error "$dir/bad.gguf" "tensor 'blk.3.ffn_down.weight' (Q6_K) row 5: block 2"

# cut inside the first super-block of the last tensor
expect_cut_refused "$src" 100

# ---- llama-quantize's files, when a llama.cpp build is at hand -------------
bin=${LLAMA_CPP_BIN:-$(dirname "$(command -v llama-quantize || echo ./none)")}
types_of() { "$NUMALM" info --json "$1" | jq -r '.tensors[] | "\(.name) \(.type)"' | sort; }
if [ ! -x "$bin/llama-quantize" ]; then
    echo "note: no llama-quantize (set LLAMA_CPP_BIN or PATH): llama-quantize's presets were not checked"
elif ! "$NUMALM" mkmodel "$dir/f16.gguf" --type f16 --seed 7 >/dev/null 2>"$dir/err"; then
    bad "mkmodel f16: $(cat "$dir/err")"
else
    for p in Q2_K Q3_K_S Q3_K_M Q3_K_L Q4_K_S Q4_K_M Q5_K_S Q5_K_M Q6_K Q4_0 Q8_0; do
        q=$dir/llama-$p.gguf
        if ! "$bin/llama-quantize" "$dir/f16.gguf" "$q" $p >"$dir/quant.log" 2>&1; then
            bad "llama-quantize $p: $(tail -2 "$dir/quant.log")"
            continue
        fi
        base=${p%_[SML]}
        name="mostly $base"
        [ "$base" != "$p" ] && name="$name ($p)"
        "$NUMALM" info "$q" | grep -q "^weights: *$name$" && ok ||
            bad "info on llama-quantize's $p: $("$NUMALM" info "$q" | grep weights)"
        if "$NUMALM" load -m "$q" --verify >"$dir/out" 2>"$dir/err" && grep -q "scales: OK" "$dir/out" &&
            "$NUMALM" run -m "$q" -p "Once upon a time" -n 8 --temp 0 >"$dir/out" 2>"$dir/err"; then
            ok
        else
            bad "llama-quantize's $p does not load and run: $(cat "$dir/err")"
        fi
        # (mkmodel's q4_0 and q8_0 are plain types: every matrix of the type)
        [ "$p" = Q4_0 ] || [ "$p" = Q8_0 ] && continue
        m=$(echo "$p" | tr 'A-Z' 'a-z')
        "$NUMALM" mkmodel "$dir/ours.gguf" --type $m --seed 7 >/dev/null 2>&1 &&
            diff <(types_of "$q") <(types_of "$dir/ours.gguf") >"$dir/diff" && ok ||
            bad "mkmodel --type $m differs from llama-quantize $p: $(head -5 "$dir/diff")"
    done
fi

quant_finish
