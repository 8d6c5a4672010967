# The forward pass's multi-node checks (sourced by checks.sh inside the NUMA
# VM; uses its helpers: run, register, tiny_model, $N, $WORK, $NUMALM).
#
# Greedy `numalm run` must give the same text on every placement and io mode
# with workers on all N nodes (each node computing its own rows, KV heads
# and attention), and the text must be llama.cpp's reference. -n is small:
# code runs ~20x slower in the VM.

SHARED_STORIES=${NUMALM_SHARED:-$SELF_DIR/../../../shared}/models/stories260K.gguf
STORIES=$SHARED_STORIES

# Read straight from the host's files (9p under overlayfs), as a user would:
# O_DIRECT works there since the loader stopped taking 9p's st_blksize as
# its alignment (tests/vm/checks_loader.sh: load_9p_shared).
stories_model() {
    [ -s "$STORIES" ] && return 0
    echo "no $STORIES"
    return 77
}

check_forward_tokens_across_placements() {
    stories_model || return $?
    local want="Once upon a time, there was a little girl named Lily. She loved to play"
    local base="" base_probe="" out probe p io
    for p in shard replicate interleave node:0 node:$((N - 1)); do
        for io in dio buffered; do
            # --read-probe: each node's workers read their own rows; every
            # placement reads the same bytes once (same sum)
            out=$("$NUMALM" run -m "$STORIES" -p "Once upon a time" -n 16 --placement "$p" \
                  --io "$io" --no-progress --read-probe --json 2>"$WORK/fwd.err") || {
                cat "$WORK/fwd.err"
                return 1
            }
            probe=$(grep -o '"read_bytes":[0-9]*,"checksum":[0-9]*' "$WORK/fwd.err")
            echo "$p $io: $out | $(grep -o '"nodes":[0-9]*,"threads":[0-9]*' "$WORK/fwd.err") | $probe"
            grep -q "\"nodes\":$N," "$WORK/fwd.err" || { echo "  not on $N nodes"; return 1; }
            [ -n "$base" ] || base=$out
            [ -n "$base_probe" ] || base_probe=$probe
            [ "$out" = "$base" ] || { echo "  differs from the first run"; return 1; }
            [ -n "$probe" ] && [ "$probe" = "$base_probe" ] || {
                echo "  read probe differs from the first run's ($base_probe)"
                return 1
            }
        done
    done
    [ "$base" = "$want" ] || { echo "expected: $want"; return 1; }
}
register forward_tokens_across_placements

check_forward_threads_per_node() {
    stories_model || return $?
    local a b
    a=$("$NUMALM" run -m "$STORIES" -p "The little dog" -n 12 --no-progress 2>/dev/null) || return 1
    b=$("$NUMALM" run -m "$STORIES" -p "The little dog" -n 12 --nodes 0 --no-progress \
        2>/dev/null) || return 1
    echo "all nodes: $a"
    echo "node 0:    $b"
    [ "$a" = "$b" ]
}
register forward_threads_per_node 2

# Another architecture: the shared random-weight Qwen 3 (BPE vocab, head
# size 128 with embedding 64 so Q splits on KV groups of 128-row heads,
# per-head norms, a tied embedding: the LM head split like a matrix), or an
# mkmodel qwen3 file like it when the shared one is absent. Same greedy text
# with each node computing its KV heads (shard), from interleaved pages and
# on one node, and every node's rows (norms whole) on that node (--verify).
# The io modes are the stories260K check's business; this one stays short
# (the VM runs code ~20x slower) and runs in the 2-node VM only.
check_forward_archs_across_placements() {
    local m=${NUMALM_SHARED:-$SELF_DIR/../../../shared}/models/tiny-qwen3-e64-f32.gguf
    local base out p rc=0
    if [ ! -s "$m" ]; then
        m=$WORK/arch-qwen3.gguf
        run "$NUMALM" mkmodel "$m" --type q8_0 --blocks 2 --vocab 512 --arch qwen3 --head-dim 64 \
            --tied >/dev/null || return 1
    fi
    loader_run shard "" -- -m "$m" --io dio --placement shard || rc=1
    for p in shard interleave; do
        out=$("$NUMALM" run -m "$m" -p "Once upon a time" -n 6 --placement "$p" --io dio \
              --no-progress --json 2>"$WORK/fwd.err") || { cat "$WORK/fwd.err"; return 1; }
        echo "$p: $out"
        grep -q "\"nodes\":$N," "$WORK/fwd.err" || { echo "  not on $N nodes"; return 1; }
        [ -n "$base" ] || base=$out
        [ "$out" = "$base" ] || { echo "  differs from the first run"; rc=1; }
    done
    out=$("$NUMALM" run -m "$m" -p "Once upon a time" -n 6 --nodes 0 --no-progress 2>/dev/null)
    echo "node 0 only: $out"
    [ "$out" = "$base" ] || { echo "  differs from all nodes"; rc=1; }
    return $rc
}
register forward_archs_across_placements 2

# A mixture of experts (mkmodel's moe-tiny: 8 experts, 2 used per token):
# with every expert's rows split across the nodes (rows) and with whole
# experts per node (experts), each node holds 100 % of its expert rows
# (--verify); the plan gives every node its share; greedy text is the same
# in both modes, from a copy per node, from interleaved pages and on one
# node.
check_forward_moe() {
    local m=$WORK/moe.gguf base out args rc=0 mode
    run "$NUMALM" mkmodel "$m" --preset moe-tiny --type q8_0 --blocks 2 --vocab 512 >/dev/null ||
        return 1
    for mode in rows experts; do
        out=$("$NUMALM" plan -m "$m" --moe-placement $mode --json) || return 1
        echo "$mode: expert bytes per node: $(echo "$out" | grep -o '"expert_bytes":[0-9]*' | tr '\n' ' ')"
        [ "$(echo "$out" | grep -o '"expert_bytes":[1-9][0-9]*' | wc -l)" = "$N" ] ||
            { echo "  a node holds no expert rows"; rc=1; }
        loader_run shard "" -- -m "$m" --io dio --placement shard --moe-placement $mode || rc=1
    done
    for args in "--moe-placement rows" "--moe-placement experts" "--placement replicate" \
        "--placement interleave" "--nodes 0"; do
        out=$("$NUMALM" run -m "$m" -p "Once upon a time" -n 4 $args --no-progress 2>/dev/null) ||
            return 1
        echo "$args: $out"
        [ -n "$base" ] || base=$out
        [ "$out" = "$base" ] || { echo "  differs from the first run"; rc=1; }
    done
    return $rc
}
register forward_moe
