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
echo "== build + tests (release)"
scripts/build.sh build
(cd build && ctest --output-on-failure --timeout 900) || fail=1

echo "== build + tests (ASan + UBSan)"
scripts/build.sh build-asan -DCMAKE_BUILD_TYPE=Debug -DNUMALM_SANITIZE=ON
# The whole suite again, the multi-node VM checks included (~2.5 min of it).
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --output-on-failure --timeout 900) || fail=1

echo "== fuzz (libFuzzer, ${FUZZ_SECONDS:-60} s)"
scripts/fuzz.sh build-fuzz || fail=1

echo "== done in $(( $(date +%s) - start )) s"
exit $fail
