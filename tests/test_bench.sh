#!/bin/bash
# numalm bench on a tiny model: the report, the four plots (well-formed SVG
# with a bar per measured case), results.json with every run, --json on
# stdout, and llama-bench's JSON read through --llama-bench (a stand-in
# script printing llama-bench's output format, so the test runs anywhere).
set -u
: "${NUMALM:?set NUMALM to the built numalm binary}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

"$NUMALM" mkmodel "$tmp/tiny.gguf" --preset tiny >/dev/null || fail "mkmodel"
cat >"$tmp/llama-bench" <<'EOF'
#!/bin/sh
# llama-bench -o json prints an array of tests: pp then tg
echo "$@" >>"$(dirname "$0")/llama-args"
cat <<JSON
[
  {"build_commit": "test", "n_threads": 1, "n_prompt": 8, "n_gen": 0, "avg_ts": 123.5, "stddev_ts": 1.0},
  {"build_commit": "test", "n_threads": 1, "n_prompt": 0, "n_gen": 4, "avg_ts": 45.25, "stddev_ts": 0.5}
]
JSON
EOF
chmod +x "$tmp/llama-bench"

"$NUMALM" bench -m "$tmp/tiny.gguf" -o "$tmp/report" -r 2 -p 8 -n 4 -t 1 --io dio,auto \
    --bandwidth 10 --llama-bench "$tmp/llama-bench" --json --no-progress \
    >"$tmp/stdout.json" 2>"$tmp/stderr" || { cat "$tmp/stderr"; fail "bench exited $?"; }
cat "$tmp/stderr"
for f in report.md load.svg decode.svg prompt.svg predicted.svg results.json; do
    [ -s "$tmp/report/$f" ] || fail "no $f"
done
"$PY" -S -E - "$tmp" <<'EOF' || fail "the report's contents"
import json, sys, xml.etree.ElementTree as ET
d = sys.argv[1]
r = json.load(open(f"{d}/report/results.json"))
same = json.load(open(f"{d}/stdout.json"))
assert same["cases"] == r["cases"], "--json differs from results.json"
assert r["notes"] == [], r["notes"]
cases = {(c["kind"], c["group"], c["series"]): c for c in r["cases"]}
for k in [("load", "dio", "cold"), ("load", "auto", "warm"), ("decode", "1 thread", "numalm shard"),
          ("prompt", "1 thread", "numalm shard"), ("predicted", "1 thread", "numalm shard")]:
    c = cases[k]
    n = 1 if k[0] == "predicted" else 2
    assert len(c["values"]) == n and all(v > 0 for v in c["values"]), (k, c)
    assert c["min"] <= c["median"] <= c["max"] and c["command"], (k, c)
assert cases[("decode", "1 thread", "llama.cpp")]["values"] == [45.25, 45.25]
assert cases[("prompt", "1 thread", "llama.cpp")]["values"] == [123.5, 123.5]
args = open(f"{d}/llama-args").read().split()
assert args[args.index("-t") + 1] == "1" and args[args.index("-n") + 1] == "4", args
for f, bars in [("load", 4), ("decode", 2), ("prompt", 2), ("predicted", 2)]:
    root = ET.parse(f"{d}/report/{f}.svg").getroot()
    rects = [e for e in root.iter() if e.tag.endswith("rect") and e.find("{*}title") is not None]
    assert len(rects) == bars, (f, len(rects))
md = open(f"{d}/report/report.md").read()
for s in ["## Loads", "## Prompt and decode", "## Commands", "load before", "numalm bench -m",
          "![decode](decode.svg)", "llama-bench -m"]:
    assert s in md, s
print("report ok:", len(r["cases"]), "cases")
EOF

# A placement that does not fit is left out before anything runs (the NUMA
# VM's bench_1g_placements: replicate on two nodes); when none fits, the
# admission's figures and exit 1. RLIMIT_AS below the model (not under
# ASan, which cannot run under ulimit -v).
"$NUMALM" mkmodel "$tmp/1b.gguf" --preset 1b --type q8_0 --sparse >/dev/null || fail "mkmodel 1b"
out=$(ulimit -v $((400 * 1024)) && "$NUMALM" bench -m "$tmp/1b.gguf" -o "$tmp/none" --skip-load \
    -t 1 --no-progress 2>&1)
rc=$?
if grep -q AddressSanitizer <<<"$out"; then
    echo "skipped: bench under RLIMIT_AS (an ASan build cannot run under ulimit -v)"
else
    [ $rc = 1 ] && grep -q "not enough address space for --placement shard" <<<"$out" &&
        [ ! -e "$tmp/none" ] || fail "bench of a model that fits no placement: exit $rc: $out"
    echo "ok: $out"
fi

out=$("$NUMALM" bench --llama-bench "$tmp/nothing" 2>&1)
[ $? = 2 ] && grep -q "not an executable" <<<"$out" || fail "a missing llama-bench: $out"
out=$("$NUMALM" bench --io floppy 2>&1)
[ $? = 2 ] && grep -q "floppy" <<<"$out" || fail "a bad --io: $out"
out=$("$NUMALM" bench --efficiency 2 2>&1)
[ $? = 2 ] && grep -q "efficiency 2: expected a fraction" <<<"$out" || fail "a bad --efficiency: $out"
echo "test_bench: ok"
