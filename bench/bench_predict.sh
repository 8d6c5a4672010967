#!/bin/bash
# The traffic model's one-node prediction against decode measured on this
# machine, alternating in one run:
#   numalm plan --predict --bandwidth measure   predicted decode tok/s (the
#                                               bandwidth measured right then)
#   numalm run -n N_DECODE                      measured decode tok/s
# REPS pairs; prints every pair, the medians, the ratio measured/predicted
# and whether it is within 15 %. `uptime` before and after: a busy machine
# slows decode (barriers wait for descheduled workers) more than a read.
#
#   bench/bench_predict.sh [MODEL]
#   env: NUMALM (default build/numalm), BENCH_DIR (/tmp/numalm-bench),
#        REPS (5), N_DECODE (64), TYPE (q8_0: the demo model's type)
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
NUMALM=${NUMALM:-$HERE/../build/numalm}
BENCH_DIR=${BENCH_DIR:-/tmp/numalm-bench}
REPS=${REPS:-5}
N_DECODE=${N_DECODE:-64}
TYPE=${TYPE:-q8_0}
MODEL=${1:-$BENCH_DIR/demo-1b-$TYPE.gguf}
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
export NUMALM_NO_PROGRESS=1

[ -x "$NUMALM" ] || { echo "bench_predict: no numalm at $NUMALM (set NUMALM)"; exit 2; }
mkdir -p "$BENCH_DIR"
if [ ! -s "$MODEL" ]; then
    echo "# writing the demo model: $NUMALM mkmodel $MODEL --preset 1b --type $TYPE"
    "$NUMALM" mkmodel "$MODEL" --preset 1b --type "$TYPE" >/dev/null || exit 1
fi
RESULTS=$BENCH_DIR/predict.jsonl
: >"$RESULTS"
echo "# bench_predict, $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -r), $(nproc) CPUs"
echo "# uptime before: $(uptime)"
echo "# model $MODEL, $REPS pairs, decode $N_DECODE tokens after the prompt 'Once upon a time'"
echo "# command: $0 $MODEL"

for ((i = 1; i <= REPS; i++)); do
    # warm page cache for the run (this VM pages unmapped cache out quickly)
    cat "$MODEL" >/dev/null
    pred=$("$NUMALM" plan -m "$MODEL" --predict --bandwidth measure -n "$N_DECODE" --depth 5 \
        --json 2>/dev/null | "$PY" -S -E -c '
import json, sys
j = json.load(sys.stdin)["predict"]
s = j["scenarios"][0]
print(s["tok_s"], j["bandwidth"]["gbs"][0][0], s["nodes"][0]["matrix_bytes"])')
    meas=$("$NUMALM" run -m "$MODEL" -p "Once upon a time" -n "$N_DECODE" --json 2>&1 >/dev/null |
        tail -1 | "$PY" -S -E -c 'import json, sys; print(json.loads(sys.stdin.read())["decode_tok_s"])')
    read -r ptok gbs bytes <<<"$pred"
    echo "{\"rep\":$i,\"predicted_tok_s\":${ptok:-null},\"bandwidth_gbs\":${gbs:-null},\"bytes_per_token\":${bytes:-null},\"measured_tok_s\":${meas:-null}}" >>"$RESULTS"
    printf 'pair %d: predicted %6.2f tok/s (read %5.1f GB/s, %s bytes/token), measured %6.2f tok/s\n' \
        "$i" "${ptok:-0}" "${gbs:-0}" "${bytes:-?}" "${meas:-0}"
done
echo "# uptime after: $(uptime)"
"$PY" -S -E - "$RESULTS" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
p = [r["predicted_tok_s"] for r in rows if r["predicted_tok_s"]]
m = [r["measured_tok_s"] for r in rows if r["measured_tok_s"]]
if not p or not m:
    print("no complete pair"); sys.exit(1)
mp, mm = statistics.median(p), statistics.median(m)
r = mm / mp
print(f"median predicted {mp:.2f} tok/s ({min(p):.2f}-{max(p):.2f}), "
      f"median measured {mm:.2f} tok/s ({min(m):.2f}-{max(m):.2f})")
print(f"measured / predicted = {r:.3f}: {'within' if abs(r - 1) <= 0.15 else 'NOT within'} 15 %")
EOF
echo "# results: $RESULTS"
