# The GPU upload's multi-node checks (sourced by checks.sh inside the NUMA
# VM; uses its helpers: run, register, tiny_model, $N, $WORK, $NUMALM).
# The VM has no GPU: --gpu cpu:NODE is the device interface's CPU
# implementation claiming to hang off NODE, as a GPU on that node would.

GPU_PY=/usr/bin/python3
[ -x "$GPU_PY" ] || GPU_PY=python3

# gpu_expect JSON_FILE NODE: staged on NODE, every staging page there, the
# reader on NODE's CPUs, every tensor's hash on the device right.
gpu_expect() {
    "$GPU_PY" -S -E - "$1" "$2" <<'EOF'
import json, sys
g, node = json.load(open(sys.argv[1]))["gpu"], int(sys.argv[2])
cpus = set()
for part in open(f"/sys/devices/system/node/node{node}/cpulist").read().strip().split(","):
    a, _, b = part.partition("-")
    cpus.update(range(int(a), int(b or a) + 1))
print(f"staging node {g['staging_node']} ({g['staging_placed_pct']}% of its pages there), "
      f"reader cpus {g['reader_cpus']} (node {node}: {sorted(cpus)}), verify_ok {g.get('verify_ok')}, "
      f"{g['tensors']} tensors, notes {g['notes']}")
ok = (g["staging_node"] == node and g["staging_placed_pct"] == 100 and g["reader_cpus"]
      and set(g["reader_cpus"]) <= cpus and g.get("verify_ok") is True)
sys.exit(0 if ok else 1)
EOF
}

# `run` without its echo, for output that goes to a file.
gpu_run() {
    echo "+ $*" >&2
    "$@"
}

# The device on the last node stages there; a staging node given by hand
# wins over the device's.
check_gpu_staging_node() {
    tiny_model || return $?
    local last=$((N - 1))
    gpu_run "$NUMALM" load -m "$TINY" --gpu cpu:$last --verify --json --gpu-slot-size 256K \
        >"$WORK/gpu.json" 2>"$WORK/err" || { cat "$WORK/err"; return 1; }
    gpu_expect "$WORK/gpu.json" $last || return 1
    gpu_run "$NUMALM" load -m "$TINY" --gpu cpu:$last --gpu-staging-node 0 --verify --json \
        >"$WORK/gpu.json" 2>"$WORK/err" || { cat "$WORK/err"; return 1; }
    gpu_expect "$WORK/gpu.json" 0
}
register gpu_staging_node
