#!/bin/bash
# Load benchmark: numalm's io modes x cache states, side by side in one run
# with what the hardware and the usual tools do on the same file:
#   fio O_DIRECT sequential read (io_uring, 4 MiB, depth 16)   cold ceiling
#   dd of the file                                              cold/warm copy
#   llama.cpp load time (mmap and --no-mmap), if built           the baseline
# Cold = page cache dropped before each run (root: sync + drop_caches; else
# posix_fadvise DONTNEED on the model only). Warm = file read once before.
# Each case runs REPEAT times; the table shows the median.
#
# The cold-load limit: a load into fresh memory both reads the file and
# faults the pages in, so its bound is max(fio's O_DIRECT read, populating
# as much anonymous memory: membw --populate, 4 KiB pages, one thread per
# node as numalm's dio readers), not fio alone. The three run alternating,
# REPEAT rounds, caches dropped before each; the ratio numalm / max(...) is
# printed (target <= 1.10).
#
#   bench/bench_load.sh [--sweep | --limit] [MODEL]
#   env: NUMALM (binary; default build/numalm), MEMBW (default: membw next
#        to it), BENCH_DIR (default /tmp/numalm-bench), REPEAT (default 3),
#        LLAMA_BIN (the folder of llama.cpp's llama-cli; default: where
#        llama-cli on PATH is; without one the llama.cpp rows are left out),
#        PLACEMENT (default shard)
# --sweep: cold dio over chunk 1/4/8/16 MiB x queue depth 4/8/16/32 instead.
# --limit: only the cold-load limit.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
NUMALM=${NUMALM:-$HERE/../build/numalm}
MEMBW=${MEMBW:-$(dirname "$NUMALM")/membw}
BENCH_DIR=${BENCH_DIR:-/tmp/numalm-bench}
REPEAT=${REPEAT:-3}
LLAMA_BIN=${LLAMA_BIN:-$(dirname "$(command -v llama-cli || echo ./none)")}
PLACEMENT=${PLACEMENT:-shard}
SWEEP=0
LIMIT=0
[ "${1:-}" = --sweep ] && { SWEEP=1; shift; }
[ "${1:-}" = --limit ] && { LIMIT=1; shift; }
MODEL=${1:-$BENCH_DIR/demo-1b-f16.gguf}
export NUMALM_NO_PROGRESS=1
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

[ -x "$NUMALM" ] || { echo "bench_load: no numalm at $NUMALM (set NUMALM)"; exit 2; }
mkdir -p "$BENCH_DIR"
if [ ! -s "$MODEL" ]; then
    echo "# writing the demo model: $NUMALM mkmodel $MODEL --preset 1b --type f16"
    "$NUMALM" mkmodel "$MODEL" --preset 1b --type f16 >/dev/null || exit 1
fi
SIZE=$(stat -c %s "$MODEL")
RESULTS=$BENCH_DIR/results.jsonl
: >"$RESULTS"

if [ "$(id -u)" = 0 ] && [ -w /proc/sys/vm/drop_caches ]; then
    COLD_HOW="sync; echo 3 > /proc/sys/vm/drop_caches"
    drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }
else
    COLD_HOW="posix_fadvise DONTNEED on the model (not root)"
    drop() { "$PY" -c "import os,sys; fd=os.open(sys.argv[1],os.O_RDONLY); os.posix_fadvise(fd,0,0,os.POSIX_FADV_DONTNEED)" "$MODEL"; }
fi
warm() { cat "$MODEL" >/dev/null; }

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

