#!/bin/bash
# numalm mkmodel from the command line: errors exit non-zero with a message,
# output is deterministic and atomic, --json is complete. When a llama.cpp
# build is found (LLAMA_CPP_BIN: its bin folder; else where llama-simple on
# PATH is), it must load and run the tiny model of every type.
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
expect_error 2 "--type iq2_xxs" "$dir/a.gguf" --type iq2_xxs
expect_error 2 "unknown preset 'huge'" "$dir/a.gguf" --preset huge
expect_error 2 "--ff 770" "$dir/a.gguf" --type q4_0 --ff 770
expect_error 2 "--heads 7" "$dir/a.gguf" --heads 7
expect_error 2 "too small" "$dir/a.gguf" --size 1K
expect_error 2 "--seed" "$dir/a.gguf" --seed x
expect_error 2 "--embd needs a value" "$dir/a.gguf" --embd
expect_error 2 "give one of them" "$dir/a.gguf" --preset tiny --size 1G
expect_error 2 "--arch gpt2: must be one of llama, qwen2, qwen3" "$dir/a.gguf" --arch gpt2
expect_error 2 "rope_freqs.weight is read by llama only" "$dir/a.gguf" --arch qwen3 --rope-freqs
expect_error 2 "qwen2 needs --head-dim x --heads == --embd" "$dir/a.gguf" --arch qwen2 --head-dim 64
expect_error 2 "--head-dim" "$dir/a.gguf" --head-dim 1
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

# each architecture: what numalm info reads back
"$NUMALM" mkmodel "$dir/q3.gguf" --arch qwen3 --head-dim 64 --tied --json >"$dir/json" 2>&1 || bad "qwen3: $(cat "$dir/json")"
grep -q '"arch":"qwen3"' "$dir/json" && grep -q '"head_dim":64' "$dir/json" && grep -q '"tied":true' "$dir/json" &&
    ok || bad "--arch qwen3 --json: $(cat "$dir/json")"
"$NUMALM" info "$dir/q3.gguf" >"$dir/info" 2>&1
grep -q "qwen3.attention.key_length  *uint32  *64" "$dir/info" && grep -q "blk.3.attn_k_norm.weight" "$dir/info" &&
    ! grep -qE "^ +output\.weight" "$dir/info" && grep -q "numalm can run it: yes" "$dir/info" && ok ||
    bad "qwen3 file as info reads it: $(grep -E 'key_length|can run' "$dir/info")"
"$NUMALM" mkmodel "$dir/q2.gguf" --arch qwen2 >/dev/null 2>&1 && "$NUMALM" info "$dir/q2.gguf" >"$dir/info" 2>&1
grep -q "blk.0.attn_q.bias  *F32  *\[256\]" "$dir/info" && grep -q "numalm can run it: yes" "$dir/info" && ok ||
    bad "qwen2 file lacks its biases: $(grep -E 'bias|can run' "$dir/info")"

# mixtures of experts: the presets and every weight type numalm computes with
"$NUMALM" mkmodel "$dir/moe.gguf" --preset moe-tiny --json >"$dir/json" 2>&1 || bad "moe-tiny: $(cat "$dir/json")"
grep -q '"arch":"qwen3moe"' "$dir/json" && grep -q '"experts":8,"experts_used":2,"ff_exp":128' "$dir/json" &&
    ok || bad "--preset moe-tiny --json: $(cat "$dir/json")"
for t in f32 f16 bf16 q8_0 q4_0 q4_k_m q6_k; do
    "$NUMALM" mkmodel "$dir/moe-$t.gguf" --preset moe-tiny --blocks 1 --type $t >/dev/null 2>"$dir/err" &&
        "$NUMALM" info "$dir/moe-$t.gguf" >"$dir/info" 2>&1 && grep -q "numalm can run it: yes" "$dir/info" &&
        grep -q "blk.0.ffn_down_exps.weight .*\[128, 256, 8\]" "$dir/info" && ok ||
        bad "moe-tiny as $t: $(cat "$dir/err") $(grep -E 'can run|down_exps' "$dir/info")"
done
"$NUMALM" mkmodel "$dir/a3b.gguf" --preset 30b-a3b --type q8_0 --sparse --json >"$dir/json" 2>&1 ||
    bad "30b-a3b: $(cat "$dir/json")"
grep -q '"embd":2048,"blocks":12' "$dir/json" && grep -q '"experts":128,"experts_used":8,"ff_exp":768' "$dir/json" &&
    ok || bad "--preset 30b-a3b --json: $(cat "$dir/json")"
expect_error 2 "qwen3moe needs 1 to 512 experts" "$dir/a.gguf" --preset moe-tiny --experts-used 9

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

# K-quant presets: the mixture and the file type info names
"$NUMALM" mkmodel "$dir/t-q4_k_m.gguf" --type q4_k_m --json >"$dir/json" 2>"$dir/err" || bad "mkmodel q4_k_m: $(cat "$dir/err")"
grep -q '"file_type":"Q4_K_M"' "$dir/json" && ok || bad "--json lacks file_type Q4_K_M: $(cat "$dir/json")"
"$NUMALM" info "$dir/t-q4_k_m.gguf" >"$dir/info" 2>&1
grep -q "^weights: *mostly Q4_K (Q4_K_M)" "$dir/info" && ok || bad "info does not name the preset: $(grep weights "$dir/info")"
grep -q "blk.3.ffn_down.weight *Q6_K" "$dir/info" && grep -q "blk.1.ffn_down.weight *Q4_K" "$dir/info" &&
    grep -q "^  Q6_K  *5 tensors" "$dir/info" && ok || bad "q4_k_m is not llama-quantize's mixture: $(cat "$dir/info")"
