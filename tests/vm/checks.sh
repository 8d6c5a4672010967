#!/bin/bash
# Multi-node checks, run INSIDE the NUMA VM by tests/test_numa_vm.sh:
#   checks.sh N_NODES
# Needs $NUMALM (the numalm binary) and $NUMALM_BUILD (test programs).
# Prints one "PASS name", "FAIL name: why" or "SKIP name: why" line per check
# and exits 1 if any check failed.
#
# Adding a check: write a function check_NAME that prints what it saw and
# returns 0 (pass), 77 (skip; say why on the last line) or anything else
# (fail), then list it with `register NAME [N...]` (N...: the node counts
# whose VM runs it; default every VM). Checks run in registration
# order, each in its own subshell with a time limit, so one that hangs or
# exits cannot take the others down. Other parts may keep their checks in
# tests/vm/checks_PART.sh next to this file: those files are sourced below
# and use the same register call. NUMALM_VM_CHECKS=REGEX (exported before
# tests/test_numa_vm.sh) runs only the matching checks. tests/test_numa_vm.sh
# shares the checks of one node count between VMs with NUMALM_VM_PART=REGEX
# (this VM runs only the matching ones) and NUMALM_VM_SKIP=REGEX (and none
# of these).
#
# Which VM: a check whose result depends on the node count (plans, row and
# KV-head splits, traffic byte counts, text across placements) runs in the
# 2- and the 4-node VM; one that checks a mechanism the same way on any
# number of nodes (a policy, an io mode, a fallback, admission) is
# registered for the 2-node VM only: the 4-node VM runs code on four vCPUs
# over the host's cores and costs most of the suite's time.

N=${1:?usage: checks.sh N_NODES}
SELF_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
WORK=${NUMA_VM_SCRATCH:-${TMPDIR:-/tmp}}/numalm-checks
CHECK_TIMEOUT=${CHECK_TIMEOUT:-240}
mkdir -p "$WORK"
CHECKS=()
declare -A CHECK_NODES
register() {
    CHECKS+=("$1")
    CHECK_NODES[$1]="${*:2}"
}

# ---- helpers ----

# Runs a command, echoing it first, so a failure's log shows what ran.
run() { echo "+ $*"; "$@"; }

# The value of a top-level integer field of a JSON document on stdin.
json_int() { grep -o "\"$1\": *-\?[0-9]*" | head -1 | grep -o -- '-\?[0-9]*$'; }

# Builds the tiny model once (mkmodel is another part; skip if absent).
TINY=$WORK/tiny.gguf
tiny_model() {
    [ -s "$TINY" ] && return 0
    if ! "$NUMALM" mkmodel --help >/dev/null 2>&1; then
        echo "numalm mkmodel is not available"
        return 77
    fi
    run "$NUMALM" mkmodel "$TINY" --preset tiny >/dev/null || return 1
}

# same_text_everywhere MODEL: MODEL runs on the N nodes with --verify
# (placement and every block's scales) in every placement (weights split,
# replicated, interleaved, on the first node, on the last), and greedy text
# is the same in all of them: a dot's result does not depend on how rows
# are split.
same_text_everywhere() {
    local base="" out p
    for p in shard replicate interleave node:0 node:$((N - 1)); do
        out=$("$NUMALM" run -m "$1" -p "Once upon a time" -n 8 --temp 0 --placement "$p" \
              --verify --no-progress --json 2>"$WORK/same.err") || {
            cat "$WORK/same.err"
            return 1
        }
        echo "$p: $out | $(grep -o '"nodes":[0-9]*,"threads":[0-9]*' "$WORK/same.err")"
        grep -q "\"nodes\":$N," "$WORK/same.err" || { echo "  not on $N nodes"; return 1; }
        [ -n "$base" ] || base=$out
        [ "$out" = "$base" ] || { echo "  differs from the first run"; return 1; }
    done
}

# Node count and node OS indexes of a `numalm plan --json`.
plan_nodes() { grep -o '"kv_heads"' | wc -l; }

# ---- placement plans, loads and pinning ----

check_vm_nodes() {
    run numactl --hardware | head -1
    numactl --hardware | grep -q "^available: $N nodes" || return 1
    local nb
    nb=$(cat /proc/sys/kernel/numa_balancing 2>/dev/null)
    echo "numa_balancing=$nb"
    [ "$nb" = 0 ]
}
register vm_nodes

check_topo_nodes() {
    local out n
    out=$(run "$NUMALM" topo --json) || return 1
    echo "$out" | head -c 600; echo
    n=$(echo "$out" | json_int n_nodes)
    echo "n_nodes=$n, expected $N"
    [ "$n" = "$N" ]
}
register topo_nodes

check_plan_nodes() {
    tiny_model || return $?
    local out n rb
    out=$(run "$NUMALM" plan -m "$TINY" --json) || return 1
    n=$(echo "$out" | plan_nodes)
    rb=$(echo "$out" | json_int remote_bytes_per_token)
    echo "shard: $n plan nodes (expected $N), remote bytes/token $rb (expected 0)"
    [ "$n" = "$N" ] && [ "$rb" = 0 ] || return 1
    out=$(run "$NUMALM" plan -m "$TINY" --placement interleave --json) || return 1
    n=$(echo "$out" | plan_nodes)
    rb=$(echo "$out" | json_int remote_bytes_per_token)
    echo "interleave: $n plan nodes, remote bytes/token $rb (expected > 0)"
    [ "$n" = "$N" ] && [ "${rb:-0}" -gt 0 ] || return 1
    run "$NUMALM" plan -m "$TINY" >/dev/null || return 1
}
register plan_nodes

