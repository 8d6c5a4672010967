# The loader's multi-node checks (sourced by checks.sh inside the NUMA VM;
# uses its helpers: run, register, tiny_model, $N, $WORK, $NUMALM).
#
# Every load runs with --verify --json; loader_expect (Python) then checks
# the report: checksums, % of each arena's pages on its node (move_pages),
# and that every CPU a reader was seen on (sched_getcpu samples) belongs to
# the node it reads for.

# loader_expect JSON_FILE KIND [NODES]
#   shard|replicate|node  every listed node: placed_pct == 100
#   interleave            pages in the set, a share on every node
#   any kind              checksums_ok, reader CPUs on their own node,
#                         the report's nodes are exactly NODES (default 0..N-1)
# The system Python without site packages: a pyenv shim takes ~20 s to
# start under TCG, this ~2 s.
LOADER_PY=/usr/bin/python3
[ -x "$LOADER_PY" ] || LOADER_PY=python3

loader_expect() {
    "$LOADER_PY" -S -E - "$1" "$2" "${3:-$(seq -s, 0 $((N - 1)))}" <<'EOF'
import json, sys
path, kind, want = sys.argv[1], sys.argv[2], [int(x) for x in sys.argv[3].split(",")]
j = json.load(open(path))

def cpus_of(node):
    out = set()
    for part in open(f"/sys/devices/system/node/node{node}/cpulist").read().strip().split(","):
        if part:
            a, _, b = part.partition("-")
            out.update(range(int(a), int(b or a) + 1))
    return out

ok = True
def bad(msg):
    global ok
    ok = False
    print("  BAD:", msg)

print(f"io {j['io']} placement {j['placement']} bytes {j['bytes']} "
      f"checksums_ok {j.get('checksums_ok')} fallbacks {j['fallbacks']}")
if j.get("checksums_ok") is not True:
    bad("checksums differ from a plain read")
nodes = [n["node"] for n in j["nodes"]]
if nodes != want:
    bad(f"report nodes {nodes}, expected {want}")
for n in j["nodes"]:
    cpus, mine = set(n["reader_cpus"]), cpus_of(n["node"])
    print(f"  node {n['node']}: {n['bytes']} bytes, placed {n['placed_pct']}%, "
          f"share {n.get('share_pct')}, readers {n['readers']} on cpus {sorted(cpus)} "
          f"(node cpus {sorted(mine)})")
    if not cpus or not cpus <= mine:
        bad(f"node {n['node']}: readers ran on cpus {sorted(cpus)} outside {sorted(mine)}")
    if n["placed_pct"] is None or n["placed_pct"] < 100.0:
        bad(f"node {n['node']}: only {n['placed_pct']}% of its pages where they belong")
    if kind == "interleave" and len(want) > 1 and not n.get("share_pct", 0) > 0:
        bad(f"node {n['node']}: holds no page of the interleaved arena")
    if kind == "replicate" and n["bytes"] < j["bytes"] // len(want):
        bad(f"node {n['node']}: read {n['bytes']} bytes, less than a full copy")
sys.exit(0 if ok else 1)
EOF
}

# loader_run KIND NODES -- numalm load args...: runs, then loader_expect.
loader_run() {
    local kind=$1 nodes=$2
    shift 3
    echo "+ $NUMALM load $* --verify --json"
    "$NUMALM" load "$@" --verify --json >"$WORK/load.json" 2>"$WORK/load.err"
    local rc=$?
    cat "$WORK/load.err"
    [ $rc = 0 ] || { echo "exit $rc"; return 1; }
    loader_expect "$WORK/load.json" "$kind" $nodes
}

check_load_shard() {
    tiny_model || return $?
    local io rc=0
    for io in dio buffered auto mmap; do
        [ $io = mmap ] && continue # one copy: see load_mmap_interleave
        loader_run shard "" -- -m "$TINY" --io $io --placement shard || rc=1
    done
    return $rc
}
register load_shard

