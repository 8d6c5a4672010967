#!/usr/bin/env bash
# Aggregate decode tokens/s of `numalm serve --parallel N` against llama.cpp's
# `llama-server -np N` on the same model file, threads and context per slot,
# driven by the same load generator (bench/serve_load.py: N clients stream
# completions back to back, greedy, ignore_eos, fixed length), in the same
# run: both servers stay up (idle, they cost no CPU) and their measurements
# alternate, REPS times per N, each line with the machine's load (uptime).
# Reports time to first token under that load as well.
#
#   bench/bench_serve.sh [TYPE...]        default: q8_0 (mkmodel --preset 1b)
#   env: NUMALM (default build/numalm), MODELS (dir for the demo models,
#        default /tmp/numalm-bench), PRESET (mkmodel preset, default 1b),
#        PARALLEL ("1 2 4 8"), REPS (2),
#        TOKENS (32 per request), REQUESTS (2 per client), THREADS (2),
#        CTX (512 per slot), OUT (JSON lines, default $MODELS/bench_serve.jsonl),
#        LLAMA_SERVER (default: llama-server on PATH; if absent and LLAMA_CPP
#        names a llama.cpp checkout, it is built there with cmake),
#        LLAMA_ARGS (more llama-server options; see below)
# The demo models have random weights, which pick byte tokens (<0xXX>, ids
# 3-258 in mkmodel's vocab) and so text that is not UTF-8; llama-server
# ends such a stream with an error. The load generator bans those ids
# (logit_bias -100) in the requests to both servers.
# A llama.cpp built with AMX can die of SIGILL in its AMX kernels (it does on
# the dev VM of docs/benchmarks.md, where numalm's own AMX tiles run); the
# script then restarts llama-server with --no-repack (no AMX buffer type)
# and says so in the output.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
NUMALM=${NUMALM:-$here/build/numalm}
MODELS=${MODELS:-/tmp/numalm-bench}
PARALLEL=${PARALLEL:-1 2 4 8}
REPS=${REPS:-2}
TOKENS=${TOKENS:-32}
REQUESTS=${REQUESTS:-2}
THREADS=${THREADS:-2}
CTX=${CTX:-512}
OUT=${OUT:-$MODELS/bench_serve.jsonl}
LLAMA_ARGS=${LLAMA_ARGS:-}
PRESET=${PRESET:-1b}
types=("$@")
[ ${#types[@]} -gt 0 ] || types=(q8_0)
PY=python3
LOAD="$PY $here/bench/serve_load.py --ban 3-258"

[ -x "$NUMALM" ] || { echo "bench_serve: no numalm binary at $NUMALM" >&2; exit 1; }
LLAMA_SERVER=${LLAMA_SERVER:-$(command -v llama-server || true)}
if [ -z "$LLAMA_SERVER" ] && [ -n "${LLAMA_CPP:-}" ]; then
    LLAMA_SERVER=$LLAMA_CPP/build/bin/llama-server
    if [ ! -x "$LLAMA_SERVER" ]; then
        echo "bench_serve: building llama-server in $LLAMA_CPP/build" >&2
        cmake -S "$LLAMA_CPP" -B "$LLAMA_CPP/build" -DCMAKE_BUILD_TYPE=Release >/dev/null
        nice cmake --build "$LLAMA_CPP/build" -j"$(nproc)" --target llama-server >/dev/null
    fi
fi
[ -x "${LLAMA_SERVER:-}" ] || {
    echo "bench_serve: no llama-server (set LLAMA_SERVER, or LLAMA_CPP to a checkout)" >&2
    exit 1
}
mkdir -p "$MODELS"

free_port() { $PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_health() { # URL PID
    for _ in $(seq 1200); do
        curl -sf -o /dev/null "$1/health" && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.25
    done
    return 1
}
nm_pid=
ll_pid=
stop_servers() {
    for p in $nm_pid $ll_pid; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
    nm_pid= ll_pid=
}

start_numalm() { # MODEL N
    nm_port=$(free_port)
    "$NUMALM" serve -m "$1" --parallel "$2" --ctx "$CTX" -t "$THREADS" --port "$nm_port" \
        --no-progress 2>"$MODELS/numalm-serve.log" &
    nm_pid=$!
    wait_health "http://127.0.0.1:$nm_port" "$nm_pid" ||
        { cat "$MODELS/numalm-serve.log" >&2; exit 1; }
}

# llama-server on MODEL with N slots, answering one short request; when it
# dies of SIGILL (AMX, above) it is started again with --no-repack.
start_llama() { # MODEL N
    ll_port=$(free_port)
    # -c is the whole context, split among the slots
    "$LLAMA_SERVER" -m "$1" -np "$2" -c $(($2 * CTX)) -t "$THREADS" -tb "$THREADS" \
        --port "$ll_port" $LLAMA_ARGS >"$MODELS/llama-server.log" 2>&1 &
    ll_pid=$!
    if wait_health "http://127.0.0.1:$ll_port" "$ll_pid" &&
        $LOAD --url "http://127.0.0.1:$ll_port" --clients 1 --requests 1 --tokens 4 >/dev/null 2>&1; then
        return 0
    fi
    kill "$ll_pid" 2>/dev/null || true
    local rc=0
    wait "$ll_pid" 2>/dev/null || rc=$?
    ll_pid=
    if [ "$rc" = 132 ] && [[ " $LLAMA_ARGS " != *" --no-repack "* ]]; then
        echo "# llama-server: SIGILL (its AMX kernels): --no-repack from here on" | tee -a "$OUT"
        LLAMA_ARGS="$LLAMA_ARGS --no-repack"
        start_llama "$1" "$2"
        return
    fi
    echo "bench_serve: llama-server failed (status $rc):" >&2
    tail -20 "$MODELS/llama-server.log" >&2
    exit 1
}

RUN=$(mktemp)
trap 'stop_servers; rm -f "$RUN"' EXIT
measure() { # TOOL URL N MODEL
    local load
    load=$(uptime | sed 's/.*load average: //')
    $LOAD --url "$2" --clients "$3" --requests "$REQUESTS" --tokens "$TOKENS" --label "$1" |
        $PY -c '
import json, sys
r = json.loads(sys.stdin.read())
r.update(model=sys.argv[1], load=sys.argv[2], threads=int(sys.argv[3]), llama_args=sys.argv[4] if r["label"] == "llama.cpp" else "")
print(json.dumps(r))' "$4" "$load" "$THREADS" "$LLAMA_ARGS" | tee -a "$OUT" "$RUN"
}

echo "# bench_serve $(date -u +%FT%TZ) on $(hostname): $(nproc) CPUs, $THREADS threads, $TOKENS tokens x $REQUESTS requests per client, ctx $CTX per slot" | tee -a "$OUT"
for t in "${types[@]}"; do
    model=$MODELS/serve-$PRESET-$t.gguf
    [ -s "$model" ] || "$NUMALM" mkmodel "$model" --preset "$PRESET" --type "$t" >/dev/null
    for n in $PARALLEL; do
        start_numalm "$model" "$n"
        start_llama "$model" "$n"
        $LOAD --url "http://127.0.0.1:$nm_port" --clients 1 --requests 1 --tokens 4 >/dev/null
        for rep in $(seq "$REPS"); do
            measure numalm "http://127.0.0.1:$nm_port" "$n" "$t"
            measure llama.cpp "http://127.0.0.1:$ll_port" "$n" "$t"
        done
        stop_servers
    done
done

# Summary of this run: per type and N, medians of the reps, and the ratio.
$PY - "$RUN" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {}
for r in rows:
    by.setdefault((r["model"], r["clients"], r["label"]), []).append(r)
print("%-6s %3s %12s %12s %7s %14s %14s" % ("type", "N", "numalm tok/s", "llama tok/s", "ratio", "numalm ttft", "llama ttft"))
for (model, n, label) in sorted(k for k in by if k[2] == "numalm"):
    a = by[(model, n, "numalm")]
    b = by.get((model, n, "llama.cpp"), [])
    ma = statistics.median(x["agg_tok_s"] for x in a)
    mb = statistics.median(x["agg_tok_s"] for x in b) if b else float("nan")
    ta = statistics.median(x["ttft_median_s"] for x in a)
    tb = statistics.median(x["ttft_median_s"] for x in b) if b else float("nan")
    print("%-6s %3d %12.2f %12.2f %7.2f %13.2fs %13.2fs" % (model, n, ma, mb, ma / mb, ta, tb))
EOF
