#!/bin/bash
# The GPU measurements, one command, each side by side in one run:
#   1. host -> device GB/s from page-locked memory on the GPU's own node, on
#      another node, and from pageable memory (bench_upload, alternating);
#   2. a cold load of every block to the GPU (O_DIRECT into staging on the
#      GPU's node, copies overlapped) against min(disk, PCIe): the disk rate
#      of a cold O_DIRECT read of the same file (fio when installed, and
#      numalm's own cold `load --io dio`), the PCIe rate from 1.;
#      alternating GPU load, disk read;
#   3. decode tok/s at -ngl 0 / half / all (greedy, N_PREDICT tokens),
#      alternating.
# Cold = the model evicted from the page cache first (--drop-file-cache:
# posix_fadvise DONTNEED; no root needed). Medians of REPEAT runs.
#
#   bench/bench_gpu.sh [MODEL]
#   env: NUMALM (default build/numalm), BENCH_UPLOAD (default
#        build/bench_upload), GPU (default 0; "cpu" runs the whole script
#        through the device interface's CPU implementation, as the suite
#        does to check it), BENCH_DIR (default /tmp/numalm-bench-gpu),
#        REPEAT (3), N_PREDICT (64), UPLOAD_SIZE (1G), FIO (default: fio on
#        PATH; "none" skips it)
# MODEL defaults to $BENCH_DIR/tinyllama-f16.gguf, written if absent by
# `numalm mkmodel --preset 1b --type f16` (TinyLlama-1.1B's shape, 2.2 GB).
# Prints a Markdown section for docs/benchmarks.md; the raw JSON of every
# run goes to $BENCH_DIR/results.jsonl.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
NUMALM=${NUMALM:-$HERE/../build/numalm}
BENCH_UPLOAD=${BENCH_UPLOAD:-$(dirname "$NUMALM")/bench_upload}
GPU=${GPU:-0}
BENCH_DIR=${BENCH_DIR:-/tmp/numalm-bench-gpu}
REPEAT=${REPEAT:-3}
N_PREDICT=${N_PREDICT:-64}
UPLOAD_SIZE=${UPLOAD_SIZE:-1G}
FIO=${FIO:-$(command -v fio || echo none)}
MODEL=${1:-$BENCH_DIR/tinyllama-f16.gguf}
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

for b in "$NUMALM" "$BENCH_UPLOAD"; do
    [ -x "$b" ] || { echo "bench_gpu: no $b (build first, or set NUMALM / BENCH_UPLOAD)"; exit 2; }
done
mkdir -p "$BENCH_DIR"
if [ ! -s "$MODEL" ]; then
    echo "# writing the model: $NUMALM mkmodel $MODEL --preset 1b --type f16" >&2
    "$NUMALM" mkmodel "$MODEL" --preset 1b --type f16 >/dev/null || exit 1
fi
RESULTS=$BENCH_DIR/results.jsonl
LOG=$BENCH_DIR/stderr.log
: >"$RESULTS"
: >"$LOG"

# Appends one JSON document (stdin) to the results under a label.
keep() { "$PY" -S -E -c 'import json,sys; print(json.dumps({"run": sys.argv[1], "out": json.load(sys.stdin)}))' "$1" >>"$RESULTS"; }
fail() { echo "bench_gpu: $1 (see $LOG)"; exit 1; }

LAYERS=$("$NUMALM" info "$MODEL" --json 2>>"$LOG" | "$PY" -S -E -c 'import json,sys; print(json.load(sys.stdin)["hparams"]["n_layer"])') ||
    fail "numalm info $MODEL failed"
HALF=$((LAYERS / 2))

# 1. host -> device from the three kinds of host memory.
"$BENCH_UPLOAD" --gpu "$GPU" --size "$UPLOAD_SIZE" --reps "$REPEAT" --json 2>>"$LOG" >"$BENCH_DIR/upload.json" ||
    fail "bench_upload --gpu $GPU failed"
keep upload <"$BENCH_DIR/upload.json"

# 2. cold loads, alternating: every block to the GPU; the disk alone.
for r in $(seq "$REPEAT"); do
    "$NUMALM" load -m "$MODEL" --gpu "$GPU" --drop-file-cache --no-progress --json 2>>"$LOG" |
        keep gpu_load || fail "load --gpu $GPU failed"
    "$NUMALM" load -m "$MODEL" --io dio --drop-file-cache --no-progress --json 2>>"$LOG" |
        keep dio_load || fail "load --io dio failed"
    if [ "$FIO" != none ]; then
        "$PY" -c 'import os,sys; fd=os.open(sys.argv[1],os.O_RDONLY); os.posix_fadvise(fd,0,0,os.POSIX_FADV_DONTNEED)' "$MODEL"
        "$FIO" --name=seqread --filename="$MODEL" --rw=read --bs=4M --ioengine=io_uring --iodepth=16 \
            --direct=1 --output-format=json 2>>"$LOG" | keep fio || fail "fio failed"
    fi
