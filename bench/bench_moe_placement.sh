#!/usr/bin/env bash
# Expert placement compared: every expert's rows split across the nodes
# (--moe-placement rows) against whole experts per node (experts).
#
# 1. Measured: decode tok/s of both, alternating, in the NUMA VM
#    (shared/numa-vm, NODES nodes), on an mkmodel mixture shaped for it (32
#    experts of 256, 4 used, embd 512: small enough for the VM's memory and
#    its ~20x slower code). The VM emulates the nodes' placement, not their
#    bandwidth, so what this shows is the balance: with whole experts a
#    token's active experts may all be on one node, which computes while
#    the others wait at the barrier.
# 2. Predicted for the public dual-socket topologies (shared/topologies) on
#    the Qwen3-30B-A3B-shaped model (the 30b-a3b preset, header only): the
#    traffic model of `numalm plan --predict` gives a token's time with the
#    experts' bytes spread as their average; with whole experts a layer
#    waits for the node holding the most of that layer's active experts.
#    The expected maximum over uniformly random routing (64000 sampled
#    layers, fixed seed) replaces the average for the experts' part:
#      t_experts = t_rows - x + x * E[max_k c_k / share_k] / n_used
#    where x is the experts' share of the predicted time (their bytes over
#    the busiest node's bandwidth), c_k the active experts node k holds,
#    share_k its fraction of the experts.
#
#   bench/bench_moe_placement.sh [vm] [predict]    default: both
#   env: NUMALM (default build/numalm), NODES (2), REPS (3), SHARED
#        (default ../shared next to the source)
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
NUMALM=${NUMALM:-$here/build/numalm}
SHARED=${SHARED:-$here/../shared}
NODES=${NODES:-2}
REPS=${REPS:-3}
parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(vm predict)
command -v jq >/dev/null || { echo "bench_moe_placement: needs jq" >&2; exit 1; }
work=$(mktemp -d /tmp/numalm-bench-moe.XXXXXX)
trap 'rm -rf "$work"' EXIT

for part in "${parts[@]}"; do
    case $part in
    vm)
        echo "== measured in the $NODES-node VM (uptime: $(uptime))"
        m=$work/moe-vm.gguf
        "$NUMALM" mkmodel "$m" --arch qwen3moe --embd 512 --heads 8 --kv-heads 4 --head-dim 64 \
            --blocks 4 --ff 1024 --experts 32 --experts-used 4 --ff-exp 256 --vocab 1024 \
            --type q8_0 >/dev/null
        cat >"$work/vm.sh" <<EOF
set -e
for r in \$(seq $REPS); do
    for mode in rows experts; do
        "$NUMALM" run -m "$m" -p "Once upon a time" -n 24 --moe-placement \$mode --io dio \\
            --no-echo --no-progress --json 2>&1 >/dev/null | tail -1 |
            jq -r --arg m \$mode '"\(\$m) \(.decode_tok_s)"'
    done
done
EOF
        "$SHARED/numa-vm/run" --nodes "$NODES" --cpus-per-node 2 --mem-per-node 1024 \
            --timeout 580 --append numa_balancing=disable -- bash "$work/vm.sh" >"$work/vm.out"
        for mode in rows experts; do
            vals=$(awk -v m=$mode '$1 == m {print $2}' "$work/vm.out" | sort -g | tr '\n' ' ')
            echo "$mode: decode tok/s over $REPS runs: $vals"
        done
        awk '{v[$1] = v[$1] " " $2} END {
            n = split(v["rows"], r, " "); split(v["experts"], e, " "); s = 0;
            for (i = 1; i <= n; i++) s += r[i] / e[i];
            printf "rows / experts, mean of the alternating pairs: %.2fx\n", s / n }' "$work/vm.out"
        echo "model: $NUMALM mkmodel M --arch qwen3moe --embd 512 --heads 8 --kv-heads 4" \
            "--head-dim 64 --blocks 4 --ff 1024 --experts 32 --experts-used 4 --ff-exp 256" \
            "--vocab 1024 --type q8_0"
        echo "run: $NUMALM run -m M -p 'Once upon a time' -n 24 --moe-placement rows|experts" \
            "--io dio, in numa-vm/run --nodes $NODES --cpus-per-node 2 --mem-per-node 1024"
        ;;
    predict)
        echo "== predicted for the public dual-socket topologies (uptime: $(uptime))"
        m=$work/a3b.gguf
        "$NUMALM" mkmodel "$m" --preset 30b-a3b --type q8_0 --sparse >/dev/null
        printf "%-38s %5s %10s %10s %12s %8s\n" topology nodes "rows" "experts" "E[max]/used" \
            "rows/exp"
        for t in 24em64t-2n6c2t-pci.xml 32em64t-2n8c2t-pci-normalio.xml \
            28intel64-2p2g7c-CoDgroups.v1tov2.xml; do
            xml=$SHARED/topologies/$t
            [ -f "$xml" ] || continue
            "$NUMALM" plan -m "$m" --topology "$xml" --predict --json >"$work/rows.json"
            "$NUMALM" plan -m "$m" --topology "$xml" --predict --moe-placement experts \
                --json >"$work/exp.json"
            python3 - "$work/rows.json" "$work/exp.json" "$t" <<'EOF'
import json, random, sys
rows, exp, name = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), sys.argv[3]
n_exp, used = rows["moe"]["n_expert"], rows["moe"]["n_expert_used"]
pred = rows["predict"]
scen = pred["scenarios"][0]  # numalm with the plan as built
t_tok = scen["seconds_per_token"]
gbs = pred["bandwidth"]["gbs"]
# the experts' share of a token's time: their bytes on the busiest node over
# that node's local read bandwidth
x = max(n["expert_read_bytes_per_token"] / (gbs[k][k] * 1e9) for k, n in enumerate(rows["nodes"]))
x = min(x, t_tok)
owned = [n["expert_bytes"] for n in exp["nodes"]]
share = [o / sum(owned) for o in owned]
bounds, acc = [0], 0.0
for sh in share:
    acc += sh
    bounds.append(round(acc * n_exp))
owner = []
for k in range(len(share)):
    owner += [k] * (bounds[k + 1] - bounds[k])
rng = random.Random(1)
n_samples, tot = 64000, 0.0
for _ in range(n_samples):
    c = [0] * len(share)
    for e in rng.sample(range(n_exp), used):
        c[owner[e]] += 1
    tot += max(c[k] / (share[k] * used) for k in range(len(share)) if share[k] > 0)
emax = tot / n_samples
t_exp = t_tok - x + x * emax
print(f"{name:38s} {len(share):5d} {1 / t_tok:10.2f} {1 / t_exp:10.2f} {emax:12.2f} "
      f"{t_exp / t_tok:8.2f}")
EOF
        done
        echo "tok/s: the traffic model's decode rate (plan --predict, kernels at 100% of the read"
        echo "bandwidth); experts: with each layer waiting for its busiest node (E[max]/used: the"
        echo "expected busiest node's active experts over its fair share)"
        echo "model: $NUMALM mkmodel M --preset 30b-a3b --type q8_0 --sparse (header only)"
        ;;
    *)
        echo "bench_moe_placement: unknown part '$part' (vm, predict)" >&2
        exit 2
        ;;
    esac
done
