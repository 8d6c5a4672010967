#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what it needs, builds,
# runs every test (cmocka + scripts, multi-node tests in the NUMA VM), then the
# same suite under ASan + UBSan, then the GGUF fuzzer for FUZZ_SECONDS (60).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)

scripts/deps.sh
# Warm the VM harness once (kernel download + unpack) so the VM tests don't
# each pay for it; a machine that can't run it makes those tests skip.
../shared/numa-vm/run --prepare >/dev/null 2>&1 || echo "test: numa-vm not prepared; VM tests will skip" >&2

fail=0
passed=0
failed=0
# Runs ctest in a build dir, echoing its output, and adds its counts to the
# totals printed at the end.
run_ctest() {
    local dir=$1 log
    shift
    log=$(mktemp)
    (cd "$dir" && "$@" ctest --output-on-failure --timeout 900) 2>&1 | tee "$log"
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

echo "== build + tests (release)"
scripts/build.sh build
run_ctest build || fail=1

echo "== build + tests (ASan + UBSan)"
scripts/build.sh build-asan -DCMAKE_BUILD_TYPE=Debug -DNUMALM_SANITIZE=ON
# The whole suite again, the multi-node VM checks included (~2.5 min of it).
run_ctest build-asan env ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 || fail=1

echo "== fuzz (libFuzzer, ${FUZZ_SECONDS:-60} s)"
if scripts/fuzz.sh build-fuzz; then
    passed=$((passed + 1))
else
    failed=$((failed + 1))
    fail=1
fi

echo "== done in $(( $(date +%s) - start )) s (release + sanitizer test runs, and the fuzzer)"
echo "test.sh: $passed passed, $failed failed"
exit $fail