# Seconds of one run of each tool (a bare number on stdout, "nan" on error).
t_numalm() { # io [extra args]
    local io=$1
    shift
    "$NUMALM" load -m "$MODEL" --io "$io" --placement "$PLACEMENT" --json "$@" \
        2>>"$BENCH_DIR/stderr.log" | "$PY" -S -E -c 'import json,sys; print(json.load(sys.stdin)["seconds"])' \
        2>/dev/null || echo nan
}
t_fio() {
    fio --name=seqread --filename="$MODEL" --rw=read --bs=4M --ioengine=io_uring \
        --iodepth=16 --direct=1 --readonly --output-format=json 2>/dev/null |
        "$PY" -S -E -c 'import json,sys; r=json.load(sys.stdin)["jobs"][0]["read"]; print(r["io_bytes"]/r["bw_bytes"])' \
        2>/dev/null || echo nan
}
t_dd() {
    local t0 t1
    t0=$(date +%s.%N)
    dd if="$MODEL" of=/dev/null bs=4M 2>/dev/null || { echo nan; return; }
    t1=$(date +%s.%N)
    awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}'
}
# llama.cpp's "load time" runs from the start of the model load to the end
# of the first evaluation; with --no-warmup that evaluation is the 2-token
# prompt, whose own time it prints too: load = load time - prompt eval time.
# (For mmap this subtracts the page faults the prompt took: generous to it.)
t_llama() { # extra args: "" or --no-mmap
    "$LLAMA_BIN/llama-cli" -m "$MODEL" -no-cnv -n 1 -p hi -t 2 --no-warmup "$@" </dev/null 2>&1 |
        awk '/ load time =/ {l = $(NF-1)} /prompt eval time =/ {for (i = 1; i <= NF; i++) if ($i == "=") {p = $(i+1); break}}
             END {if (l == "") print "nan"; else print (l - p) / 1000}'
}

# case NAME STATE FUNCTION ARGS...: REPEAT runs, median into the table
declare -a ROWS
run_case() {
    local name=$1 state=$2
    shift 2
    local times=() t i
    for ((i = 0; i < REPEAT; i++)); do
        if [ "$state" = cold ]; then drop; else warm; fi
        t=$("$@")
        times+=("$t")
    done
    local med
    med=$(printf '%s\n' "${times[@]}" | grep -v nan | median)
    [ -n "$med" ] || med=nan
    local gbps=nan
    [ "$med" != nan ] && gbps=$(awk -v s="$SIZE" -v t="$med" 'BEGIN {print s / t / 1e9}')
    printf '{"case":"%s","state":"%s","seconds":%s,"gbps":%s,"runs":[%s]}\n' "$name" "$state" \
        "$med" "$gbps" "$(IFS=,; echo "${times[*]}")" >>"$RESULTS"
    printf '%-28s %-5s %9.3f s %7.2f GB/s   runs: %s\n' "$name" "$state" "$med" "$gbps" "${times[*]}"
}

# The cold-load limit, alternating: fio, populate, numalm dio per round.
t_populate() {
    "$MEMBW" --populate -t "$NODES" -s "$SIZE" -p 1 --json 2>/dev/null |
        "$PY" -S -E -c 'import json,sys; print(json.load(sys.stdin)["median_seconds"])' 2>/dev/null ||
        echo nan
}
cold_limit() {
    local fio=() pop=() dio=() i
    for ((i = 0; i < REPEAT; i++)); do
        drop; fio+=("$(t_fio)")
        drop; pop+=("$(t_populate)")
        drop; dio+=("$(t_numalm dio)")
    done
    echo "# cold-load limit, $REPEAT alternating rounds (fio, populate, numalm dio), $NODES node(s)"
    "$PY" -S -E - "$RESULTS" "${fio[*]}" "${pop[*]}" "${dio[*]}" "$SIZE" <<'EOF'
import json, statistics, sys
res, size = sys.argv[1], int(sys.argv[5])
fio, pop, dio = [[float(x) for x in a.split() if x != "nan"] for a in sys.argv[2:5]]
if not fio or not pop or not dio:
    print("cold-load limit: a tool failed (fio, membw --populate or numalm)")
    sys.exit(0)
f, p, d = statistics.median(fio), statistics.median(pop), statistics.median(dio)
limit = max(f, p)
with open(res, "a") as out:
    for name, runs in (("limit: fio O_DIRECT", fio), ("limit: anonymous populate", pop),
                       ("limit: numalm dio", dio)):
        out.write(json.dumps({"case": name, "state": "cold", "seconds": statistics.median(runs),
                              "runs": runs}) + "\n")
for name, runs, m in (("fio O_DIRECT 4M qd16", fio, f), ("populate, 4 KiB pages", pop, p),
                      ("numalm dio", dio, d)):
    print(f"{name:28s} cold  {m:8.3f} s {size / m / 1e9:7.2f} GB/s   runs: "
          + " ".join(f"{x:.3f}" for x in runs))
r = d / limit
print(f"numalm cold dio / max(fio, populate) = {d:.3f} / {limit:.3f} = {r:.2f}  (target <= 1.10)  "
      f"{'MET' if r <= 1.10 else 'MISSED'}; numalm / fio alone = {d / f:.2f}")
EOF
}

