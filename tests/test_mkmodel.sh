#!/bin/bash
# numalm mkmodel from the command line: errors exit non-zero with a message,
# output is deterministic and atomic, --json is complete. When a llama.cpp
# build is found (LLAMA_CPP_BIN, else /work/peers/llama.cpp/build/bin), it
# must load and run the tiny model of every type.
set -u
if [ -z "${NUMALM:-}" ] || [ ! -x "$NUMALM" ]; then
    echo "skipped: NUMALM is not set to the built numalm binary"
    exit 77
fi
dir=$(mktemp -d /tmp/numalm-test-mkmodel-sh.XXXXXX)
trap 'rm -rf "$dir"' EXIT
fails=0
passes=0
ok() { passes=$((passes + 1)); }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }

# expect_error STATUS SUBSTRING ARGS...: exits with STATUS, stderr holds SUBSTRING
expect_error() {
    local want_rc=$1 want_msg=$2
    shift 2
    "$NUMALM" mkmodel "$@" >"$dir/out" 2>"$dir/err"
    local rc=$?
    if [ "$rc" -ne "$want_rc" ]; then
        bad "mkmodel $* exited $rc, expected $want_rc"
    elif ! grep -qF -- "$want_msg" "$dir/err"; then
        bad "mkmodel $*: stderr lacks '$want_msg': $(cat "$dir/err")"
    elif ! grep -q "^numalm mkmodel: " "$dir/err"; then
        bad "mkmodel $*: message not prefixed: $(cat "$dir/err")"
    else
        ok
    fi
}

expect_error 2 "unknown option '--bogus'" "$dir/a.gguf" --bogus
expect_error 2 "no output file" --preset tiny
expect_error 2 "--type q5_k" "$dir/a.gguf" --type q5_k
expect_error 2 "unknown preset 'huge'" "$dir/a.gguf" --preset huge
expect_error 2 "--ff 770" "$dir/a.gguf" --type q4_0 --ff 770
expect_error 2 "--heads 7" "$dir/a.gguf" --heads 7
expect_error 2 "too small" "$dir/a.gguf" --size 1K
expect_error 2 "--seed" "$dir/a.gguf" --seed x
expect_error 2 "--embd needs a value" "$dir/a.gguf" --embd
expect_error 2 "give one of them" "$dir/a.gguf" --preset tiny --size 1G
expect_error 1 "$dir/no/such/dir/a.gguf.tmp" "$dir/no/such/dir/a.gguf"
[ ! -e "$dir/a.gguf" ] && ok || bad "a refused command left $dir/a.gguf"

# deterministic, atomic, --json consistent with the file
"$NUMALM" mkmodel "$dir/m1.gguf" --type q8_0 --seed 5 >/dev/null 2>"$dir/err" || bad "mkmodel m1: $(cat "$dir/err")"
"$NUMALM" mkmodel "$dir/m2.gguf" --type=q8_0 --seed=5 --json >"$dir/json" 2>"$dir/err" || bad "mkmodel m2: $(cat "$dir/err")"
cmp -s "$dir/m1.gguf" "$dir/m2.gguf" && ok || bad "same options gave different files"
ls "$dir"/*.tmp >/dev/null 2>&1 && bad "a .tmp file was left behind" || ok
size=$(stat -c %s "$dir/m2.gguf")
grep -q "\"file_bytes\":$size[,}]" "$dir/json" && ok || bad "--json file_bytes is not $size: $(cat "$dir/json")"
grep -q '"type":"Q8_0"' "$dir/json" && grep -q '"blocks":4' "$dir/json" && ok ||
    bad "--json lacks type or shape: $(cat "$dir/json")"
"$NUMALM" mkmodel "$dir/m3.gguf" --type q8_0 --seed 6 >/dev/null 2>&1
cmp -s "$dir/m1.gguf" "$dir/m3.gguf" && bad "another seed gave the same file" || ok
# overrides apply to the preset
"$NUMALM" mkmodel "$dir/o.gguf" --blocks 2 --vocab 1000 --ctx 256 --json >"$dir/json" 2>&1 || bad "overrides: $(cat "$dir/json")"
grep -q '"blocks":2,' "$dir/json" && grep -q '"vocab":1000,' "$dir/json" && grep -q '"n_tensors":21' "$dir/json" &&
    ok || bad "overrides not applied: $(cat "$dir/json")"

# Ctrl-C while writing: exit 130, a message naming the tensor, neither OUT
# nor OUT.tmp left behind
# (a 1b F32 model takes seconds to write, the signal comes after 0.5 s)
"$NUMALM" mkmodel "$dir/int.gguf" --preset 1b --type f32 >/dev/null 2>"$dir/int.err" &
pid=$!
sleep 0.5
kill -INT $pid
wait $pid && rc=0 || rc=$?
if [ $rc -eq 130 ] && grep -q "interrupted while writing tensor '" "$dir/int.err" &&
    [ ! -e "$dir/int.gguf" ] && [ ! -e "$dir/int.gguf.tmp" ]; then
    ok
else
    bad "interrupted mkmodel: rc $rc, left $(ls "$dir"/int.gguf* 2>/dev/null) ($(cat "$dir/int.err"))"
fi

# llama.cpp, when a build is at hand
bin=${LLAMA_CPP_BIN:-/work/peers/llama.cpp/build/bin}
if [ -x "$bin/llama-simple" ]; then
    for t in f32 f16 bf16 q8_0 q4_0; do
        "$NUMALM" mkmodel "$dir/t-$t.gguf" --type $t >/dev/null 2>&1 || { bad "mkmodel --type $t"; continue; }
        if timeout 120 "$bin/llama-simple" -m "$dir/t-$t.gguf" -n 8 "Once upon a time" >"$dir/llama.out" 2>"$dir/llama.err" &&
            grep -q "decoded 8 tokens" "$dir/llama.err"; then
            ok
        else
            bad "llama-simple on the $t model: $(tail -3 "$dir/llama.err")"
        fi
    done
else
    echo "note: no llama.cpp build at $bin: the llama.cpp cross-check was not run"
fi

echo "test_mkmodel.sh: $passes passed, $fails failed"
[ "$fails" -eq 0 ]
