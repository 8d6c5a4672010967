#!/bin/bash
# A cgroup memory limit below what a load needs gives a clear refusal that
# names the limit, not the OOM killer:
#   admission_cgroup.sh MODEL LIMIT_MIB
# Needs $NUMALM. Creates a child cgroup of this shell's own (cgroup v2 with
# the memory controller, else the v1 memory hierarchy), sets its limit, runs
# `numalm load` in it and removes it. Exit 77 (skip, with a message) when no
# writable memory cgroup is there: not root, or the controller is off.
set -u
: "${NUMALM:?set NUMALM to the built numalm binary}"
MODEL=${1:?usage: admission_cgroup.sh MODEL LIMIT_MIB}
LIMIT=$(( ${2:?usage: admission_cgroup.sh MODEL LIMIT_MIB} << 20 ))
skip() { echo "admission_cgroup: skipped: $*"; exit 77; }
[ "$(id -u)" = 0 ] || skip "not root (creating a cgroup needs it)"

# mount point of fstype $1 whose super options match $2 (mountinfo: the
# fields after " - " are fstype, source, super options)
mount_of() {
    awk -v fs="$1" -v opt="$2" '{
        for (i = 7; i <= NF; i++) if ($i == "-") break
        if ($(i + 1) == fs && $(i + 3) ~ opt) { print $5; exit }
    }' /proc/self/mountinfo
}
# cgroup v2: the unified mount, this process's cgroup in it
v2_dir() {
    local mnt rel
    mnt=$(mount_of cgroup2 "")
    rel=$(sed -n 's/^0:://p' /proc/self/cgroup)
    [ -n "$mnt" ] && [ -n "$rel" ] || return 1
    echo "$mnt${rel%/}"
}
v1_dir() {
    local mnt rel
    mnt=$(mount_of cgroup '(^|,)memory(,|$)')
    rel=$(awk -F: '$2 ~ /(^|,)memory(,|$)/ {print $3; exit}' /proc/self/cgroup)
    [ -n "$mnt" ] && [ -n "$rel" ] || return 1
    echo "$mnt${rel%/}"
}

CG="" LIMIT_FILE=""
parent=$(v2_dir)
if [ -n "$parent" ] && grep -qw memory "$parent/cgroup.controllers" 2>/dev/null; then
    # a child may use the controller only when the parent delegates it
    grep -qw memory "$parent/cgroup.subtree_control" 2>/dev/null ||
        echo +memory >"$parent/cgroup.subtree_control" 2>/dev/null
    if grep -qw memory "$parent/cgroup.subtree_control" 2>/dev/null &&
        mkdir "$parent/numalm-admission-$$" 2>/dev/null; then
        CG=$parent/numalm-admission-$$
        LIMIT_FILE=$CG/memory.max
    fi
fi
if [ -z "$CG" ] && parent=$(v1_dir) && [ -w "$parent" ] &&
    mkdir "$parent/numalm-admission-$$" 2>/dev/null; then
    CG=$parent/numalm-admission-$$
    LIMIT_FILE=$CG/memory.limit_in_bytes
fi
[ -n "$CG" ] || skip "no writable memory cgroup (v2 without the memory controller delegated, no v1 memory hierarchy)"
trap 'rmdir "$CG" 2>/dev/null' EXIT
echo "$LIMIT" >"$LIMIT_FILE" || skip "cannot write $LIMIT_FILE"
echo "cgroup $CG: limit $(cat "$LIMIT_FILE") bytes"

out=$(sh -c 'echo $$ >"$1/cgroup.procs" && shift && exec "$@"' sh "$CG" \
    "$NUMALM" load -m "$MODEL" --io dio 2>&1 >/dev/null)
rc=$?
echo "exit $rc: $out"
[ $rc = 1 ] || { echo "FAIL: exit $rc, expected 1 (137: the OOM killer)"; exit 1; }
grep -qF "cgroup limit" <<<"$out" && grep -qF "$LIMIT_FILE" <<<"$out" ||
    { echo "FAIL: the message does not name the limit file $LIMIT_FILE"; exit 1; }
# past the check, the loader's guard stops at the limit instead of the OOM killer
out=$(sh -c 'echo $$ >"$1/cgroup.procs" && shift && exec "$@"' sh "$CG" \
    "$NUMALM" load -m "$MODEL" --io dio --no-mem-check 2>&1 >/dev/null)
rc=$?
echo "--no-mem-check: exit $rc: $out"
[ $rc = 1 ] || { echo "FAIL: exit $rc, expected 1 (137: the OOM killer)"; exit 1; }
grep -qF "cgroup memory limit was reached during the load" <<<"$out" ||
    { echo "FAIL: not the guard's message"; exit 1; }
echo "admission_cgroup: ok"
