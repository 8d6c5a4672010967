#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what it needs, builds,
# runs every test (cmocka + scripts, multi-node tests in the NUMA VM), then the
# same suite under ASan + UBSan, then the fuzzers for FUZZ_SECONDS (60) each,
# side by side. Prints each phase's time and the load average at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
jobs=$(nproc)

# CPU seconds (user + system) of this script's finished children so far,
# in $cpu: with the wall time, a phase's figure that does not depend on what
# else the machine runs. `times` must run in this shell (a subshell, as in
# $(...), would not see the children).
times_file=$(mktemp)
prepare_log=$(mktemp)
trap 'rm -f "$times_file" "$prepare_log"' EXIT
cpu_seconds() {
    times >"$times_file"
    cpu=$(awk 'NR == 2 { split($1, u, /[ms]/); split($2, s, /[ms]/); print u[1] * 60 + u[2] + s[1] * 60 + s[2] }' \
        "$times_file")
}

# Free disk, in MiB, where the builds go and where the tests write their
# temporary models; sampled every 2 s so that the summary can say how low it
# went (a test that runs out of disk fails with ENOSPC, and the summary
# then shows why).
tmp_dir=${TMPDIR:-/tmp}
disk_log=$(mktemp)
disk_free_mib() { df -Pm "$@" | awk 'NR > 1 && (m == "" || $4 < m) { m = $4 } END { print m }'; }
disk_free_start=$(disk_free_mib . "$tmp_dir")
# The three builds take ~0.6 GiB (the sanitizer build's test programs
# share one numalm_core, CMakeLists.txt), the tests' temporary files up to
# ~1 GiB at once.
if [ "$disk_free_start" -lt 2048 ]; then
    echo "test: warning: only $disk_free_start MiB free on $(pwd) or $tmp_dir; the suite needs about 2 GiB" >&2
fi
while sleep 2; do disk_free_mib . "$tmp_dir"; done >"$disk_log" 2>/dev/null &
disk_pid=$!
trap 'rm -f "$times_file" "$prepare_log" "$disk_log"; kill "$disk_pid" 2>/dev/null' EXIT

# phase NAME: ends the running phase (its wall and CPU time go into the
# summary) and starts NAME; no NAME ends the last one.
summary=""
phase_name=""
phase() {
    local now cpu
    now=$(date +%s)
    cpu_seconds
    [ -z "$phase_name" ] ||
        summary+=$(printf '  %-42s %5d s wall %7.0f s CPU' "$phase_name:" $((now - phase_t0)) \
            "$(awk -v a="$cpu" -v b="$phase_cpu0" 'BEGIN { print a - b }')")$'\n'
    phase_name=${1:-}
    phase_t0=$now
    phase_cpu0=$cpu
    [ -z "$phase_name" ] || echo "== $phase_name"
}

phase "deps"
scripts/deps.sh
# Warm the VM harness (kernel download + unpack) while the release build
# runs; a machine that can't run it makes the VM tests skip.
../shared/numa-vm/run --prepare >"$prepare_log" 2>&1 &
prepare_pid=$!

fail=0
passed=0
failed=0
# run_ctest DIR [VAR=VALUE...] [CTEST_ARGS...]: runs ctest in a build dir
# with those variables set, echoing its output, and adds its counts to the
# totals printed at the end.
run_ctest() {
    local dir=$1 log
    local -a vars=()
    shift
    while [ $# -gt 0 ] && [[ $1 == *=* ]]; do
        vars+=("$1")
        shift
    done
    log=$(mktemp)
    (cd "$dir" && env "${vars[@]}" ctest --output-on-failure --timeout 900 -j"$jobs" "$@") 2>&1 |
        tee "$log"
    local rc=${PIPESTATUS[0]}
    local line total bad
    line=$(grep -E 'tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -1)
    total=$(sed -E 's/.* out of ([0-9]+).*/\1/' <<<"$line")
    bad=$(sed -E 's/.*passed, ([0-9]+) tests? failed.*/\1/' <<<"$line")
    rm -f "$log"
    if [ -n "$line" ]; then
        passed=$((passed + total - bad))
        failed=$((failed + bad))
    else
        failed=$((failed + 1))
    fi
    return "$rc"
}

phase "build (release)"
scripts/build.sh build
wait "$prepare_pid" || echo "test: numa-vm not prepared ($(tail -1 "$prepare_log")); VM tests will skip" >&2

# ctest runs $(nproc) tests at a time (many wait on processes, files or
# sockets for part of their time); the NUMA VM test, whose vCPUs take every
# core, runs alone (RUN_SERIAL in CMakeLists.txt).
phase "tests (release)"
run_ctest build || fail=1

phase "build (ASan + UBSan)"
scripts/build.sh build-asan -DCMAKE_BUILD_TYPE=Debug -DNUMALM_SANITIZE=ON

# The suite again under the sanitizers, with two cuts that keep every code
# path under them:
# - NUMALM_TEST_MATRIX=reduced: tests that repeat one computation over a
#   matrix of settings (placements x io modes x thread counts, types x
#   thread counts) run a subset in which every value of every setting
#   occurs (tests/test_util.h); the release run above checks every
#   combination. On this one-node machine the placements differ only in
#   planning and loading, which test_loader covers in every io mode and
#   placement.
# - no NUMA VM test: the guest runs the host's binaries under TCG about 20x
#   slower (shared/numa-vm/README.md), and the sanitizers' own slowdown
#   multiplies that. They check the same code natively, with one node;
#   what runs only with several nodes (per-node readers, row splits across
#   nodes, per-node KV heads) is checked in the VM by the release run,
#   through its results (the same tokens in every placement, --verify of
#   the weights' nodes and every block's scales), not by the sanitizers.
phase "tests (ASan + UBSan)"
run_ctest build-asan ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
    NUMALM_TEST_MATRIX=reduced -E '^test_numa_vm\.sh$' || fail=1

phase "fuzz (libFuzzer, ${FUZZ_SECONDS:-60} s per fuzzer, side by side)"
if scripts/fuzz.sh build-fuzz; then
    passed=$((passed + 1))
else
    failed=$((failed + 1))
    fail=1
fi
phase

echo "== done in $(($(date +%s) - start)) s (release + sanitizer test runs, and the fuzzers)"
printf '%s' "$summary"
echo "  load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) ($jobs cores)"
echo "  free disk (checkout, $tmp_dir): $disk_free_start MiB at the start, lowest $(awk 'm == "" || $1 < m { m = $1 } END { print m }' "$disk_log") MiB"
echo "test.sh: $passed passed, $failed failed"
exit $fail
