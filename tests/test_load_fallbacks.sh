#!/bin/bash
# numalm load's automatic fallbacks, each announced by exactly one line, with
# the weights still verified (checksums against a plain read):
#   model on tmpfs, --io dio  -> O_DIRECT refused -> buffered reads
#   io_uring unavailable      -> preadv with O_DIRECT
#   --drop-caches as non-root -> a clear error saying root is needed
#   --hugepages, none reserved -> normal pages; --mlock over RLIMIT_MEMLOCK
# Linux >= 6.6 tmpfs accepts O_DIRECT; there the refusal is simulated with
# NUMALM_DISABLE_ODIRECT=1 (the NUMA VM's 6.1 kernel tests the real one).
set -u
NUMALM=${NUMALM:?set NUMALM to the numalm binary}
if [ ! -d /dev/shm ] || [ ! -w /dev/shm ]; then
    echo "test_load_fallbacks: skipped: no writable /dev/shm (tmpfs)"
    exit 77
fi
# system Python without site packages (a pyenv shim is slow in the NUMA VM)
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3) || { echo "test_load_fallbacks: skipped: no python3"; exit 77; }

fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
ok() { echo "ok: $*"; }

shm=$(mktemp -d /dev/shm/test_load_fallbacks.XXXXXX)
disk=$(mktemp -d "${TMPDIR:-/tmp}/test_load_fallbacks.XXXXXX")
trap 'rm -rf "$shm" "$disk"' EXIT
chmod 755 "$shm" "$disk"

# TEST_MODEL: an existing small model to use instead of writing one
if [ -n "${TEST_MODEL:-}" ]; then
    cp "$TEST_MODEL" "$shm/tiny.gguf" || { echo "FAIL: cannot copy $TEST_MODEL"; exit 1; }
else
    "$NUMALM" mkmodel "$shm/tiny.gguf" --preset tiny --type f16 >/dev/null ||
        { echo "FAIL: mkmodel"; exit 1; }
fi
cp "$shm/tiny.gguf" "$disk/tiny.gguf"
chmod 644 "$shm/tiny.gguf" "$disk/tiny.gguf"

# json FILE EXPR: prints the Python expression evaluated on the JSON as j
json() { "$PY" -S -E -c "import json,sys; j=json.load(open(sys.argv[1])); print($2)" "$1"; }

# expect_fallback NAME PATTERN IO_AFTER ENV... -- numalm load arguments
expect_fallback() {
    local name=$1 pattern=$2 io_after=$3
    shift 3
    local envs=()
    while [ "$1" != "--" ]; do envs+=("$1"); shift; done
    shift
    # --thp off: no "arenas without huge pages" line from a ballooned VM
    env "${envs[@]}" "$NUMALM" load "$@" --thp off --verify --json >"$disk/out.json" 2>"$disk/err"
    local rc=$?
    [ $rc -eq 0 ] || { fail "$name: exit $rc: $(cat "$disk/err")"; return; }
    local n_lines
    n_lines=$(grep -c "fallback:" "$disk/err")
    [ "$n_lines" -eq 1 ] || fail "$name: expected one fallback line on stderr, got $n_lines: $(cat "$disk/err")"
    grep "fallback:" "$disk/err" | grep -q -- "$pattern" ||
        fail "$name: the fallback line does not say '$pattern': $(cat "$disk/err")"
    # one Python start (~1 s in the NUMA VM) for the three fields
    local checksums_ok io n_fallbacks
    read -r checksums_ok io n_fallbacks < <(json "$disk/out.json" \
        'j["checksums_ok"], j["io"], len(j["fallbacks"])')
    [ "$checksums_ok" = True ] || fail "$name: checksums differ"
    [ "$io" = "$io_after" ] || fail "$name: io is $io, expected $io_after"
    [ "$n_fallbacks" = 1 ] || fail "$name: JSON fallbacks is not one line"
    ok "$name: $(grep 'fallback:' "$disk/err")"
}

# 1. O_DIRECT on tmpfs
if dd if="$shm/tiny.gguf" of=/dev/null bs=4096 count=1 iflag=direct 2>/dev/null; then
    echo "note: this kernel's tmpfs accepts O_DIRECT ($(uname -r)): simulating the refusal"
    "$NUMALM" load -m "$shm/tiny.gguf" --io dio --thp off --verify >"$disk/out" 2>"$disk/err" &&
        grep -q "checksums: OK" "$disk/out" && ! grep -q "fallback:" "$disk/err" &&
        ok "tmpfs accepts O_DIRECT here: loaded with dio, no fallback, checksums OK" ||
        fail "dio on tmpfs that accepts O_DIRECT: $(cat "$disk/out" "$disk/err")"
    expect_fallback "O_DIRECT refused (simulated)" "buffered reads" buffered \
        NUMALM_DISABLE_ODIRECT=1 -- -m "$shm/tiny.gguf" --io dio
else
    expect_fallback "O_DIRECT refused by tmpfs" "buffered reads" buffered \
        -- -m "$shm/tiny.gguf" --io dio
fi
# auto on tmpfs: same fallback, still auto (all reads buffered)
if ! dd if="$shm/tiny.gguf" of=/dev/null bs=4096 count=1 iflag=direct 2>/dev/null; then
    expect_fallback "auto, O_DIRECT refused by tmpfs" "buffered reads" auto \
        -- -m "$shm/tiny.gguf" --io auto --placement replicate
fi

# 2. io_uring unavailable
expect_fallback "io_uring unavailable" "preadv with O_DIRECT" dio \
    NUMALM_DISABLE_URING=1 -- -m "$disk/tiny.gguf" --io dio --placement interleave
