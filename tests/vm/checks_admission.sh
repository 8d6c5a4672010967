# Memory admission in a real multi-node machine (sourced by checks.sh inside
# the NUMA VM; uses its helpers and loader_expect from checks_loader.sh).
# Models are header-only (mkmodel --sparse): their weights read as zeros,
# and a refusal reads only the header. The numa_vm test runs the admission_1g
# checks in a VM of their own (2 x 1 GiB), so that the shared 2 x 512 MiB VM
# only gets the header-only refusal.

# MiB of memory on node $1
node_mib() { awk '/MemTotal/ {print int($4 / 1024)}' "/sys/devices/system/node/node$1/meminfo"; }

# sparse_model NAME ARGS...: a header-only model in $WORK (once)
sparse_model() {
    local f=$WORK/$1.gguf
    shift
    [ -s "$f" ] || run "$NUMALM" mkmodel "$f" --sparse "$@" >/dev/null || return 1
    echo "$f"
}

# expect_refused OUT RC SUBSTRING...: exit 1 (never 137) and every substring
expect_refused() {
    local out=$1 rc=$2 want
    shift 2
    echo "exit $rc: $out"
    [ "$rc" = 137 ] && { echo "  killed (the OOM killer), not refused"; return 1; }
    [ "$rc" = 1 ] || { echo "  exit $rc, expected 1"; return 1; }
    for want in "$@"; do
        grep -qF -- "$want" <<<"$out" || { echo "  the message lacks '$want'"; return 1; }
    done
}

small_nodes() {
    [ "$(node_mib 0)" -lt 600 ] || { echo "nodes of $(node_mib 0) MiB: needs <= 512 MiB"; return 77; }
}

# 2 x 512 MiB: TinyLlama 1.1B Q8_0 (585 MB per node as a shard) fits no
# placement; with 4 nodes a model of 600 MB per node.
check_admission_shard_refused() {
    small_nodes || return $?
    local m out rc
    if [ "$N" = 2 ]; then
        m=$(sparse_model tl1b --preset 1b --type q8_0) || return 1
    else
        m=$(sparse_model big$N --size $((N * 600))M --type q8_0) || return 1
    fi
    out=$(run "$NUMALM" load -m "$m" --placement shard --io dio 2>&1 >/dev/null)
    expect_refused "$out" $? "not enough memory for --placement shard" "node 0 has" \
        "node $((N - 1)) has" "(short)" "No placement fits" || return 1
    out=$(run "$NUMALM" load -m "$m" --placement auto 2>&1 >/dev/null)
    expect_refused "$out" $? "not enough memory for any placement (--placement auto)" || return 1
}
register admission_shard_refused 2

# Past the check (--no-mem-check), the loader's guard stops the load when a
# node runs out, with a message instead of SIGKILL, and frees what it took:
# replicate needs 1.17 GB on each 1 GiB node.
check_admission_1g_guard() {
    [ "$(node_mib 0)" -gt 900 ] || { echo "nodes of $(node_mib 0) MiB: needs 1 GiB"; return 77; }
    local m out free0 free1
    m=$(sparse_model tl1b --preset 1b --type q8_0) || return 1
    free0=$(cat /sys/devices/system/node/node*/meminfo | awk '/MemFree/ {s += $4} END {print s}')
    out=$(run "$NUMALM" load -m "$m" --placement replicate --io dio --no-mem-check 2>&1 >/dev/null)
    expect_refused "$out" $? "ran out of memory during the load" || return 1
    free1=$(cat /sys/devices/system/node/node*/meminfo | awk '/MemFree/ {s += $4} END {print s}')
    echo "free on both nodes: $free0 kB before, $free1 kB after"
    # nothing left behind: the ~1.8 GB it took are back (within 64 MiB of
    # page cache and slab the run leaves)
    [ $((free0 - free1)) -lt 65536 ]
}
register admission_1g_guard

# A cgroup v2 limit below the model: refused with the limit's file named;
# with --no-mem-check the guard stops at the limit.
check_admission_1g_cgroup() {
    [ "$(node_mib 0)" -gt 900 ] || { echo "nodes of $(node_mib 0) MiB: needs 1 GiB"; return 77; }
    local m
    grep -q ' /sys/fs/cgroup cgroup2 ' /proc/mounts ||
        mount -t cgroup2 none /sys/fs/cgroup || { echo "cannot mount cgroup2"; return 77; }
    m=$(sparse_model c128 --size 128M --type q8_0) || return 1
    NUMALM=$NUMALM run bash "$SELF_DIR/../admission_cgroup.sh" "$m" 64
}
register admission_1g_cgroup

# 2 x 1 GiB: TinyLlama 1.1B Q8_0 replicated (1.17 GB per node) does not fit,
# sharded it does: replicate is refused naming shard, auto takes shard and
# loads it with every page on its node.
check_admission_1g_replicate() {
    [ "$(node_mib 0)" -gt 900 ] || { echo "nodes of $(node_mib 0) MiB: needs 1 GiB"; return 77; }
    local m out
    m=$(sparse_model tl1b --preset 1b --type q8_0) || return 1
    out=$(run "$NUMALM" load -m "$m" --placement replicate 2>&1 >/dev/null)
    expect_refused "$out" $? "not enough memory for --placement replicate" "node 0 has" \
        "node 1 has" "shard needs" "and fits" || return 1
    echo "+ $NUMALM load -m $m --placement auto --verify --json"
    "$NUMALM" load -m "$m" --placement auto --verify --json >"$WORK/load.json" 2>"$WORK/load.err"
    local rc=$?
    cat "$WORK/load.err"
    [ $rc = 0 ] || { echo "exit $rc"; return 1; }
    grep -q "^numalm: --placement auto: shard" "$WORK/load.err" || return 1
    loader_expect "$WORK/load.json" shard
}
register admission_1g_replicate
