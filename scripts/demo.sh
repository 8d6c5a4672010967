#!/usr/bin/env bash
# The main job on a built-in default: install, build, generate the demo model,
# show it and this machine's topology, load it in every io mode side by side,
# generate with every placement, and tell a story with stories260K if present.
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL=${DEMO_MODEL:-build/demo.gguf}
SIZE=${DEMO_SIZE:-1G}
TYPE=${DEMO_TYPE:-q8_0}
SHARED=${NUMALM_SHARED:-../shared}

scripts/deps.sh
scripts/build.sh build >/dev/null
nm=build/numalm

echo "== demo model: $MODEL ($SIZE, $TYPE)"
[ -f "$MODEL" ] || $nm mkmodel "$MODEL" --size "$SIZE" --type "$TYPE"
$nm info "$MODEL" | sed -n '1,/^tensors/p' | head -40

echo; echo "== this machine"
$nm topo

echo; echo "== placement (shard)"
$nm plan -m "$MODEL" --placement shard | head -30

echo; echo "== loading in each io mode (warm page cache)"
printf '%-10s %10s %10s %10s\n' io bytes seconds GB/s
for io in dio buffered mmap auto; do
    $nm load -m "$MODEL" --io "$io" --placement shard --json 2>/dev/null |
        python3 -c 'import json,sys; r=json.load(sys.stdin); print("%-10s %10d %10.3f %10.2f" % (r["io"], r["bytes"], r["seconds"], r["gbps"]))' ||
        echo "$io: load failed"
done

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
