#!/bin/bash
# K-quant files from the command line: every preset mkmodel writes loads with
# --verify in every placement and generates; a block whose scale is inf or
# NaN makes --verify fail naming the tensor, row and block; a file cut inside
# a super-block is refused when opened, naming the tensor.
set -u
if [ -z "${NUMALM:-}" ] || [ ! -x "$NUMALM" ]; then
    echo "skipped: NUMALM is not set to the built numalm binary"
    exit 77
fi
command -v jq >/dev/null || { echo "skipped: jq is needed"; exit 77; }
dir=$(mktemp -d /tmp/numalm-test-kquant.XXXXXX)
trap 'rm -rf "$dir"' EXIT
fails=0
passes=0
ok() { passes=$((passes + 1)); }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }

for t in q2_k q3_k_s q3_k_m q3_k_l q4_k_s q4_k_m q5_k_s q5_k_m q6_k; do
    f=$dir/$t.gguf
    "$NUMALM" mkmodel "$f" --type $t >/dev/null 2>"$dir/err" || { bad "mkmodel $t: $(cat "$dir/err")"; continue; }
    for p in shard replicate interleave; do
        if "$NUMALM" load -m "$f" --placement $p --verify >"$dir/out" 2>"$dir/err" &&
            grep -q "scales: OK" "$dir/out"; then
            ok
        else
            bad "load --verify $t --placement $p: $(cat "$dir/err")"
        fi
    done
    "$NUMALM" run -m "$f" -p "Once upon a time" -n 8 --temp 0 >"$dir/out" 2>"$dir/err" &&
        ok || bad "run $t: $(cat "$dir/err")"
done

# byte offset of tensor $2 in file $1
tensor_offset() { "$NUMALM" info --json "$1" | jq -r ".tensors[] | select(.name == \"$2\") | .offset"; }
# poke FILE OFFSET BYTE1 BYTE2: overwrite two bytes
poke() { printf "\\x$3\\x$4" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none; }

# expect_verify_error FILE SUBSTRING: load --verify fails with it
expect_verify_error() {
    "$NUMALM" load -m "$1" --verify >"$dir/out" 2>"$dir/err"
    local rc=$?
    if [ $rc -ne 1 ]; then
        bad "load --verify of a file with a broken scale exited $rc: $(cat "$dir/err")"
    elif ! grep -qF -- "$2" "$dir/err"; then
        bad "load --verify: stderr lacks '$2': $(cat "$dir/err")"
    else
        ok
    fi
}

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
last=$("$NUMALM" info --json "$src" | jq -r '.tensors | max_by(.offset) | "\(.name) \(.offset)"')
name=${last% *}
cut=$((${last#* } + 100))
head -c $cut "$src" >"$dir/cut.gguf"
if "$NUMALM" info "$dir/cut.gguf" >/dev/null 2>"$dir/err"; then
    bad "info accepted a file cut inside a super-block"
elif grep -q "tensor '$name'.*runs past the end of the file" "$dir/err"; then
    ok
else
    bad "a cut file: message lacks the tensor '$name': $(cat "$dir/err")"
fi
"$NUMALM" run -m "$dir/cut.gguf" -p hi -n 1 >/dev/null 2>"$dir/err" && bad "run accepted a cut file" ||
    { grep -q "tensor '$name'" "$dir/err" && ok || bad "run on a cut file: $(cat "$dir/err")"; }

echo "test_kquant.sh: $passes passed, $fails failed"
[ "$fails" -eq 0 ]
