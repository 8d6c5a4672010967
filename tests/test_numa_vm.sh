#!/bin/bash
# Multi-node checks in a real (virtual) NUMA machine: one VM with 2 nodes and
# one with 4, each running tests/vm/checks.sh, which prints PASS/FAIL lines.
# Needs $NUMALM, $NUMALM_BUILD (test programs) and $NUMALM_SHARED (the
# numa-vm harness). Exit 77 (skipped) when the harness cannot run here.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
SHARED=${NUMALM_SHARED:-$HERE/../../shared}
RUN=$SHARED/numa-vm/run
NODE_COUNTS=${NUMALM_VM_NODES:-"2 4"}
VM_TIMEOUT=${NUMALM_VM_TIMEOUT:-420} # per VM; ctest gives the script 900 s

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

LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT
total_fail=0
total_pass=0
# run_vm NODES MiB_PER_NODE [CHECKS_REGEX]: one VM, its PASS/FAIL lines counted
run_vm() {
    local n=$1 mem=$2
    echo "== $n-node VM, $mem MiB per node${3:+, checks $3}"
    t0=$(date +%s)
    # tee: lines show up as the checks finish, not only when the VM ends
    NUMALM_VM_CHECKS=${3:-${NUMALM_VM_CHECKS:-}} \
        "$RUN" --nodes "$n" --cpus-per-node 1 --mem-per-node "$mem" --timeout "$VM_TIMEOUT" \
        --append numa_balancing=disable -- bash "$HERE/vm/checks.sh" "$n" 2>&1 | tee "$LOG"
    rc=${PIPESTATUS[0]}
    out=$(cat "$LOG")
    echo "== $n-node VM: exit $rc after $(($(date +%s) - t0))s"
    if [ $rc = 77 ]; then
        echo "test_numa_vm: skipped: the NUMA VM harness cannot run on this machine (exit 77, see above)"
        exit 77
    fi
    pass=$(echo "$out" | grep -c '^PASS ')
    fail=$(echo "$out" | grep -c '^FAIL ')
    total_pass=$((total_pass + pass))
    total_fail=$((total_fail + fail))
    if [ $rc = 124 ]; then
        echo "test_numa_vm: the $n-node VM ran past ${VM_TIMEOUT}s and was stopped (checks after the last PASS/FAIL line did not run)"
        total_fail=$((total_fail + 1))
    elif [ $rc != 0 ] && [ "$fail" = 0 ]; then
        echo "test_numa_vm: the $n-node VM run failed (exit $rc) without a FAIL line"
        total_fail=$((total_fail + 1))
    fi
    if [ "$pass" = 0 ]; then
        echo "test_numa_vm: no check passed in the $n-node VM"
        total_fail=$((total_fail + 1))
    fi
}

for n in $NODE_COUNTS; do
    run_vm "$n" 512
done
# Checks that need 1 GiB per node (memory admission where a model fits only
# sharded; numalm bench): named *_1g_*, in a 2 x 1 GiB VM of their own
if [ -z "${NUMALM_VM_CHECKS:-}" ] || [[ admission_1g_replicate =~ $NUMALM_VM_CHECKS ]] ||
    [[ bench_1g_placements =~ $NUMALM_VM_CHECKS ]]; then
    run_vm 2 1024 "${NUMALM_VM_CHECKS:-^(admission|bench)_1g}"
fi
echo "test_numa_vm: $total_pass passed, $total_fail failed"
[ $total_fail = 0 ]
