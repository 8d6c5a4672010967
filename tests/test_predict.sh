#!/bin/bash
# numalm plan --predict as a user runs it: on a public two-socket topology
# (its preset bandwidths) the scenarios and the table of every placement
# agree (the plan's own row is its scenario), a shard over two sockets is
# close to 2x one socket and node:N is one socket's memory; --json carries
# the same; on this machine the kernel probe's rates, or the assumed ones
# and the reason when the probe cannot run; bad --bandwidth values are
# refused with a message. The byte counts against the runtime's are checked
# in the NUMA VM (tests/vm/checks_predict.sh), the model itself in
# test_traffic.
set -u
: "${NUMALM:?set NUMALM to the built numalm binary}"
SHARED=${NUMALM_SHARED:-${NUMALM_SOURCE:-.}/../shared}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

"$NUMALM" mkmodel "$tmp/1b.gguf" --preset 1b --type q8_0 --sparse >/dev/null || fail "mkmodel"

# this machine, given bandwidths: every placement predicted, one node = 1x
out=$("$NUMALM" plan -m "$tmp/1b.gguf" --predict --bandwidth 20 --efficiency 1) || fail "plan --predict: $out"
grep -q '^every placement, the same nodes and threads:' <<<"$out" &&
    grep -q '^  shard ' <<<"$out" && grep -q '^  replicate ' <<<"$out" ||
    fail "no table of every placement: $out"
echo "ok: this machine"

# this machine measures what decode spends beyond streaming (the kernel
# probe): the model's one matrix type against a read, a barrier, the
# non-matrix work; --efficiency replaces the ratios
"$NUMALM" plan -m "$tmp/1b.gguf" -t 1 --predict --bandwidth 20 --json >"$tmp/here.json" ||
    fail "plan --predict --json on this machine"
"$NUMALM" plan -m "$tmp/1b.gguf" -t 1 --predict --bandwidth 20 --efficiency 0.5 --json \
    >"$tmp/opt.json" || fail "plan --predict --efficiency 0.5"
"$PY" -S -E - "$tmp" <<'EOF' || fail "the measured kernel figures"
import json, sys
d = sys.argv[1]
j = json.load(open(f"{d}/here.json"))["predict"]
print("measured:", j["efficiency"], j["kernels"], j["barrier_s"], j["kernel_source"])
assert j["efficiency_source"] == "measured", j["efficiency_source"]
assert [k["type"] for k in j["kernels"]] == ["Q8_0"], j["kernels"]
assert 0 < j["kernels"][0]["of_read"] <= 1 and j["efficiency"] == j["kernels"][0]["of_read"]
assert 0 < j["barrier_s"] < 1e-3, j["barrier_s"]
s = j["scenarios"][0]
assert 0 < s["vector_seconds_per_token"] < s["seconds_per_token"], s
o = json.load(open(f"{d}/opt.json"))["predict"]
assert o["efficiency_source"] == "option" and o["efficiency"] == 0.5 and o["kernels"] == [], o
EOF
echo "ok: measured kernel rate, barrier and non-matrix work"

# a probe that cannot run (here: no address space for its buffer of twice
# the LLC) still predicts, with the assumed rates, and says why
# (a sanitizer build reserves terabytes of shadow and cannot start so: skip)
if ! sh -c 'ulimit -v 700000 && "$0" --help >/dev/null 2>&1' "$NUMALM"; then
    echo "skipped: numalm cannot start in 700 MB of address space (a sanitizer build)"
else
out=$( (ulimit -v 700000 && "$NUMALM" plan -m "$tmp/1b.gguf" -t 1 --predict --bandwidth 20 \
    --json) 2>&1) || fail "plan --predict with the kernel probe out of memory: $out"
"$PY" -S -E -c '
import json, sys
j = json.loads(sys.argv[1])["predict"]
assert j["efficiency_source"] == "assumed" and j["efficiency"] == 1 and j["kernels"] == [], j
assert j["kernel_source"].startswith("not measured: ") and "arena" in j["kernel_source"], j
assert j["scenarios"][0]["tok_s"] > 0, j["scenarios"][0]
' "$out" || fail "the prediction without the kernel probe: $out"
echo "ok: no kernel probe: assumed rates, and the reason"
fi

XML=$SHARED/topologies/32em64t-2n8c2t-pci-normalio.xml
if [ ! -f "$XML" ]; then
    echo "skipped: $XML is absent (the checks on this machine passed)"
    exit 77
fi
for p in shard interleave node:1; do
    "$NUMALM" plan -m "$tmp/1b.gguf" --topology "$XML" --placement "$p" --predict --json \
        >"$tmp/$p.json" || fail "plan --predict --placement $p --topology"
done
"$PY" -S -E - "$tmp" <<'EOF' || fail "the predictions"
import json, sys
d = sys.argv[1]
for p in ["shard", "interleave", "node:1"]:
    j = json.load(open(f"{d}/{p}.json"))
    rows = {r["placement"]: r for r in j["predict_placements"]}
    scen = j["predict"]["scenarios"]
    print(p, "->", j["predict"]["bandwidth"]["summary"][:40], {k: round(r["speedup_vs_one_node"], 2) for k, r in rows.items()})
    assert sorted(rows) == ["interleave", "node:0", "node:1", "replicate", "shard"], rows
    assert "numalm " + p.split(":")[0] in scen[0]["name"], scen[0]["name"]
    # the plan's own row is its scenario; the same table whatever --placement
    assert abs(rows[p]["tok_s"] - scen[0]["tok_s"]) <= 1e-9 * scen[0]["tok_s"], (rows[p], scen[0])
    assert all(r["fits"] in (True, False) and r["tok_s"] > 0 for r in rows.values())
    # another machine: nothing measured, kernels at the read bandwidth
    assert j["predict"]["efficiency_source"] == "assumed" and j["predict"]["efficiency"] == 1
    # two sockets of the Sandy Bridge preset: memory-bound, so the shard
    # reads both nodes' memory (~2x), node:N only one (~1x)
    assert 1.8 <= rows["shard"]["speedup_vs_one_node"] <= 2.01, rows["shard"]
    assert rows["replicate"]["tok_s"] >= 0.99 * rows["shard"]["tok_s"], rows
    for n in ["node:0", "node:1"]:
        assert 0.9 <= rows[n]["speedup_vs_one_node"] <= 1.05, rows[n]
        assert "memory" in rows[n]["bottleneck"], rows[n]
print("predictions ok")
EOF
echo "ok: every placement on $(basename "$XML")"

for bad in fast 50,20,8,9 -3; do
    out=$("$NUMALM" plan -m "$tmp/1b.gguf" --topology "$XML" --predict --bandwidth "$bad" 2>&1)
    [ $? = 1 ] && grep -q -- "--bandwidth $bad" <<<"$out" || fail "--bandwidth $bad: $out"
done
out=$("$NUMALM" plan -m "$tmp/1b.gguf" --topology "$XML" --predict --bandwidth measure 2>&1)
[ $? = 1 ] && grep -q "another machine" <<<"$out" || fail "--bandwidth measure on an XML: $out"
echo "ok: bad --bandwidth refused: $out"
echo "test_predict: ok"