"$NUMALM" mkmodel "$dir/t-pure.gguf" --type q4_k --pure >/dev/null 2>&1 && "$NUMALM" info "$dir/t-pure.gguf" | grep -q "^  Q4_K  *30 tensors" &&
    ok || bad "--pure q4_k is not all Q4_K"

# llama.cpp, when a build is at hand that runs llama-quantize's own Q4_K_M
# file (a build that uses instructions this CPU or VM does not run crashes
# on it, which says nothing about mkmodel's files)
bin=${LLAMA_CPP_BIN:-$(dirname "$(command -v llama-simple || echo ./none)")}
for i in $(seq 40); do echo "Once upon a time there was a little girl who liked to play."; done >"$dir/text.txt"
# llama_runs FILE: llama.cpp loads FILE and decodes with it. llama-simple,
# unless it dies of a signal: llama.cpp's repacked (AMX) kernels trap on
# VMs that advertise AMX without enabling it (SIGILL in tilezero, on
# llama-quantize's own files too), so then the same model again without
# repacking, through llama-perplexity --no-repack.
llama_runs() {
    timeout 120 "$bin/llama-simple" -m "$1" -n 8 "Once upon a time" >"$dir/llama.out" 2>"$dir/llama.err"
    local rc=$?
    [ $rc -eq 0 ] && grep -q "decoded 8 tokens" "$dir/llama.err" && return 0
    [ $rc -gt 128 ] && [ -x "$bin/llama-perplexity" ] || return 1
    echo "note: llama-simple died of signal $((rc - 128)) on $(basename "$1"): llama-perplexity --no-repack instead"
    timeout 120 "$bin/llama-perplexity" -m "$1" -f "$dir/text.txt" -c 64 -b 64 --no-repack \
        >"$dir/llama.out" 2>"$dir/llama.err" && cat "$dir/llama.out" "$dir/llama.err" | grep -q '\[1\][0-9]'
    # (the first chunk's perplexity: the final line is sometimes lost from
    # llama.cpp's asynchronous log when the process exits)
}
types="f32 f16 bf16 q8_0 q4_0 q2_k q3_k_s q3_k_m q3_k_l q4_k_s q4_k_m q5_k_s q5_k_m q6_k"
types="$types q4_1 q5_0 q5_1 iq4_nl iq4_xs"
control=${NUMALM_SHARED:-}/models/tiny-kq-q4_k_m.gguf
if [ -x "$bin/llama-simple" ] && [ -r "$control" ] && ! llama_runs "$control"; then
    # a llama.cpp build that dies on its own quantized file even without
    # repacking can check the float types only
    echo "note: llama.cpp at $bin fails on llama-quantize's own $control" \
        "($(tail -1 "$dir/llama.err")): the quantized types were not cross-checked"
    types="f32 f16 bf16"
fi
if [ -x "$bin/llama-simple" ]; then
    for t in $types; do
        "$NUMALM" mkmodel "$dir/t-$t.gguf" --type $t >/dev/null 2>&1 || { bad "mkmodel --type $t"; continue; }
        if llama_runs "$dir/t-$t.gguf"; then
            ok
        else
            bad "llama.cpp on the $t model: $(tail -3 "$dir/llama.err")"
        fi
    done
    # Other architectures: llama.cpp's perplexity on story.txt agrees with
    # numalm's within 0.01 % (F32 weights; qwen2 carries Q/K/V biases, qwen3
    # Q/K norms and a head size that is not embd / heads).
    story=${NUMALM_SHARED:-../shared}/models/story.txt
    if [ -x "$bin/llama-perplexity" ] && [ -r "$story" ]; then
        for arch in "qwen2 --tied" "qwen3 --head-dim 64" "llama --rope-freqs" \
            "qwen3moe --head-dim 64 --experts 8 --experts-used 2 --ff-exp 128"; do
            set -- $arch
            m="$dir/arch-$1.gguf"
            "$NUMALM" mkmodel "$m" --type f32 --blocks 2 --seed 3 --arch $arch >/dev/null 2>&1 || { bad "mkmodel --arch $arch"; continue; }
            ours=$("$NUMALM" perplexity -m "$m" -f "$story" -c 128 2>/dev/null | sed -n 's/^PPL = //p')
            # llama.cpp logs from a thread that may not flush its last lines
            # before exit: try until the final estimate shows up
            theirs=
            for try in 1 2 3 4 5; do
                theirs=$(timeout 300 "$bin/llama-perplexity" -m "$m" -f "$story" -c 128 -b 128 -t 2 2>&1 |
                    sed -n 's/.*Final estimate: PPL = \([0-9.e+]*\).*/\1/p')
                [ -n "$theirs" ] && break
            done
            if [ -n "$ours" ] && [ -n "$theirs" ] &&
                awk -v a="$ours" -v b="$theirs" 'BEGIN { d = (a - b) / b; exit !(d < 1e-4 && d > -1e-4) }'; then
                ok
            else
                bad "--arch $arch: numalm PPL '$ours', llama.cpp '$theirs'"
            fi
        done
    fi
else
    echo "note: no llama.cpp build (set LLAMA_CPP_BIN or put llama-simple on PATH): the llama.cpp cross-check was not run"
fi

echo "test_mkmodel.sh: $passes passed, $fails failed"
[ "$fails" -eq 0 ]