check_load_replicate() {
    tiny_model || return $?
    loader_run replicate "" -- -m "$TINY" --io dio --placement replicate || return 1
    # warm: auto maps the cached pages that already sit on a node into that
    # node's copy (zero copy) and copies the rest: at most one copy mapped
    loader_run replicate "" -- -m "$TINY" --io auto --placement replicate || return 1
    local mapped bytes
    mapped=$(json_int mapped_bytes <"$WORK/load.json")
    bytes=$(json_int bytes <"$WORK/load.json")
    echo "auto replicate: mapped $mapped of $bytes bytes (at most one copy: $((bytes / N)))"
    [ "$mapped" -le $((bytes / N)) ]
}
register load_replicate 2

check_load_interleave() {
    tiny_model || return $?
    loader_run interleave "" -- -m "$TINY" --io dio --placement interleave &&
        loader_run interleave "" -- -m "$TINY" --io buffered --placement interleave
}
register load_interleave

check_load_node_last() {
    tiny_model || return $?
    local last=$((N - 1))
    loader_run node "$last" -- -m "$TINY" --io dio --placement node:$last
}
register load_node_last 2

# The mmap baseline after dropping caches: the page cache follows the
# interleave policy, nothing off-policy; every node holds a share.
check_load_mmap_interleave() {
    tiny_model || return $?
    loader_run interleave "" -- -m "$TINY" --io mmap --placement interleave --drop-caches ||
        return 1
    local off
    off=$(json_int off_policy_pages <"$WORK/load.json")
    echo "off-policy pages after drop_caches: $off"
    [ "$off" = 0 ]
}
register load_mmap_interleave 2

check_load_membind_node1() {
    tiny_model || return $?
    local nc="numactl --cpunodebind=1 --membind=1"
    local io rc=0
    for io in dio auto; do
        echo "+ $nc $NUMALM load -m $TINY --io $io --verify --json"
        $nc "$NUMALM" load -m "$TINY" --io $io --verify --json \
            >"$WORK/load.json" 2>"$WORK/load.err" || { cat "$WORK/load.err"; return 1; }
        cat "$WORK/load.err"
        loader_expect "$WORK/load.json" shard 1 || rc=1
    done
    return $rc
}
register load_membind_node1 2

# The host's files over virtio-9p (cache=loose) under overlayfs: 9p's
# st_blksize (512 KiB) once became the O_DIRECT alignment, larger than the
# 256 KiB bounce slots, and a range starting 256 KiB past a block got
# zero-byte pieces forever (a hang). Every mode must load it, in time.
check_load_9p_shared() {
    local model=${NUMALM_SHARED:-$SELF_DIR/../../../shared}/models/stories260K.gguf
    [ -s "$model" ] || { echo "no $model"; return 77; }
    local io p rc=0
    for io in dio auto buffered; do
        for p in shard replicate; do
            echo "+ timeout 60 $NUMALM load -m $model --io $io --placement $p --verify --json"
            timeout 60 "$NUMALM" load -m "$model" --io $io --placement $p --verify --json \
                >"$WORK/load.json" 2>"$WORK/load.err"
            local r=$?
            cat "$WORK/load.err"
            [ $r = 124 ] && echo "  timed out: the read loop does not progress"
            [ $r = 0 ] && loader_expect "$WORK/load.json" $p || rc=1
        done
    done
    return $rc
}
register load_9p_shared 2

# The 6.1 kernel's tmpfs refuses O_DIRECT: the real fallback, plus the
# io_uring and --drop-caches ones (tests/test_load_fallbacks.sh).
check_load_fallbacks() {
    local script=$SELF_DIR/../test_load_fallbacks.sh
    [ -f "$script" ] || { echo "no $script"; return 77; }
    tiny_model >/dev/null && export TEST_MODEL=$TINY
    TMPDIR=$WORK run bash "$script"
}
register load_fallbacks 2