done

# 3. decode at -ngl 0 / half / all, alternating.
for r in $(seq "$REPEAT"); do
    for ngl in 0 $HALF all; do
        "$NUMALM" run -m "$MODEL" -p "Once upon a time" -n "$N_PREDICT" -ngl $ngl --gpu "$GPU" \
            --no-progress --json 2>&1 >/dev/null | tail -1 | keep "decode_ngl_$ngl" ||
            fail "run -ngl $ngl failed"
    done
done

echo "### GPU: upload and offload ($(date -u +%Y-%m-%d), $(hostname))"
echo
echo "Command: \`bench/bench_gpu.sh $*\` (GPU=$GPU REPEAT=$REPEAT N_PREDICT=$N_PREDICT UPLOAD_SIZE=$UPLOAD_SIZE)."
echo "Machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) CPUs,"
echo "$(numactl --hardware 2>/dev/null | head -1 || echo '? nodes'); load before: $(uptime | sed 's/.*load average/load average/')."
echo
"$PY" -S -E - "$RESULTS" "$MODEL" "$LAYERS" <<'EOF'
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
model, layers = sys.argv[2], int(sys.argv[3])
def med(v):
    v = sorted(x for x in v if x is not None)
    if not v:
        return float("nan")
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2
def of(name):
    return [r["out"] for r in runs if r["run"] == name]

up = of("upload")[0]
print(f"Device: {up['name']} ({up['device']} {up['ordinal']}, bus {up['busid'] or '-'}, "
      f"NUMA node {up['device_node']}); model {model} ({layers} blocks).\n")
print(f"1. Host -> device, {up['size'] >> 20} MiB per pass in {up['chunk'] >> 20} MiB copies "
      f"over {up['streams']} streams, median of {up['reps']} (min-max):\n")
print("| host memory | node | GB/s | vs page-locked on the GPU's node |")
print("|---|---|---|---|")
own = up["pinned_own_node"]["median_gbps"]
for k, node in (("pinned_own_node", up["own_node"]), ("pinned_other_node", up["other_node"]),
                ("pageable_own_node", up["own_node"])):
    r = up[k]
    if r is None:
        print(f"| {k} | - | (one node only) | |")
    else:
        print(f"| {k} | {node} | {r['median_gbps']:.2f} ({r['min_gbps']:.2f}-{r['max_gbps']:.2f}) "
              f"| {r['median_gbps'] / own:.2f} |")

g = [r["gpu"] for r in of("gpu_load")]
dio = [r["bytes"] / r["seconds"] / 1e9 for r in of("dio_load") if r["seconds"] > 0]
fio = [r["jobs"][0]["read"]["bw_bytes"] / 1e9 for r in of("fio")]
disk = max(med(fio), med(dio)) if fio else med(dio)
limit = min(disk, own)
load = med([x["gbps"] for x in g])
print(f"\n2. Cold load of every block to the GPU ({g[0]['bytes'] / 1e9:.2f} GB, {g[0]['tensors']} "
      f"tensors, staging on node {g[0]['staging_node']}, {g[0]['slots']} x "
      f"{g[0]['slot_bytes'] >> 20} MiB), medians of {len(g)}:\n")
print("| | GB/s |")
print("|---|---|")
print(f"| load to the GPU, end to end | {load:.2f} |")
print(f"| its reader while reading (disk -> staging) | {med([x['disk_gbps'] for x in g]):.2f} |")
print(f"| its copies while in flight (staging -> GPU) | {med([x['h2d_gbps'] for x in g]):.2f} |")
if fio:
    print(f"| disk: fio O_DIRECT io_uring 4 MiB x 16, cold | {med(fio):.2f} |")
print(f"| disk: numalm load --io dio, cold (CPU arenas) | {med(dio):.2f} |")
print(f"| PCIe: host -> device from page-locked memory on the GPU's node (1.) | {own:.2f} |")
print(f"| **load / min(disk, PCIe)** | **{load / limit:.2f}** |")

print(f"\n3. Decode (greedy, `run -n N`), tok/s, medians:\n")
print("| -ngl | blocks on the GPU | prompt tok/s | decode tok/s |")
print("|---|---|---|---|")
for ngl in ("0", str(layers // 2), "all"):
    d = of(f"decode_ngl_{ngl}")
    on = 0 if ngl == "0" else (layers if ngl == "all" else int(ngl))
    head = " + LM head" if ngl == "all" else ""
    print(f"| {ngl} | {on}{head} | {med([x['prompt_tok_s'] for x in d]):.1f} "
          f"| {med([x['decode_tok_s'] for x in d]):.2f} |")
EOF
