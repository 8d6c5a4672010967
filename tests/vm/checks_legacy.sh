# Checks of the legacy block types Q4_1, Q5_0, Q5_1, IQ4_NL, IQ4_XS on N
# nodes (sourced by checks.sh inside the NUMA VM; uses its helpers). The VM
# has AVX2 but no AVX-512, so these run the AVX2 kernels.
#
# An IQ4_XS file with rows of 288 values (IQ4_NL fallbacks in every matrix
# but ffn_down, whose rows are whole super-blocks) gives the same greedy
# text in every placement. Small (one block, vocab 512): the IQ4 quantizer's
# scale search is slow in the emulated VM.

LEGACY_MODEL=$WORK/tiny-iq4_xs-288.gguf

check_legacy_placements() {
    [ -s "$LEGACY_MODEL" ] || run "$NUMALM" mkmodel "$LEGACY_MODEL" --type iq4_xs --embd 288 \
        --ff 768 --blocks 1 --vocab 512 >/dev/null || return 1
    same_text_everywhere "$LEGACY_MODEL"
}
register legacy_placements