expect_fallback "both" "buffered reads" buffered \
    NUMALM_DISABLE_URING=1 NUMALM_DISABLE_ODIRECT=1 -- -m "$disk/tiny.gguf" --io dio
if [ "$(cat /proc/sys/kernel/io_uring_disabled 2>/dev/null || echo 0)" != 0 ]; then
    expect_fallback "io_uring disabled by sysctl" "preadv with O_DIRECT" dio \
        -- -m "$disk/tiny.gguf" --io dio
fi

# 3. --drop-caches without root
as_user=()
if [ "$(id -u)" = 0 ]; then
    if command -v setpriv >/dev/null; then
        as_user=(setpriv --reuid=65534 --regid=65534 --clear-groups)
    fi
fi
if [ "$(id -u)" != 0 ] || [ ${#as_user[@]} -gt 0 ]; then
    "${as_user[@]}" "$NUMALM" load -m "$disk/tiny.gguf" --drop-caches >/dev/null 2>"$disk/err"
    rc=$?
    if [ $rc -ne 0 ] && grep -q "needs root" "$disk/err"; then
        ok "--drop-caches as non-root: $(cat "$disk/err")"
    else
        fail "--drop-caches as non-root: exit $rc: $(cat "$disk/err")"
    fi
    "${as_user[@]}" "$NUMALM" load -m "$disk/tiny.gguf" --drop-file-cache --thp off --verify \
        >"$disk/out" 2>"$disk/err" && grep -q "checksums: OK" "$disk/out" &&
        ok "--drop-file-cache works without root" ||
        fail "--drop-file-cache as non-root: $(cat "$disk/err")"
else
    echo "note: root without setpriv: the non-root check is skipped"
fi

# 4. a file truncated after numalm wrote it is refused, naming a tensor
cp "$disk/tiny.gguf" "$disk/cut.gguf"
truncate -s -100000 "$disk/cut.gguf"
"$NUMALM" load -m "$disk/cut.gguf" --io dio >/dev/null 2>"$disk/err"
rc=$?
if [ $rc -ne 0 ] && grep -q "weight" "$disk/err" && grep -q "offset" "$disk/err"; then
    ok "truncated file refused: $(head -c 300 "$disk/err")"
else
    fail "truncated file: exit $rc: $(cat "$disk/err")"
fi

# 5. --hugepages: with none reserved, one line saying how to reserve them;
# with pages reserved (root only: the test reserves and gives them back),
# the arena is MAP_HUGETLB. Weights verified either way.
hp=/proc/sys/vm/nr_hugepages
if [ "$(cat $hp 2>/dev/null || echo 1)" = 0 ]; then
    # interleave: one arena, so one line on a machine with several nodes too
    expect_fallback "--hugepages, none reserved" "nr_hugepages" dio \
        -- -m "$disk/tiny.gguf" --io dio --hugepages --placement interleave
    if [ "$(id -u)" = 0 ] && echo 16 >$hp 2>/dev/null && [ "$(cat $hp)" -ge 8 ]; then
        "$NUMALM" load -m "$disk/tiny.gguf" --io dio --hugepages --thp off --verify --json \
            >"$disk/out.json" 2>"$disk/err"
        rc=$?
        echo 0 >$hp
        if [ $rc -eq 0 ] && [ "$(json "$disk/out.json" 'j["hugetlb_bytes"] > 0 and j["checksums_ok"]')" = True ]; then
            ok "--hugepages with pages reserved: $(json "$disk/out.json" 'j["hugetlb_bytes"]') bytes in MAP_HUGETLB, checksums OK"
        else
            fail "--hugepages with pages reserved: exit $rc: $(cat "$disk/err")"
        fi
    else
        echo 0 >$hp 2>/dev/null
        echo "note: cannot reserve huge pages here: the MAP_HUGETLB path is not checked"
    fi
else
    echo "note: huge pages are already reserved here: the --hugepages checks are skipped"
fi

# 6. --mlock: locks the arena (root, or a limit that allows it); under a
# small RLIMIT_MEMLOCK a clear error naming the limit and what is needed
if "$NUMALM" load -m "$disk/tiny.gguf" --io dio --mlock --thp off --verify --json >"$disk/out.json" 2>"$disk/err"; then
    [ "$(json "$disk/out.json" 'j["locked_bytes"] > 0 and j["checksums_ok"]')" = True ] &&
        ok "--mlock: $(json "$disk/out.json" 'j["locked_bytes"]') bytes locked, checksums OK" ||
        fail "--mlock: nothing locked: $(cat "$disk/out.json")"
elif grep -q "RLIMIT_MEMLOCK" "$disk/err"; then
    ok "--mlock refused by this shell's limit, with the message: $(head -c 200 "$disk/err")"
else
    fail "--mlock: $(cat "$disk/err")"
fi
if grep -qa __asan_init "$NUMALM"; then
    echo "note: ASan build: its mlock interceptor always succeeds, the 64 KiB limit check is skipped"
elif [ "$(id -u)" != 0 ] || [ ${#as_user[@]} -gt 0 ]; then
    (ulimit -l 64 && "${as_user[@]}" "$NUMALM" load -m "$disk/tiny.gguf" --io dio --mlock) \
        >/dev/null 2>"$disk/err"
    rc=$?
    if [ $rc -ne 0 ] && grep -q "RLIMIT_MEMLOCK" "$disk/err" && grep -q "ulimit -l" "$disk/err"; then
        ok "--mlock over a 64 KiB limit: $(head -c 200 "$disk/err")"
    else
        fail "--mlock over a 64 KiB limit: exit $rc: $(cat "$disk/err")"
    fi
fi

if [ $fails -ne 0 ]; then
    echo "test_load_fallbacks: $fails failed"
    exit 1
fi
echo "test_load_fallbacks: all passed"
