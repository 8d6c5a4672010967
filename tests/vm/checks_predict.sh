# The traffic model's byte counts against the runtime's own (sourced by
# checks.sh inside the NUMA VM; uses run, register, tiny_model, $N, $WORK).
#
# For each placement: `numalm plan --predict --json` says what every node's
# workers read per decoded token (weight matrices; K and V per cached
# position); `numalm run --json` reports what the workers counted in the
# single-token passes. They must be equal, node by node: weights = evals x
# matrix bytes, KV = bytes per position x the positions each pass read.

PREDICT_PY=/usr/bin/python3
[ -x "$PREDICT_PY" ] || PREDICT_PY=python3

predict_compare() { # PLAN_JSON RUN_JSON
    "$PREDICT_PY" -S -E - "$1" "$2" <<'EOF'
import json, sys
plan = json.load(open(sys.argv[1]))
run = json.loads(open(sys.argv[2]).read().strip().splitlines()[-1])
pred = {n["node"]: n for n in plan["predict"]["scenarios"][0]["nodes"]}
t = run["traffic"]
evals, first = t["decode_evals"], run["n_prompt"]
# the decode passes run at positions first .. first+evals-1 and read pos+1 each
positions = sum(p + 1 for p in range(first, first + evals))
ok = evals == run["n_decode_evals"] and evals > 0
print(f"{plan['placement']}: {evals} decode passes after {first} prompt tokens")
for n in t["nodes"]:
    p = pred[n["node"]]
    w, kv = evals * p["matrix_bytes"], positions * p["kv_bytes_per_pos"]
    good = n["weight_bytes"] == w and n["kv_bytes"] == kv
    ok &= good
    print(f"  node {n['node']}: weights counted {n['weight_bytes']}, predicted {w}; "
          f"KV counted {n['kv_bytes']}, predicted {kv}{'' if good else '  <-- differs'}")
sys.exit(0 if ok else 1)
EOF
}

# The compute split, and so each node's counts, is the same in every
# placement: shard everywhere, interleave (one arena) in the 2-node VM.
check_predict_bytes() {
    tiny_model || return $?
    local p rc=0 placements=shard
    [ "$N" = 2 ] && placements="shard interleave"
    for p in $placements; do
        # byte counts only: --efficiency spares the emulated kernel probe
        echo "+ $NUMALM plan -m $TINY --placement $p --predict --bandwidth 10,5 --efficiency 1 -n 6 --json"
        "$NUMALM" plan -m "$TINY" --placement $p --predict --bandwidth 10,5 --efficiency 1 -n 6 --json \
            >"$WORK/plan.json" || return 1
        echo "+ $NUMALM run -m $TINY --placement $p -p 'Once upon a time' -n 6 --json"
        "$NUMALM" run -m "$TINY" --placement $p -p "Once upon a time" -n 6 --json \
            >/dev/null 2>"$WORK/run.json" || { cat "$WORK/run.json"; return 1; }
        predict_compare "$WORK/plan.json" "$WORK/run.json" || rc=1
    done
    return $rc
}
register predict_bytes

# --bandwidth measure on every pair of nodes: a matrix of positive rates,
# the kernel probe's ratios on N nodes (the VM's one run of the probe:
# other checks pass --efficiency, since it is most of their time under
# TCG), and every scenario predicted.
check_predict_measure() {
    tiny_model || return $?
    echo "+ $NUMALM plan -m $TINY --predict --bandwidth measure --json"
    "$NUMALM" plan -m "$TINY" --predict --bandwidth measure --json >"$WORK/plan.json" || return 1
    "$PREDICT_PY" -S -E - "$WORK/plan.json" "$N" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))["predict"]
n = int(sys.argv[2])
g = j["bandwidth"]["gbs"]
print(j["bandwidth"]["summary"])
print("GB/s:", g)
names = [s["name"] for s in j["scenarios"]]
print("scenarios:", names, [round(s["tok_s"], 1) for s in j["scenarios"]])
ok = len(g) == n and all(len(r) == n and all(x > 0 for x in r) for r in g)
print("kernels:", j["efficiency_source"], j["kernels"], j["barrier_s"])
ok &= j["efficiency_source"] == "measured" and all(0 < k["of_read"] <= 1 for k in j["kernels"])
ok &= len(names) == 4 and all(s["tok_s"] > 0 for s in j["scenarios"])
sys.exit(0 if ok else 1)
EOF
}
register predict_measure 2

# numalm bench on two nodes under an address-space limit (ulimit -v) that
# lets one copy of the model in but not two: replicate is left out with the
# admission's figures, shard is measured and predicted. It runs in the
# numa_vm test's 2 x 1 GiB VM.
check_bench_1g_placements() {
    [ "$N" = 2 ] && [ "$(node_mib 0)" -gt 900 ] ||
        { echo "runs in the 2 x 1 GiB VM (here $N nodes of $(node_mib 0) MiB)"; return 77; }
    local m limit out rc
    m=$(sparse_model m200 --size 200M --type q8_0) || return 1
    echo "+ $NUMALM plan -m $m --json"
    "$NUMALM" plan -m "$m" --json >"$WORK/plan.json" || return 1
    # KiB: shard's address space and half the way to replicate's (100 MB),
    # and 128 MiB for what the process maps besides (libraries, malloc arenas)
    limit=$("$PREDICT_PY" -S -E -c '
import json, sys
rows = {r["placement"]: r["address_space"] for r in json.load(open(sys.argv[1]))["memory_fit"]["placements"]}
print((rows["shard"] + (rows["replicate"] - rows["shard"]) // 2) // 1024 + 131072)' "$WORK/plan.json") ||
        return 1
    echo "+ ulimit -v $limit"
    # --efficiency 1: the kernel probe, most of this check's time under TCG,
    # runs in predict_measure (plan --predict uses the same prediction code)
    out=$(ulimit -v "$limit" && run "$NUMALM" bench -m "$m" --skip-load -r 1 -p 2 -n 1 -t 2 \
        --bandwidth 10 --efficiency 1 --placements shard,replicate -o "$WORK/bench" \
        --no-progress 2>&1)
    rc=$?
    echo "$out"
    if grep -q AddressSanitizer <<<"$out"; then
        echo "an ASan build cannot run under ulimit -v"
        return 77
    fi
    [ $rc = 0 ] || return 1
    "$PREDICT_PY" -S -E - "$WORK/bench/results.json" <<'PYEOF'
import json, sys
r = json.load(open(sys.argv[1]))
got = sorted((c["kind"], c["series"]) for c in r["cases"] if c["kind"] in ("decode", "predicted"))
print(got, r["notes"])
want = [("decode", "numalm shard"), ("predicted", "numalm shard")]
ok = got == want and all(c["values"][0] > 0 for c in r["cases"])
ok &= all("--efficiency 1" in c["command"] for c in r["cases"] if c["kind"] == "predicted")
ok &= len(r["notes"]) == 1 and "not enough address space for --placement replicate" in r["notes"][0]
sys.exit(0 if ok else 1)
PYEOF
}
register bench_1g_placements