NODES=$("$NUMALM" topo --json 2>/dev/null | "$PY" -S -E -c 'import json,sys; print(json.load(sys.stdin)["n_nodes"])' 2>/dev/null || echo 1)

echo "# numalm load benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -r), $(nproc) CPUs"
echo "# uptime before: $(uptime)"
echo "# model $MODEL ($SIZE bytes), placement $PLACEMENT, median of $REPEAT, cold = $COLD_HOW"
echo "# command: $0 $([ $SWEEP = 1 ] && echo "--sweep ")$([ $LIMIT = 1 ] && echo "--limit ")$MODEL"

if [ $LIMIT = 1 ]; then
    cold_limit
    echo "# uptime after: $(uptime)"
    exit 0
fi

if [ $SWEEP = 1 ]; then
    for chunk in 1M 4M 8M 16M; do
        for qd in 4 8 16 32; do
            run_case "dio chunk $chunk qd $qd" cold t_numalm dio --chunk $chunk --qd $qd
        done
    done
    exit 0
fi

cold_limit
run_case "fio O_DIRECT 4M qd16" cold t_fio
run_case "dd bs=4M" cold t_dd
for io in dio buffered auto mmap; do
    run_case "numalm $io" cold t_numalm $io
done
run_case "numalm dio --thp on" cold t_numalm dio --thp on
if [ -x "$LLAMA_BIN/llama-cli" ]; then
    run_case "llama.cpp mmap" cold t_llama
    run_case "llama.cpp --no-mmap" cold t_llama --no-mmap
fi
run_case "dd bs=4M" warm t_dd
for io in dio buffered auto mmap; do
    run_case "numalm $io" warm t_numalm $io
done
run_case "numalm auto --no-map" warm t_numalm auto --no-map
if [ -x "$LLAMA_BIN/llama-cli" ]; then
    run_case "llama.cpp mmap" warm t_llama
    run_case "llama.cpp --no-mmap" warm t_llama --no-mmap
fi

"$PY" -S -E - "$RESULTS" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
t = {(r["case"], r["state"]): r["seconds"] for r in rows}
def ratio(name, num, den, want):
    a, b = t.get(num), t.get(den)
    if a is None or b is None or a != a or b != b:
        print(f"{name:58s} n/a")
        return
    r = b / a  # a rate ratio: time of den / time of num
    ok = r >= want
    print(f"{name:58s} {r:6.2f}  (target >= {want})  {'MET' if ok else 'MISSED'}")
print("\n# ratios (of rates, same run)")
ratio("cold dio / fio O_DIRECT", ("numalm dio", "cold"), ("fio O_DIRECT 4M qd16", "cold"), 0.95)
ratio("cold dio / cold buffered", ("numalm dio", "cold"), ("numalm buffered", "cold"), 1.0)
ratio("warm auto / warm dd", ("numalm auto", "warm"), ("dd bs=4M", "warm"), 0.8)
ratio("warm auto vs llama.cpp --no-mmap warm (speedup)", ("numalm auto", "warm"),
      ("llama.cpp --no-mmap", "warm"), 4.0)
ratio("cold auto / cold dio (auto no slower than dio cold)", ("numalm auto", "cold"),
      ("numalm dio", "cold"), 0.95)
ratio("warm auto / warm buffered (auto no slower, warm)", ("numalm auto", "warm"),
      ("numalm buffered", "warm"), 0.95)
EOF
echo "# uptime after: $(uptime)"
echo "# results: $RESULTS; numalm's stderr: $BENCH_DIR/stderr.log"
