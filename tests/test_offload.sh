#!/bin/bash
# -ngl and --gpu as a user runs them, through the device interface's CPU
# implementation (--gpu cpu), which runs the offloaded blocks with the CPU
# reference code: the greedy texts and the perplexity equal the CPU run's
# for every split, `load --gpu` reports the upload (text and --json),
# --verify hashes every tensor on the device, and bad values give clear
# errors. The same checks on a real GPU are in test_gpu.sh.
set -u
. "$(dirname "$0")/script_lib.sh"
MODEL=$SHARED/models/stories260K.gguf
REF=$SHARED/models/stories260K.greedy.jsonl
STORY=$SHARED/models/story.txt
need_numalm
need_files "$MODEL" "$REF" "$STORY"

# 1. Greedy text: every reference line, all blocks + LM head on the device,
# and half of the blocks (the LM head on the CPU).
n=0
while IFS= read -r line; do
    n=$((n + 1))
    ref_line "$line"
    for ngl in all 2; do
        if "$NUMALM" run -m "$MODEL" -p "$prompt" -n "$n_predict" -ngl $ngl --gpu cpu >"$TMP/got" 2>"$TMP/err" &&
            cmp -s "$TMP/got" "$TMP/want"; then
            ok "reference line $n, -ngl $ngl"
        else
            bad "reference line $n, -ngl $ngl: '$(cat "$TMP/got")' $(tail -2 "$TMP/err")"
        fi
    done
done <"$REF"
[ $n -gt 0 ] || bad "no reference lines in $REF"

# 2. The run report names the device and the split.
"$NUMALM" run -m "$MODEL" -p "Once upon a time" -n 4 -ngl 3 --gpu cpu:0 --json >/dev/null 2>"$TMP/err"
tail -1 "$TMP/err" | "$PY" -S -E -c '
import json, sys
g = json.loads(sys.stdin.read())["gpu"]
assert g["device"] == "cpu" and g["layers"] == 3 and g["head"] is False, g
assert g["device_node"] == 0 and g["staging_node"] == 0 and g["upload_bytes"] > 0, g
' && grep -q "gpu: 3 blocks on cpu device 0" "$TMP/err" && ok "run --json gpu fields" ||
    bad "run --json gpu: $(cat "$TMP/err")"

# 3. Perplexity: the same figures with every block on the device.
"$NUMALM" perplexity -m "$MODEL" -f "$STORY" -c 128 >"$TMP/ppl_cpu" 2>/dev/null
"$NUMALM" perplexity -m "$MODEL" -f "$STORY" -c 128 -ngl all --gpu cpu >"$TMP/ppl_dev" 2>"$TMP/err"
if [ -s "$TMP/ppl_cpu" ] && cmp -s "$TMP/ppl_cpu" "$TMP/ppl_dev"; then
    ok "perplexity equal ($(tail -1 "$TMP/ppl_dev"))"
else
    bad "perplexity: cpu '$(tail -1 "$TMP/ppl_cpu")', device '$(tail -1 "$TMP/ppl_dev")' $(tail -1 "$TMP/err")"
fi

# 4. load --gpu: the text report, then --json with --verify.
"$NUMALM" load -m "$MODEL" --gpu cpu --verify --gpu-slot-size 64K >"$TMP/out" 2>"$TMP/err"
rc=$?
if [ $rc = 0 ] && grep -q "uploaded 36 tensors" "$TMP/out" && grep -q "disk -> host: .* GB/s" "$TMP/out" &&
    grep -q "host -> device: .* GB/s" "$TMP/out" && grep -q "staging: node 0, page-locked, 4 slots" "$TMP/out" &&
    grep -q "verify: all 36 tensors hashed on the device match the file" "$TMP/out"; then
    ok "load --gpu text report"
else
    bad "load --gpu: rc $rc $(cat "$TMP/out" "$TMP/err")"
fi
"$NUMALM" load -m "$MODEL" --gpu cpu:0 -ngl 2 --verify --json --gpu-slots 2 --gpu-slot-size 64K \
    --gpu-pageable >"$TMP/json" 2>"$TMP/err"
"$PY" -S -E - "$TMP/json" <<'EOF' && ok "load --gpu --json" || bad "load --gpu --json: $(cat "$TMP/json" "$TMP/err")"
import json, sys
j = json.load(open(sys.argv[1]))
g = j["gpu"]
assert g["layers"] == 2 and not g["head"] and g["tensors"] == 14, g
assert g["staging_node"] == 0 and g["device_node"] == 0 and g["slots"] == 2, g
assert g["pinned"] is False and g["verified"] and g["verify_ok"], g
assert g["bytes"] > 0 and g["disk_gbps"] > 0 and g["h2d_gbps"] > 0 and g["pieces"] >= 3, g
assert j["checksums_ok"] is True, j  # the CPU's share, the device's blocks left out
EOF

# 5. Errors.
"$NUMALM" run -m "$MODEL" -p hi --gpu gpu0 >/dev/null 2>"$TMP/err"
[ $? = 2 ] && grep -q "expected a CUDA device number" "$TMP/err" && ok "bad --gpu" || bad "bad --gpu: $(cat "$TMP/err")"
"$NUMALM" run -m "$MODEL" -p hi -ngl -1 >/dev/null 2>"$TMP/err"
[ $? = 2 ] && grep -q "ngl" "$TMP/err" && ok "bad -ngl" || bad "bad -ngl: $(cat "$TMP/err")"
"$NUMALM" load -m "$MODEL" --gpu cpu --gpu-staging-node 999 >/dev/null 2>"$TMP/err"
[ $? = 1 ] && grep -q "staging node 999 is not a node this process may use" "$TMP/err" &&
    ok "staging node not allowed" || bad "staging node: $(cat "$TMP/err")"
# A CUDA device where there is none (or a binary without CUDA): one clear line.
if "$NUMALM" load -m "$MODEL" --gpu 0 >/dev/null 2>"$TMP/err"; then
    echo "skip 'no CUDA device' message: this machine has a CUDA device"
else
    grep -q "^numalm load: -ngl all: --gpu 0: no CUDA device" "$TMP/err" && ok "no CUDA device message" ||
        bad "no CUDA device: $(cat "$TMP/err")"
fi

# 6. The GPU benchmark script runs through (on the CPU implementation, with
# tiny sizes), so a machine with a GPU can run it as it is.
BENCH_UPLOAD=${NUMALM_BUILD:-$(dirname "$NUMALM")}/bench_upload
if [ -x "$BENCH_UPLOAD" ]; then
    if GPU=cpu REPEAT=1 N_PREDICT=4 UPLOAD_SIZE=4M FIO=none BENCH_DIR=$TMP/bench NUMALM=$NUMALM \
        BENCH_UPLOAD=$BENCH_UPLOAD bash "$(dirname "$0")/../bench/bench_gpu.sh" "$MODEL" >"$TMP/bench.md" 2>&1 &&
        grep -q "^| pinned_own_node | " "$TMP/bench.md" && grep -q "load / min(disk, PCIe)" "$TMP/bench.md" &&
        grep -q "^| all | 5 + LM head | " "$TMP/bench.md"; then
        ok "bench/bench_gpu.sh runs (GPU=cpu)"
    else
        bad "bench/bench_gpu.sh: $(tail -5 "$TMP/bench.md")"
    fi
else
    echo "skip bench_gpu.sh: no $BENCH_UPLOAD"
fi

finish
