#!/bin/bash
# `numalm run` and `numalm perplexity` as a user runs them: the reference
# greedy texts on stdout (with and without the echoed prompt), streaming
# into a pipe, the --json stats, perplexity output, the context limit and
# error messages. Needs $NUMALM and stories260K (skips without it).
set -u
. "$(dirname "$0")/script_lib.sh"
MODEL=$SHARED/models/stories260K.gguf
REF=$SHARED/models/stories260K.greedy.jsonl
STORY=$SHARED/models/story.txt
need_numalm
need_files "$MODEL" "$REF" "$STORY"

# 1. Every reference line, echoed prompt and --no-echo.
n=0
while IFS= read -r line; do
    n=$((n + 1))
    ref_line "$line"
    "$NUMALM" run -m "$MODEL" -p "$prompt" -n "$n_predict" >"$TMP/got" 2>"$TMP/err" || {
        bad "reference line $n: exit status $? ($(cat "$TMP/err"))"
        continue
    }
    if cmp -s "$TMP/got" "$TMP/want"; then ok "reference line $n (echo)"; else
        bad "reference line $n: got '$(cat "$TMP/got")'"; fi
    "$NUMALM" run -m "$MODEL" -p "$prompt" -n "$n_predict" --no-echo >"$TMP/got2" 2>/dev/null
    "$PY" -S -E - "$TMP/want" "$TMP/got2" "$prompt" <<'EOF' && ok "reference line $n (--no-echo)" || bad "reference line $n (--no-echo)"
import sys
want, got, prompt = open(sys.argv[1]).read(), open(sys.argv[2]).read(), sys.argv[3]
sys.exit(0 if want.startswith(prompt) and got == want[len(prompt):] else 1)
EOF
done <"$REF"
[ $n -gt 0 ] || bad "no reference lines in $REF"

# 2. Streams into a pipe that closes early without hanging.
if timeout 60 bash -c "'$NUMALM' run -m '$MODEL' -p 'Once upon a time' -n 400 2>/dev/null | head -c 20 >'$TMP/head'"; then
    [ "$(cat "$TMP/head")" = "Once upon a time, th" ] && ok "pipe into head" || bad "pipe into head: '$(cat "$TMP/head")'"
else
    bad "pipe into head: did not finish"
fi

# 3. --json stats on stderr (last line), text alone on stdout.
"$NUMALM" run -m "$MODEL" -p "Once upon a time" -n 8 --json >"$TMP/out" 2>"$TMP/err"
tail -1 "$TMP/err" | "$PY" -S -E -c '
import json, sys
j = json.loads(sys.stdin.read())
need = ["load_s", "n_prompt", "prompt_tok_s", "n_decode", "decode_tok_s", "io", "placement", "threads", "simd"]
missing = [k for k in need if k not in j]
assert not missing, missing
assert j["n_prompt"] == 5 and j["n_decode"] == 8 and j["stop"] == "length", j
' && ok "--json stats" || bad "--json stats: $(tail -1 "$TMP/err")"
# --read-probe: a read pass after each decode pass, reported as a fraction
# of its bandwidth; the text is the same as without it.
"$NUMALM" run -m "$MODEL" -p "Once upon a time" -n 8 --read-probe --json >"$TMP/out_probe" 2>"$TMP/err"
tail -1 "$TMP/err" | "$PY" -S -E -c '
import json, sys
j = json.loads(sys.stdin.read())
p = j["read_probe"]
assert p["pairs"] == j["n_decode_evals"] == 7, j
assert p["read_bytes"] > 0 and p["read_gb_s"] > 0 and p["decode_gb_s"] > 0, p
assert 0 < p["of_read_q25"] <= p["of_read"] <= p["of_read_q75"], p
' && grep -q "read probe: decode .* GB/s .*% of it" "$TMP/err" && cmp -s "$TMP/out" "$TMP/out_probe" \
    && ok "--read-probe" || bad "--read-probe: $(tail -2 "$TMP/err")"
