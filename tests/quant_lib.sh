# Checks of quantized model files from the command line, sourced by
# test_kquant.sh and test_legacy.sh, and the prologue they share: $NUMALM
# and jq or the test is skipped (77), a scratch directory $dir removed on
# exit, pass and fail counts (ok, bad), and quant_finish to print them and
# set the exit status.
set -u
quant_test=$(basename "$0")
if [ -z "${NUMALM:-}" ] || [ ! -x "$NUMALM" ]; then
    echo "skipped: NUMALM is not set to the built numalm binary"
    exit 77
fi
command -v jq >/dev/null || { echo "skipped: jq is needed"; exit 77; }
dir=$(mktemp -d "/tmp/numalm-${quant_test%.sh}.XXXXXX")
trap 'rm -rf "$dir"' EXIT
fails=0
passes=0
ok() { passes=$((passes + 1)); }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }
quant_finish() {
    echo "$quant_test: $passes passed, $fails failed"
    [ "$fails" -eq 0 ]
}

# load_everywhere FILE: loads with --verify (placement and every block's
# scales) in every placement, and generates
load_everywhere() {
    local p
    for p in shard replicate interleave; do
        if "$NUMALM" load -m "$1" --placement $p --verify >"$dir/out" 2>"$dir/err" &&
            grep -q "scales: OK" "$dir/out"; then
            ok
        else
            bad "load --verify $(basename "$1") --placement $p: $(cat "$dir/err")"
        fi
    done
    "$NUMALM" run -m "$1" -p "Once upon a time" -n 8 --temp 0 >"$dir/out" 2>"$dir/err" &&
        ok || bad "run $(basename "$1"): $(cat "$dir/err")"
}

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

# expect_cut_refused FILE BYTES: FILE cut BYTES into the data of its last
# tensor (inside a block) is refused by info and run, naming that tensor
expect_cut_refused() {
    local last name cut
    last=$("$NUMALM" info --json "$1" | jq -r '.tensors | max_by(.offset) | "\(.name) \(.offset)"')
    name=${last% *}
    cut=$((${last#* } + $2))
    head -c $cut "$1" >"$dir/cut.gguf"
    if "$NUMALM" info "$dir/cut.gguf" >/dev/null 2>"$dir/err"; then
        bad "info accepted $(basename "$1") cut inside a block"
    elif grep -q "tensor '$name'.*runs past the end of the file" "$dir/err"; then
        ok
    else
        bad "$(basename "$1") cut: message lacks the tensor '$name': $(cat "$dir/err")"
    fi
    "$NUMALM" run -m "$dir/cut.gguf" -p hi -n 1 >/dev/null 2>"$dir/err" && bad "run accepted a cut file" ||
        { grep -q "tensor '$name'" "$dir/err" && ok || bad "run on a cut file: $(cat "$dir/err")"; }
}
