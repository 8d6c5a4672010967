#!/usr/bin/env bash
# The main job on a built-in default: install, build, generate the demo model,
# show it and this machine's topology, load it in every io mode side by side,
# generate with every placement, and tell a story with stories260K if present.
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL=${DEMO_MODEL:-build/demo-1b-q8_0.gguf}
PRESET=${DEMO_PRESET:-1b}
TYPE=${DEMO_TYPE:-q8_0}
SHARED=${NUMALM_SHARED:-../shared}

scripts/deps.sh
scripts/build.sh build >/dev/null
nm=build/numalm

echo "== demo model: $MODEL (preset $PRESET, $TYPE)"
[ -f "$MODEL" ] || $nm mkmodel "$MODEL" --preset "$PRESET" --type "$TYPE"
$nm info "$MODEL" | sed -n '1,/^tensors/p' | head -40

echo; echo "== this machine"
$nm topo

echo; echo "== placement (shard)"
$nm plan -m "$MODEL" --placement shard | head -30

# One row per io mode and cache state; cold needs root (drop_caches).
load_row() { # state io [extra args]
    local state=$1 io=$2
    shift 2
    $nm load -m "$MODEL" --io "$io" --placement shard --verify --json "$@" 2>/dev/null |
        python3 -c 'import json,sys
r=json.load(sys.stdin)
placed=[n["placed_pct"] for n in r["nodes"] if n.get("placed_pct") is not None]
# a warm load that maps the page cache copies nothing: its time is the mapping, not a rate
mapped = sys.argv[1] == "warm" and (r["io"] == "mmap" or r.get("mapped_bytes", 0) >= 0.99 * r["bytes"])
rate = "mapped, no copy" if mapped else "%7.2f GB/s" % r["gbps"]
print("%-5s %-9s %8.3f s %15s  placed %s  checksums %s" % (sys.argv[1], r["io"], r["seconds"], rate,
      "/".join("%.0f%%" % p for p in placed) or "n/a", "ok" if r.get("checksums_ok", True) else "BAD"))' "$state" ||
        echo "$state $io: load failed"
}
echo; echo "== loading in each io mode (shard placement, verified)"
if [ "$(id -u)" = 0 ]; then
    for io in dio buffered mmap auto; do load_row cold "$io" --drop-caches; done
else
    echo "(not root: cold loads need drop_caches; showing warm loads only)"
fi
cat "$MODEL" >/dev/null
for io in dio buffered mmap auto; do load_row warm "$io"; done

echo; echo "== generation on the demo model (random weights: gibberish, but the rate is real)"
for pl in shard replicate interleave node:0; do
    printf '%-11s ' "$pl"
    $nm run -m "$MODEL" -p "Once upon a time" -n 32 --placement "$pl" --json 2>&1 >/dev/null |
        python3 -c 'import json,sys
for line in sys.stdin:
    line=line.strip()
    if line.startswith("{"):
        r=json.loads(line); print("decode %.2f tok/s, prompt %.2f tok/s, load %.3f s" % (r["decode_tok_s"], r["prompt_tok_s"], r["load_s"]))'
done

if [ -f "$SHARED/models/stories260K.gguf" ]; then
    echo; echo "== a story from stories260K"
    $nm run -m "$SHARED/models/stories260K.gguf" -p "Once upon a time" -n 120
    echo
fi
