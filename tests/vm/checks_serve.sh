# The server's multi-node checks (sourced by checks.sh inside the NUMA VM).
#
# Batches over several sequences (what `numalm serve --parallel` runs) with
# the model on all N nodes, each node holding the KV cache of its KV heads
# for every sequence: each sequence's logits must be bit for bit those it
# gets alone (test_batch's quick run: stories260K, F16 cache, 3 rows per
# sequence; the whole test takes minutes at the VM's speed and runs on the
# host). In the 4-node VM only (one KV head of stories260K per node): the
# 2-node VM's checks already fill its time limit.

check_batch_sequences_across_nodes() {
    run "$NUMALM" plan -m "${NUMALM_SHARED:-$SELF_DIR/../../../shared}/models/stories260K.gguf" \
        --json 2>/dev/null | grep -o '"kv_heads":[^]]*]' | head -4
    run "$NUMALM_BUILD/test_batch" quick
}
register batch_sequences_across_nodes 4
