#!/bin/bash
# numalm info: bad files give one message naming the file and the byte, and
# exit 1; the reference model's --json holds its tensor count and arch.
set -u
: "${NUMALM:?set NUMALM to the built numalm binary}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# little-endian integers as raw bytes
le() { # le BYTES VALUE
    local n=$1 v=$2 i out=""
    for ((i = 0; i < n; i++)); do
        out+=$(printf '\\%03o' $(((v >> (8 * i)) & 255)))
    done
    printf "$out"
}

# expect_refusal FILE SUBSTRING...: exit status 1 and every substring in stderr
expect_refusal() {
    local f=$1 out rc
    shift
    out=$("$NUMALM" info "$f" 2>&1 >/dev/null)
    rc=$?
    [ "$rc" -eq 1 ] || fail "info $f: exit $rc, expected 1 ($out)"
    grep -qF "numalm info: $f" <<<"$out" || fail "info $f: message lacks the file: $out"
    for want in "$@"; do
        grep -qF -- "$want" <<<"$out" || fail "info $f: message lacks '$want': $out"
    done
    echo "ok: $out"
}

printf 'GGUF' >"$tmp/v1.gguf"
le 4 1 >>"$tmp/v1.gguf"
le 8 0 >>"$tmp/v1.gguf"
le 8 0 >>"$tmp/v1.gguf"
expect_refusal "$tmp/v1.gguf" "unsupported GGUF version 1"

printf 'GGML\003\000\000\000' >"$tmp/magic.gguf"
expect_refusal "$tmp/magic.gguf" "not a GGUF file"

# one key announced, none there
{ printf 'GGUF'; le 4 3; le 8 0; le 8 1; } >"$tmp/short.gguf"
expect_refusal "$tmp/short.gguf" "n_kv 1 at byte 16"

# one tensor whose data offset (16) is not a multiple of the alignment (32)
{
    printf 'GGUF'; le 4 3; le 8 1; le 8 0
    le 8 1; printf 'w'; le 4 1; le 8 8; le 4 0; le 8 16   # tensor info at byte 24
    le 4 0                                              # padding to byte 64
    le 8 0; le 8 0; le 8 0; le 8 0; le 8 0; le 8 0      # 48 bytes of data
} >"$tmp/misaligned.gguf"
expect_refusal "$tmp/misaligned.gguf" "tensor 'w' (info at byte 24)" \
    "offset 16 is not a multiple of the alignment 32"

expect_refusal "$tmp/absent.gguf" "cannot open"

"$NUMALM" info >/dev/null 2>&1 && fail "info without a model succeeded"
"$NUMALM" info --help | grep -q "usage: numalm info" || fail "--help"

model="${NUMALM_SHARED:-${NUMALM_SOURCE:-.}/../shared}/models/stories260K.gguf"
if [ ! -f "$model" ]; then
    echo "skipped: $model is absent (the malformed-file checks above passed)"
    exit 77
fi
json=$("$NUMALM" info "$model" --json) || fail "info --json $model failed"
grep -Eq '"n_tensors": ?48[,}]' <<<"$json" || fail "--json lacks \"n_tensors\": 48"
grep -Eq '"architecture": ?"llama"' <<<"$json" || fail "--json lacks \"architecture\": \"llama\""
grep -Eq '"data_offset": ?14176[,}]' <<<"$json" || fail "--json lacks data_offset 14176"
if command -v python3 >/dev/null; then
    python3 -m json.tool <<<"$json" >/dev/null || fail "--json is not valid JSON"
fi
text=$("$NUMALM" info "$model") || fail "info $model failed"
grep -Eq 'vocab size +512' <<<"$text" || fail "text lacks the vocab size"
grep -q 'numalm can run it: yes' <<<"$text" || fail "text says the model cannot run"
echo "ok: stories260K info and --json"
