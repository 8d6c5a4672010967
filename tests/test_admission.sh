#!/bin/bash
# Memory admission on this machine (the multi-node cases run in the NUMA VM,
# tests/vm/checks_admission.sh): mkmodel --sparse writes the same header as a
# full model; `numalm plan` shows the fit table and auto's choice; RLIMIT_AS
# and a cgroup limit below the model refuse the load with their figures.
set -u
: "${NUMALM:?set NUMALM to the built numalm binary}"
HERE=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# --sparse: the header of the full file, the same size, zeros for weights
"$NUMALM" mkmodel "$tmp/full.gguf" --preset tiny --type q8_0 >/dev/null || fail "mkmodel"
"$NUMALM" mkmodel "$tmp/sparse.gguf" --preset tiny --type q8_0 --sparse >/dev/null ||
    fail "mkmodel --sparse"
off=$("$NUMALM" info "$tmp/full.gguf" --json | grep -o '"data_offset": *[0-9]*' | grep -o '[0-9]*$')
[ "$(stat -c %s "$tmp/full.gguf")" = "$(stat -c %s "$tmp/sparse.gguf")" ] ||
    fail "sparse file size differs"
cmp -n "$off" "$tmp/full.gguf" "$tmp/sparse.gguf" || fail "sparse header differs"
"$NUMALM" load -m "$tmp/sparse.gguf" --verify >/dev/null 2>&1 || fail "sparse model does not load"
echo "ok: --sparse header ($off bytes) and size match, loads with --verify"

# plan: the fit table, and auto on one node is shard
"$NUMALM" mkmodel "$tmp/1b.gguf" --preset 1b --type q8_0 --sparse >/dev/null || fail "mkmodel 1b"
out=$("$NUMALM" plan -m "$tmp/1b.gguf" --placement auto -c 512) || fail "plan: $out"
grep -q '^memory fit on this machine' <<<"$out" || fail "plan: no fit table: $out"
grep -q '^  replicate ' <<<"$out" && grep -q '^  shard ' <<<"$out" &&
    grep -q '^  interleave ' <<<"$out" || fail "plan: fit rows missing: $out"
grep -q 'KV cache at 512 positions' <<<"$out" || fail "plan: -c 512 not counted: $out"
grep -q '^--placement auto: shard' <<<"$out" || fail "plan: auto did not pick shard: $out"
json=$("$NUMALM" plan -m "$tmp/1b.gguf" --json)
grep -q '"memory_fit"' <<<"$json" && grep -q '"auto_why"' <<<"$json" ||
    fail "plan --json: no memory_fit"
echo "ok: plan shows the fit table; auto picks shard on one node"

# RLIMIT_AS below the weights: refused before anything is mapped (not
# under ASan, whose shadow memory alone needs terabytes of address space)
out=$(ulimit -v $((400 * 1024)) && "$NUMALM" load -m "$tmp/1b.gguf" --placement auto 2>&1)
rc=$?
if grep -q AddressSanitizer <<<"$out"; then
    echo "skipped: RLIMIT_AS check (an ASan build cannot run under ulimit -v)"
else
    [ $rc = 1 ] || fail "ulimit -v 400M: exit $rc, expected 1: $out"
    grep -q 'not enough address space' <<<"$out" && grep -q 'RLIMIT_AS' <<<"$out" ||
        fail "ulimit -v: message: $out"
    echo "ok: $out"
    out=$(ulimit -v $((400 * 1024)) && "$NUMALM" load -m "$tmp/sparse.gguf" 2>&1) ||
        fail "ulimit -v 400M refused the 3 MB model: $out"
    echo "ok: the tiny model loads under the same limit"
    # room for one copy of the weights and 256 MiB: run loads, and the
    # check before the KV cache does not count the loaded weights twice
    "$NUMALM" mkmodel "$tmp/m300.gguf" --size 300M --type q8_0 --sparse >/dev/null ||
        fail "mkmodel 300M"
    as=$("$NUMALM" plan -m "$tmp/m300.gguf" -c 64 --json | tr -d ' \n' |
        grep -o '"placement":"shard","fits":[a-z]*,[^}]*"address_space":[0-9]*' |
        grep -o '[0-9]*$')
    [ -n "$as" ] || fail "plan --json: no address_space for shard"
    out=$(ulimit -v $(((as >> 10) + 256 * 1024)) &&
        "$NUMALM" run -m "$tmp/m300.gguf" -c 64 -p hi -n 2 --no-progress 2>&1 >/dev/null) ||
        fail "run under RLIMIT_AS of its address space + 256 MiB: $out"
    echo "ok: run under RLIMIT_AS of $as bytes + 256 MiB"
fi

# a cgroup limit below the model (exit 77 from the helper: skipped)
bash "$HERE/admission_cgroup.sh" "$tmp/1b.gguf" 256
rc=$?
[ $rc = 0 ] || [ $rc = 77 ] || fail "cgroup limit check"
echo "test_admission: ok"
