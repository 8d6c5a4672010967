#!/bin/bash
# numalm tokenize on the Llama 3 and Qwen 3 vocabs: ids as llama.cpp's
# llama-tokenize gives them (expected lists from llama-tokenize --ids, with
# --parse-special and --no-parse-special, on the same files and texts), the
# per-token listing, --json, -f, and the refusals.
set -u
: "${NUMALM:?set NUMALM to the built numalm binary}"
shared=${NUMALM_SHARED:-$(dirname "$0")/../../shared}
L3=$shared/models/vocab/vocab-llama3.gguf
Q3=$shared/models/vocab/vocab-qwen3.gguf
[ -f "$L3" ] && [ -f "$Q3" ] || { echo "skipped: no vocabs in $shared/models/vocab"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

expect() { # expect WANT ARGS...: stdout of numalm tokenize ARGS is WANT
    local want=$1 got
    shift
    got=$("$NUMALM" tokenize "$@") || fail "tokenize $*: exit $?"
    [ "$got" = "$want" ] || fail "tokenize $*: got $got, want $want"
    echo "ok: $*"
}

text='<|begin_of_text|>Hello world<|eot_id|>'
expect '[128000, 128000, 9906, 1917, 128009]' -m "$L3" -p "$text" --ids --special
expect '[128000, 27, 91, 7413, 3659, 4424, 91, 29, 9906, 1917, 27, 91, 68, 354, 851, 91, 29]' \
    -m "$L3" -p "$text" --ids
expect '[9906, 1917]' -m "$L3" -p 'Hello world' --ids --no-bos
expect '[151644, 872, 198, 13048, 151645]' -m "$Q3" -p $'<|im_start|>user\nHi<|im_end|>' --ids --special

# the listing: one line a token, control tokens by their piece
out=$("$NUMALM" tokenize -m "$L3" -p 'Hi<|eot_id|>' --special) || fail "listing: exit $?"
[ "$(wc -l <<<"$out")" -eq 3 ] || fail "listing: $out"
grep -q "128009 -> '<|eot_id|>'" <<<"$out" || fail "listing lacks eot: $out"
grep -q "13347 -> 'Hi'" <<<"$out" || fail "listing lacks Hi: $out"

# --json, and -f reads the same text from a file
printf 'Hello world\n' >"$tmp/t.txt"
json=$("$NUMALM" tokenize -m "$Q3" -f "$tmp/t.txt" --json) || fail "json: exit $?"
[ "$(jq -c '[.tokens[].id]' <<<"$json")" = '[9707,1879,198]' ] || fail "json ids: $json"
[ "$(jq -r '.tokens[1].piece' <<<"$json")" = 'Ġworld' ] || fail "json piece: $json"
[ "$(jq -r '.tokens[1].text' <<<"$json")" = ' world' ] || fail "json text: $json"
[ "$(jq -r '.pre + " " + .vocab + " " + (.n_tokens|tostring)' <<<"$json")" = 'qwen2 BPE 3' ] ||
    fail "json header: $json"
echo "ok: --json"

refused() { # refused WANT ARGS...: exit non-zero with WANT in stderr
    local want=$1 err
    shift
    if err=$("$NUMALM" tokenize "$@" 2>&1 >/dev/null); then fail "tokenize $* succeeded"; fi
    grep -qF -- "$want" <<<"$err" || fail "tokenize $*: message lacks '$want': $err"
    echo "ok: refused: $err"
}
refused "no model given" -p x
refused "either -p TEXT or -f FILE" -m "$L3"
refused "either -p TEXT or -f FILE" -m "$L3" -p x -f "$tmp/t.txt"
refused "$tmp/none: cannot open" -m "$L3" -f "$tmp/none"
refused "unknown option '--bogus'" -m "$L3" -p x --bogus
exit 0