# test_arena binds an arena to every allowed node and interleaves one over
# all of them; its "# arena" lines say where move_pages found the pages.
check_arena_placement() {
    local out node
    out=$(run "$NUMALM_BUILD/test_arena" 2>&1)
    local rc=$?
    echo "$out" | grep -E '^# arena|FAILED|ERROR'
    [ $rc = 0 ] || return 1
    echo "$out" | grep -q "^# arena: $N allowed memory node(s)" || return 1
    for ((node = 0; node < N; node++)); do
        echo "$out" | grep -q "^# arena bound to node $node: 100.0% " || return 1
        echo "$out" | grep -qE "^# arena interleaved: node $node holds [1-9][0-9]* of" || return 1
    done
}
register arena_placement

# Under numactl only node 1 exists for numalm: topology, plan and arenas.
check_membind_node1() {
    local nc="numactl --cpunodebind=1 --membind=1"
    local out n
    out=$(run $nc "$NUMALM" topo --json) || return 1
    n=$(echo "$out" | json_int n_nodes)
    echo "topo under numactl: n_nodes=$n, allowed_nodeset $(echo "$out" | grep -o '"allowed_nodeset":"[^"]*"')"
    [ "$n" = 1 ] && echo "$out" | grep -q '"allowed_nodeset":"1"' || return 1
    out=$(run $nc "$NUMALM_BUILD/test_arena" 2>&1)
    local rc=$?
    echo "$out" | grep -E '^# arena (bound|interl|:)|FAILED|ERROR'
    [ $rc = 0 ] || return 1
    echo "$out" | grep -q "^# arena: 1 allowed memory node(s)" || return 1
    echo "$out" | grep -q "^# arena bound to node 1: 100.0% " || return 1
    if tiny_model >/dev/null; then
        out=$(run $nc "$NUMALM" plan -m "$TINY" --json) || return 1
        echo "plan under numactl: $(echo "$out" | plan_nodes) node(s)"
        [ "$(echo "$out" | plan_nodes)" = 1 ] && echo "$out" | grep -q '"node":1,' || return 1
        if $nc "$NUMALM" plan -m "$TINY" --nodes 0 >/dev/null 2>"$WORK/err"; then
            echo "--nodes 0 was accepted under --cpunodebind=1"
            return 1
        fi
        cat "$WORK/err"
        grep -q "node 0 not allowed" "$WORK/err" || return 1
    else
        echo "(plan part skipped: no mkmodel)"
    fi
}
register membind_node1 2

# ---- checks of other parts ----
for f in "$SELF_DIR"/checks_*.sh; do
    [ -e "$f" ] && . "$f"
done

# ---- runner ----
# Job control puts each check in its own process group, so the watchdog can
# kill a hung check together with the programs it started.
set -m
failed=0
for c in "${CHECKS[@]}"; do
    # NUMALM_VM_CHECKS=REGEX runs only the checks whose names match
    if [ -n "${NUMALM_VM_CHECKS:-}" ] && ! [[ $c =~ $NUMALM_VM_CHECKS ]]; then
        continue
    fi
    # another VM of this node count runs it
    if { [ -n "${NUMALM_VM_PART:-}" ] && ! [[ $c =~ $NUMALM_VM_PART ]]; } ||
        { [ -n "${NUMALM_VM_SKIP:-}" ] && [[ $c =~ $NUMALM_VM_SKIP ]]; }; then
        continue
    fi
    if [ -n "${CHECK_NODES[$c]}" ] && ! [[ " ${CHECK_NODES[$c]} " == *" $N "* ]]; then
        echo "SKIP $c: runs in the ${CHECK_NODES[$c]// / and }-node VM"
        continue
    fi
    log=$WORK/$c.log
    t0=$(date +%s)
    ( "check_$c" ) >"$log" 2>&1 </dev/null &
    pid=$!
    (
        sleep "$CHECK_TIMEOUT" &
        s=$!
        trap 'kill $s 2>/dev/null; exit 0' TERM
        wait $s
        kill -9 -- -$pid 2>/dev/null
    ) &
    watchdog=$!
    wait $pid
    rc=$?
    kill $watchdog 2>/dev/null
    wait $watchdog 2>/dev/null
    secs=$(($(date +%s) - t0))
    if [ $rc = 0 ]; then
        echo "PASS $c (${secs}s)"
    elif [ $rc = 77 ]; then
        echo "SKIP $c: $(tail -1 "$log")"
    else
        [ $rc = 137 ] && echo "(killed after ${CHECK_TIMEOUT}s)" >>"$log"
        echo "FAIL $c (rc $rc, ${secs}s):"
        # the start says what ran, the end how it failed
        if [ "$(wc -l <"$log")" -gt 40 ]; then
            head -12 "$log" | sed 's/^/    /'
            echo "    [...]"
            tail -25 "$log" | sed 's/^/    /'
        else
            sed 's/^/    /' "$log"
        fi
        failed=1
    fi
done
exit $failed
