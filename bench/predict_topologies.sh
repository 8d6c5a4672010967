#!/bin/bash
# Predicted decode speedups over one socket for every public topology
# (../shared/topologies) and three model shapes, from the traffic model
# (numalm plan --predict): a markdown table for docs/prediction.md.
# Header-only models (mkmodel --sparse), so it takes seconds and no disk.
#
#   bench/predict_topologies.sh > table.md
#   env: NUMALM (default build/numalm), TOPOLOGIES (../shared/topologies),
#        WORK (a temporary directory), DEPTH (KV positions before the
#        generated tokens, default 512)
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
NUMALM=${NUMALM:-$HERE/../build/numalm}
TOPOLOGIES=${TOPOLOGIES:-$HERE/../../shared/topologies}
DEPTH=${DEPTH:-512}
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
WORK=${WORK:-$(mktemp -d)}
trap 'rm -rf "$WORK"' EXIT

# name | mkmodel arguments
MODELS=(
    "TinyLlama 1.1B Q8_0|--preset 1b --type q8_0"
    "Llama 3 8B shape, Q4_0|--embd 4096 --blocks 32 --ff 14336 --heads 32 --kv-heads 8 --vocab 128256 --ctx 8192 --type q4_0"
    "Llama 3 70B shape, Q4_0|--embd 8192 --blocks 80 --ff 28672 --heads 64 --kv-heads 8 --vocab 128256 --ctx 8192 --type q4_0"
)
i=0
for m in "${MODELS[@]}"; do
    # shellcheck disable=SC2086
    "$NUMALM" mkmodel "$WORK/m$i.gguf" --sparse ${m#*|} >/dev/null
    i=$((i + 1))
done

echo "Predicted decode (tokens after $DEPTH of context, f16 KV cache), as multiples of one socket's"
echo "rate; \`$0\` (numalm plan --predict --depth $DEPTH; bandwidths as the table below says)."
echo
echo "| topology | bandwidths | model | one socket tok/s | numalm shard | numalm replicate | numalm interleave | llama.cpp first touch | llama.cpp distribute |"
echo "|---|---|---|---:|---:|---:|---:|---:|---:|"
for xml in "$TOPOLOGIES"/*.xml; do
    i=0
    for m in "${MODELS[@]}"; do
        for p in shard replicate interleave; do
            "$NUMALM" plan -m "$WORK/m$i.gguf" --topology "$xml" --placement $p --predict \
                --depth "$DEPTH" --json >"$WORK/$p.json" 2>/dev/null || echo '{}' >"$WORK/$p.json"
        done
        "$PY" -S -E - "$(basename "$xml")" "${m%%|*}" "$WORK" <<'EOF'
import json, sys
xml, model, work = sys.argv[1:4]
def load(p):
    try:
        return json.load(open(f"{work}/{p}.json"))["predict"]
    except (KeyError, ValueError):
        return None
sh, rep, il = load("shard"), load("replicate"), load("interleave")
if not sh:
    print(f"| {xml} | | {model} | cannot plan | | | | | |")
    sys.exit(0)
by = {s["name"].split(" (")[0]: s for s in sh["scenarios"]}
base = next((s for s in sh["scenarios"] if s["name"].startswith("one ")), sh["scenarios"][0])
def x(s):
    return f"{s['speedup_vs_one_node']:.2f}x" if s else "-"
first = lambda p: p["scenarios"][0] if p else None
bwsum = sh["bandwidth"]["summary"].replace("|", "/")
print(f"| {xml} | {bwsum} | {model} | {base['tok_s']:.1f} | {x(sh['scenarios'][0])} | "
      f"{x(first(rep))} | {x(first(il))} | {x(by.get('llama.cpp mmap, first touch'))} | "
      f"{x(by.get('llama.cpp --numa distribute, interleaved'))} |")
EOF
        i=$((i + 1))
    done
done
