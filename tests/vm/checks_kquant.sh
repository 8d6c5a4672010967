# K-quant checks on N nodes (sourced by checks.sh inside the NUMA VM; uses
# its helpers: run, register, $N, $WORK, $NUMALM). The VM has AVX2 but no
# AVX-512, so these run the AVX2 K-quant kernels.
#
# A Q4_K_M file (Q4_K and Q6_K rows split on super-block boundaries across
# the nodes) loads with --verify (placement and every block's scales) in
# every placement, and greedy text is the same in all of them: the K-quant
# kernels' results do not depend on how rows are split.

KQ_MODEL=$WORK/tiny-q4_k_m.gguf

check_kquant_placements() {
    [ -s "$KQ_MODEL" ] || run "$NUMALM" mkmodel "$KQ_MODEL" --type q4_k_m >/dev/null || return 1
    local base="" out p
    for p in shard replicate interleave node:0 node:$((N - 1)); do
        out=$("$NUMALM" run -m "$KQ_MODEL" -p "Once upon a time" -n 8 --temp 0 --placement "$p" \
              --verify --no-progress --json 2>"$WORK/kq.err") || {
            cat "$WORK/kq.err"
            return 1
        }
        echo "$p: $out | $(grep -o '"nodes":[0-9]*,"threads":[0-9]*' "$WORK/kq.err")"
        grep -q "\"nodes\":$N," "$WORK/kq.err" || { echo "  not on $N nodes"; return 1; }
        [ -n "$base" ] || base=$out
        [ "$out" = "$base" ] || { echo "  differs from the first run"; return 1; }
    done
}
register kquant_placements
