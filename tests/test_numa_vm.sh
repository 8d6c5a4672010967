#!/bin/bash
# Multi-node checks in a real (virtual) NUMA machine: one VM with 2 nodes, one
# with 4 and one with 2 x 1 GiB, each running tests/vm/checks.sh, which
# prints PASS/FAIL lines.
# Needs $NUMALM, $NUMALM_BUILD (test programs) and $NUMALM_SHARED (the
# numa-vm harness). Exit 77 (skipped) when the harness cannot run here.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
SHARED=${NUMALM_SHARED:-$HERE/../../shared}
RUN=$SHARED/numa-vm/run
NODE_COUNTS=${NUMALM_VM_NODES:-"2 4"}
# per VM; ctest gives the script 900 s, and the VMs run side by side
VM_TIMEOUT=${NUMALM_VM_TIMEOUT:-840}

if [ ! -x "$RUN" ]; then
    echo "test_numa_vm: skipped: no NUMA VM harness at $RUN (set NUMALM_SHARED)"
    exit 77
fi
for v in NUMALM NUMALM_BUILD; do
    if [ -z "${!v:-}" ]; then
        echo "test_numa_vm: \$$v is not set (ctest sets it; by hand: NUMALM=build/numalm NUMALM_BUILD=build)"
        exit 2
    fi
done
NUMALM=$(realpath "$NUMALM")
NUMALM_BUILD=$(realpath "$NUMALM_BUILD")
export NUMALM NUMALM_BUILD

# The VMs run side by side, NUMALM_VM_JOBS (default: all) at a time: much of
# a VM's time goes to one vCPU (bash, Python and process start-ups,
# one-thread steps), so VMs side by side use the host cores one VM leaves
# idle. Each VM writes its own log; its lines are echoed as they come,
# prefixed with the VM's name.
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# run_vm NAME NODES MiB_PER_NODE PART SKIP: one VM running the checks that
# match PART and not SKIP (empty: every check; tests/vm/checks.sh); writes
# NAME.counts (its PASS and FAIL counts, harness failures counted as FAILs)
# and NAME.rc (77: the harness cannot run here)
run_vm() {
    local name=$1 n=$2 mem=$3 log=$TMP/$1.log t0 rc out pass fail
    echo "== $name: $n-node VM, $mem MiB per node"
    t0=$(date +%s)
    # tee: lines show up as the checks finish, not only when the VM ends
    NUMALM_VM_PART=$4 NUMALM_VM_SKIP=$5 \
        "$RUN" --nodes "$n" --cpus-per-node 1 --mem-per-node "$mem" --timeout "$VM_TIMEOUT" \
        --append numa_balancing=disable -- bash "$HERE/vm/checks.sh" "$n" 2>&1 |
        tee "$log" | sed -u "s/^/[$name] /"
    rc=${PIPESTATUS[0]}
    out=$(cat "$log")
    echo "== $name: exit $rc after $(($(date +%s) - t0))s"
    echo "$rc" >"$TMP/$name.rc"
    [ $rc = 77 ] && return
    pass=$(echo "$out" | grep -c '^PASS ')
    fail=$(echo "$out" | grep -c '^FAIL ')
    if [ $rc = 124 ]; then
        echo "test_numa_vm: $name ran past ${VM_TIMEOUT}s and was stopped (checks after the last PASS/FAIL line did not run)"
        fail=$((fail + 1))
    elif [ $rc != 0 ] && [ "$fail" = 0 ]; then
        echo "test_numa_vm: the $name run failed (exit $rc) without a FAIL line"
        fail=$((fail + 1))
    fi
    # (with NUMALM_VM_CHECKS, a VM may have none of the chosen checks)
    if [ "$pass" = 0 ] && [ "$fail" = 0 ] && [ -z "${NUMALM_VM_CHECKS:-}" ]; then
        echo "test_numa_vm: no check passed in $name"
        fail=1
    fi
    echo "$pass $fail" >"$TMP/$name.counts"
}

# NAME NODES MiB PART SKIP ("-": none). Checks that need 1 GiB per node
# (memory admission where a model fits only sharded; numalm bench), named
# *_1g_*, run in a 2 x 1 GiB VM, which also takes two of the 2-node
# checks so that the two 2-node VMs take about as long as the 4-node one
# (not the probes': their buffers grow with the nodes' memory).
ONE_G='^((admission|bench)_1g_|load_fallbacks$|forward_archs_across_placements$)'
VMS=()
for n in $NODE_COUNTS; do
    if [ "$n" = 2 ]; then
        VMS+=("2n 2 512 - $ONE_G" "2n1g 2 1024 $ONE_G -")
    else
        VMS+=("${n}n $n 512 - ^(admission|bench)_1g_")
    fi
done
JOBS=${NUMALM_VM_JOBS:-${#VMS[@]}}
running=0
for vm in "${VMS[@]}"; do
    if [ "$running" -ge "$JOBS" ]; then
        wait -n
        running=$((running - 1))
    fi
    read -r -a f <<<"$vm"
    run_vm "${f[0]}" "${f[1]}" "${f[2]}" "${f[3]#-}" "${f[4]#-}" &
    running=$((running + 1))
done
wait

total_pass=0
total_fail=0
for vm in "${VMS[@]}"; do
    name=${vm%% *}
    if [ "$(cat "$TMP/$name.rc" 2>/dev/null)" = 77 ]; then
        echo "test_numa_vm: skipped: the NUMA VM harness cannot run on this machine (exit 77, see above)"
        exit 77
    fi
    read -r pass fail <"$TMP/$name.counts" || { pass=0; fail=1; }
    total_pass=$((total_pass + pass))
    total_fail=$((total_fail + fail))
done
echo "test_numa_vm: $total_pass passed, $total_fail failed"
[ $total_fail = 0 ]
