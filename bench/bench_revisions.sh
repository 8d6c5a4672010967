#!/usr/bin/env bash
# Decode speed of two revisions of numalm, side by side: each revision is
# built (Release, from `git archive`, into $WORK/REV) and bench_decode.sh
# runs with one and then the other, ROUNDS times, the order swapped every
# round so that a change in the machine's load hurts both. Prints every
# run's row and, per revision and type, the median over the rounds of the
# decode tok/s, of numalm / llama.cpp and of the paired read ("paired of
# read": decode against a read of the same weights by the same threads in
# the same process, the figure a busy machine moves least).
#
#   bench/bench_revisions.sh BEFORE [AFTER] [TYPE...]
#       BEFORE, AFTER: git revisions (AFTER defaults to HEAD);
#       TYPE: as bench_decode.sh (default q4_0)
#   env: ROUNDS (4), WORK (/tmp/numalm-revisions), and bench_decode.sh's
#        (MODELS, THREADS, N_DECODE, N_PROMPT, LLAMA_BENCH, EXTRA); each
#        bench_decode.sh call makes REPS=1 run of each tool
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
[ $# -ge 1 ] || { sed -n '2,16p' "$0"; exit 2; }
before=$1
after=${2:-HEAD}
shift $(($# >= 2 ? 2 : 1))
types=("$@")
[ ${#types[@]} -gt 0 ] || types=(q4_0)
ROUNDS=${ROUNDS:-4}
WORK=${WORK:-/tmp/numalm-revisions}
mkdir -p "$WORK"

build() { # REV -> the numalm binary built from it
    local sha dir
    sha=$(git -C "$src" rev-parse --short=12 "$1^{commit}")
    dir=$WORK/$sha
    if [ ! -x "$dir/build/numalm" ]; then
        echo "bench_revisions: building $1 ($sha) in $dir" >&2
        rm -rf "$dir" && mkdir -p "$dir"
        git -C "$src" archive "$sha" | tar -x -C "$dir"
        (cd "$dir" && cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null &&
            nice cmake --build build -j"$(nproc)" --target numalm membw >/dev/null)
    fi
    echo "$dir/build/numalm"
}
bin_before=$(build "$before")
bin_after=$(build "$after")

rows=$WORK/rows.txt
: >"$rows"
for r in $(seq "$ROUNDS"); do
    order=(before after)
    [ $((r % 2)) = 0 ] && order=(after before)
    for w in "${order[@]}"; do
        bin=$bin_before
        [ "$w" = after ] && bin=$bin_after
        echo "== round $r, $w ($bin); load: $(cut -d' ' -f1-3 /proc/loadavg)"
        REPS=1 NUMALM=$bin "$src/bench/bench_decode.sh" "${types[@]}" | tee "$WORK/run.txt"
        for t in "${types[@]}"; do
            # type, numalm dec tok/s, llama dec tok/s, ratio, paired of read
            awk -v t="$t" -v w="$w" '$1 == t { print w, $1, $2, $3, $4, $NF }' "$WORK/run.txt" >>"$rows"
        done
    done
done

median() { sort -g | awk '{v[NR] = $1} END {print NR ? v[int((NR + 1) / 2)] : "-"}'; }
echo
echo "medians over $ROUNDS rounds ($before = before, $after = after):"
printf "%-7s %-6s %10s %10s %8s\n" rev type "dec tok/s" "numalm/lc" "paired"
for w in before after; do
    for t in "${types[@]}"; do
        sel() { awk -v w="$w" -v t="$t" -v c="$1" '$1 == w && $2 == t { print $c }' "$rows"; }
        printf "%-7s %-6s %10s %10s %8s\n" "$w" "$t" "$(sel 3 | median)" "$(sel 5 | median)" \
            "$(sel 6 | tr -d % | median)%"
    done
done