# The first reference line continues "Once upon a time" for 32 tokens.
LILY="Once upon a time, there was a little girl named Lily. She loved to play outside"
prefix_of_ref() { local o; o=$(cat "$1"); [ ${#o} -gt 16 ] && [ "${LILY#"$o"}" != "$LILY" ]; }
prefix_of_ref "$TMP/out" && ok "stdout holds only text" || bad "stdout: '$(cat "$TMP/out")'"

# 4. Perplexity: running values, then "PPL = X" within 0.1% of llama.cpp's 4.4724.
"$NUMALM" perplexity -m "$MODEL" -f "$STORY" -c 128 --json >"$TMP/ppl" 2>"$TMP/err" || bad "perplexity: exit $?"
"$PY" -S -E - "$TMP/ppl" <<'EOF' && ok "perplexity 4.4724" || bad "perplexity: $(cat "$TMP/ppl")"
import re, sys
lines = open(sys.argv[1]).read().strip().split("\n")
run = [float(x) for x in re.findall(r"\[\d+\]([0-9.]+)", lines[0])]
want = [3.7958, 4.4937, 4.5270, 4.3920, 4.4724]
m = re.fullmatch(r"PPL = ([0-9]+\.[0-9]{4})", lines[-1])
assert m and abs(float(m.group(1)) - 4.4724) / 4.4724 < 0.001, lines[-1]
assert len(run) == 5 and all(abs(a - b) / b < 0.001 for a, b in zip(run, want)), run
EOF
tail -1 "$TMP/err" | grep -q '"n_chunks":5' && ok "perplexity --json" || bad "perplexity --json: $(tail -1 "$TMP/err")"

# 5. The context limit stops generation with a message, text intact.
"$NUMALM" run -m "$MODEL" -p "Once upon a time" -n 50 -c 12 --json >"$TMP/out" 2>"$TMP/err"
rc=$?
# BOS + 4 prompt tokens + 7 generated fill the 12 positions.
if [ $rc = 0 ] && grep -q "context full (12 tokens)" "$TMP/err" && prefix_of_ref "$TMP/out" &&
    tail -1 "$TMP/err" | grep -q '"n_decode":7,.*"stop":"context"'; then
    ok "context limit"
else
    bad "context limit: rc $rc, out '$(cat "$TMP/out")', err '$(cat "$TMP/err")'"
fi

# 5b. --special: "</s>" written in the prompt is the one EOS token, not four
# pieces of text (BOS, "Hi", "</s>", " there": 6 prompt tokens without
# --special are 8).
np_sp=$("$NUMALM" run -m "$MODEL" -p "Hi</s> there" -n 1 --special --json 2>&1 >/dev/null |
    tail -1 | jq .n_prompt)
np_txt=$("$NUMALM" run -m "$MODEL" -p "Hi</s> there" -n 1 --json 2>&1 >/dev/null | tail -1 |
    jq .n_prompt)
n_txt=$("$NUMALM" tokenize -m "$MODEL" -p "Hi</s> there" --ids | tr -cd , | wc -c)
n_sp=$("$NUMALM" tokenize -m "$MODEL" -p "Hi</s> there" --ids --special | tr -cd , | wc -c)
[ "$np_sp" = $((n_sp + 1)) ] && [ "$np_txt" = $((n_txt + 1)) ] && [ "$np_sp" -lt "$np_txt" ] &&
    ok "--special: $np_sp prompt tokens, $np_txt as text" ||
    bad "--special: $np_sp / $np_txt prompt tokens, tokenize says $((n_sp + 1)) / $((n_txt + 1))"

# 6. NUMALM_SIMD caps the kernel level (the command's override of the
# library option): scalar kernels give the same greedy text; a bad value is
# named and ignored.
"$NUMALM" run -m "$MODEL" -p "Once upon a time" -n 8 >"$TMP/out_best" 2>/dev/null
NUMALM_SIMD=scalar "$NUMALM" run -m "$MODEL" -p "Once upon a time" -n 8 --json >"$TMP/out_scalar" 2>"$TMP/err"
tail -1 "$TMP/err" | grep -q '"simd":"scalar"' && cmp -s "$TMP/out_best" "$TMP/out_scalar" &&
    ok "NUMALM_SIMD=scalar" || bad "NUMALM_SIMD=scalar: $(cat "$TMP/out_scalar" "$TMP/err")"
NUMALM_SIMD=sse9 "$NUMALM" run -m "$MODEL" -p "Once upon a time" -n 8 >"$TMP/out_bad" 2>"$TMP/err" &&
    grep -q "NUMALM_SIMD=sse9 is not scalar, avx2, avx512 or amx; ignoring it" "$TMP/err" &&
    ok "NUMALM_SIMD=sse9 ignored with a message" || bad "NUMALM_SIMD=sse9: $(cat "$TMP/err")"

# 7. Errors name the command and what is wrong.
"$NUMALM" run -m "$TMP/nope.gguf" -p hi >/dev/null 2>"$TMP/err" && bad "missing model accepted" ||
    { grep -q "^numalm run: .*nope.gguf" "$TMP/err" && ok "missing model message" || bad "missing model: $(cat "$TMP/err")"; }
"$NUMALM" run -m "$MODEL" >/dev/null 2>"$TMP/err" && bad "no prompt accepted" ||
    { grep -q "^numalm run: no prompt" "$TMP/err" && ok "no prompt message" || bad "no prompt: $(cat "$TMP/err")"; }
"$NUMALM" run -m "$MODEL" -p hi --kv-type q4 >/dev/null 2>"$TMP/err" && bad "bad --kv-type accepted" ||
    { grep -q "kv-type" "$TMP/err" && ok "bad --kv-type message" || bad "--kv-type: $(cat "$TMP/err")"; }
"$NUMALM" perplexity -m "$MODEL" -f "$STORY" -c 2000 >/dev/null 2>"$TMP/err" && bad "short text accepted" ||
    { grep -q "^numalm perplexity: .*fewer than one chunk" "$TMP/err" && ok "short text message" || bad "short text: $(cat "$TMP/err")"; }

finish
