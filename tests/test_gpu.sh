#!/bin/bash
# Blocks on a real GPU (CUDA): the greedy texts of stories260K with every
# block and the LM head on the GPU equal the CPU's; `load --gpu --verify`
# hashes every tensor on the GPU against the file and stages on the GPU's
# node; perplexity on a TinyLlama-shape F16 model (numalm mkmodel --preset
# 1b, 2.2 GB, written to $TMPDIR unless NUMALM_GPU_PPL_MODEL names one) is
# within 0.1 % of the CPU's. Skips with "no CUDA device" where there is none.
# NUMALM_GPU picks the device (default 0); NUMALM_GPU_SKIP_PPL=1 leaves the
# perplexity check out.
set -u
. "$(dirname "$0")/script_lib.sh"
MODEL=$SHARED/models/stories260K.gguf
REF=$SHARED/models/stories260K.greedy.jsonl
STORY=$SHARED/models/story.txt
GPU=${NUMALM_GPU:-0}
need_numalm
need_files "$MODEL" "$REF" "$STORY"

if ! "$NUMALM" load -m "$MODEL" --gpu "$GPU" --verify --json >"$TMP/load.json" 2>"$TMP/err"; then
    if grep -q "no CUDA device" "$TMP/err"; then
        echo "test_gpu: skipped: $(grep -o 'no CUDA device.*' "$TMP/err" | head -1)"
        exit 77
    fi
    echo "FAIL load --gpu $GPU: $(cat "$TMP/err")"
    exit 1
fi

# 1. The upload: every tensor's hash on the GPU matches the file; staged on
# the GPU's own node (when the topology says which), page-locked.
"$PY" -S -E - "$TMP/load.json" <<'EOF' && ok "load --gpu --verify" || bad "load --gpu: $(cat "$TMP/load.json")"
import json, sys
g = json.load(open(sys.argv[1]))["gpu"]
print(f"  {g['name']} (bus {g['busid']}, node {g['device_node']}): {g['tensors']} tensors, "
      f"disk {g['disk_gbps']:.2f} GB/s, host->device {g['h2d_gbps']:.2f} GB/s, "
      f"staging node {g['staging_node']} ({g['staging_placed_pct']}% there), notes {g['notes']}")
assert g["device"] == "cuda" and g["tensors"] == 36 and g["verified"] and g["verify_ok"], g
assert g["pinned"], g
if g["device_node"] >= 0:
    assert g["staging_node"] == g["device_node"], g
assert g["staging_placed_pct"] in (None, 100), g
EOF

# 2. Greedy text: every reference line, all blocks + LM head on the GPU,
# against the CPU's text.
n=0
while IFS= read -r line; do
    n=$((n + 1))
    ref_line "$line"
    "$NUMALM" run -m "$MODEL" -p "$prompt" -n "$n_predict" >"$TMP/cpu" 2>/dev/null
    for ngl in all 3; do
        if "$NUMALM" run -m "$MODEL" -p "$prompt" -n "$n_predict" -ngl $ngl --gpu "$GPU" >"$TMP/gpu" 2>"$TMP/err" &&
            cmp -s "$TMP/cpu" "$TMP/gpu"; then
            ok "reference line $n, -ngl $ngl: GPU text = CPU text"
        else
            bad "reference line $n, -ngl $ngl: GPU '$(cat "$TMP/gpu")' CPU '$(cat "$TMP/cpu")' $(tail -2 "$TMP/err")"
        fi
    done
done <"$REF"

# 3. Perplexity of a TinyLlama-shape F16 model within 0.1 % of the CPU's.
if [ "${NUMALM_GPU_SKIP_PPL:-0}" = 1 ]; then
    echo "skip perplexity (NUMALM_GPU_SKIP_PPL=1)"
else
    PPL_MODEL=${NUMALM_GPU_PPL_MODEL:-$TMP/tinyllama-f16.gguf}
    [ -s "$PPL_MODEL" ] || "$NUMALM" mkmodel "$PPL_MODEL" --preset 1b --type f16 >/dev/null ||
        bad "mkmodel --preset 1b"
    "$NUMALM" perplexity -m "$PPL_MODEL" -f "$STORY" -c 128 >"$TMP/ppl_cpu" 2>"$TMP/err_cpu"
    "$NUMALM" perplexity -m "$PPL_MODEL" -f "$STORY" -c 128 -ngl all --gpu "$GPU" >"$TMP/ppl_gpu" 2>"$TMP/err_gpu"
    "$PY" -S -E - "$TMP/ppl_cpu" "$TMP/ppl_gpu" <<'EOF' && ok "perplexity within 0.1 %" ||
import re, sys
def ppl(path):
    m = re.search(r"PPL = ([0-9.]+)", open(path).read())
    return float(m.group(1)) if m else None
c, g = ppl(sys.argv[1]), ppl(sys.argv[2])
print(f"  perplexity CPU {c}, GPU {g}")
assert c and g and abs(g - c) / c < 0.001
EOF
        bad "perplexity: CPU $(tail -1 "$TMP/ppl_cpu") $(tail -1 "$TMP/err_cpu"), GPU $(tail -1 "$TMP/ppl_gpu") $(tail -1 "$TMP/err_gpu")"
fi

finish
