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
    same_text_everywhere "$KQ_MODEL"
}
register kquant_placements
