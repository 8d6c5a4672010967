#!/bin/bash
# The traffic model's one-node prediction against decode measured on this
# machine. Each pair, alternating:
#   numalm run -n N_DECODE --read-probe   measured decode tok/s, and the read
#                                         bandwidth of the same weights by the
#                                         same threads in the same process
#                                         (the read probe, between decode steps)
#   numalm plan --predict --bandwidth R   predicted tok/s with that bandwidth:
#                                         tests the byte count and the rest of
#                                         the model (the kernels' measured
#                                         fraction of a read, barriers, the
#                                         non-matrix work: docs/prediction.md)
#   numalm plan --predict --bandwidth measure
#                                         predicted tok/s as plan --predict
#                                         does by default on a live machine (its own probe
#                                         on a fresh anonymous buffer)
# REPS pairs; the medians, the ratios measured / predicted and whether they
# are within 15 %. `uptime` before and after: a busy machine slows decode
# (its barriers wait for descheduled workers) more than a plain read.
#
#   bench/bench_predict.sh [MODEL]
#   env: NUMALM (default build/numalm), BENCH_DIR (/tmp/numalm-bench),
#        REPS (5), N_DECODE (64), THREADS (default: numalm's, every core),
#        TYPE (q8_0: the demo model's type when it has to be written)
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
NUMALM=${NUMALM:-$HERE/../build/numalm}
BENCH_DIR=${BENCH_DIR:-/tmp/numalm-bench}
REPS=${REPS:-5}
N_DECODE=${N_DECODE:-64}
TYPE=${TYPE:-q8_0}
MODEL=${1:-$BENCH_DIR/demo-1b-$TYPE.gguf}
T_ARG=${THREADS:+-t $THREADS}
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
echo "# command: $0 $MODEL${THREADS:+ (THREADS=$THREADS)}"

# predicted tok/s of the plan for a --bandwidth spec
predict() { # SPEC DEPTH
    # shellcheck disable=SC2086
    "$NUMALM" plan -m "$MODEL" $T_ARG --predict --bandwidth "$1" -n "$N_DECODE" --depth "$2" \
        --json 2>/dev/null | "$PY" -S -E -c '
import json, sys
j = json.load(sys.stdin)["predict"]
s = j["scenarios"][0]
print(s["tok_s"], j["bandwidth"]["gbs"][0][0], j["efficiency"], s.get("vector_seconds_per_token", 0))'
}

for ((i = 1; i <= REPS; i++)); do
    cat "$MODEL" >/dev/null # the dev VM pages unmapped cache out within a minute
    # shellcheck disable=SC2086
    run=$("$NUMALM" run -m "$MODEL" $T_ARG -p "Once upon a time" -n "$N_DECODE" --read-probe \
        --json 2>&1 >/dev/null | tail -1 | "$PY" -S -E -c '
import json, sys
j = json.loads(sys.stdin.read())
print(j["decode_tok_s"], j["read_probe"]["read_gb_s"], j["n_prompt"])')
    read -r meas rgbs nprompt <<<"$run"
    [ -n "${rgbs:-}" ] || { echo "pair $i: numalm run failed"; continue; }
    read -r p_read _ eff vec <<<"$(predict "$rgbs,$rgbs,$rgbs" "$nprompt")"
    read -r p_anon agbs _ _ <<<"$(predict measure "$nprompt")"
    echo "{\"rep\":$i,\"measured_tok_s\":$meas,\"read_probe_gbs\":$rgbs,\"predicted_read_probe\":${p_read:-null},\"membw_gbs\":${agbs:-null},\"predicted_membw\":${p_anon:-null},\"efficiency\":${eff:-null},\"vector_s\":${vec:-null}}" >>"$RESULTS"
    printf 'pair %d: measured %6.2f tok/s; predicted %6.2f with the read probe (%5.1f GB/s), %6.2f with membw (%5.1f GB/s); kernels at %.2f of a read, %.1f ms of vector work\n' \
        "$i" "$meas" "${p_read:-0}" "$rgbs" "${p_anon:-0}" "${agbs:-0}" "${eff:-0}" "$(awk -v v="${vec:-0}" 'BEGIN { print v * 1000 }')"
done
echo "# uptime after: $(uptime)"
"$PY" -S -E - "$RESULTS" <<'PYEOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
if not rows:
    print("no complete pair"); sys.exit(1)
m = statistics.median(r["measured_tok_s"] for r in rows)
for key, what in (("predicted_read_probe", "the read probe's bandwidth (same weights, threads, process)"),
                  ("predicted_membw", "plan --predict's own probe (--bandwidth measure)")):
    v = [r[key] for r in rows if r[key]]
    if not v:
        continue
    p = statistics.median(v)
    ratios = [r["measured_tok_s"] / r[key] for r in rows if r[key]]
    r = m / p
    print(f"with {what}: median predicted {p:.2f} tok/s, measured {m:.2f}: measured / predicted "
          f"{r:.3f} (pairs {min(ratios):.2f}-{max(ratios):.2f}): "
          f"{'within' if abs(r - 1) <= 0.15 else 'NOT within'} 15 %")
PYEOF
echo "# results: $RESULTS"
