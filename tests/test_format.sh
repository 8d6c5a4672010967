#!/bin/bash
# Every C and CUDA source is formatted as .clang-format says (the style
# guide's clang-format), so a change's diff holds only its own lines. On a
# failure it names each file and shows clang-format's version of the first.
set -u
SRC=${NUMALM_SOURCE:-.}
command -v clang-format >/dev/null ||
    { echo "skipped: clang-format is not installed (scripts/deps.sh installs it)"; exit 77; }
cd "$SRC" || { echo "FAIL: cannot enter $SRC"; exit 1; }
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    mapfile -t files < <(git ls-files '*.c' '*.h' '*.cu' '*.cuh')
else
    mapfile -t files < <(find . -path ./build\* -prune -o \
        \( -name '*.c' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' \) -print)
fi
[ "${#files[@]}" -gt 0 ] || { echo "FAIL: no sources found in $SRC"; exit 1; }
# one run over every file: --dry-run warns "FILE:LINE:COL: warning: ..."
# for each line it would change
out=$(clang-format --dry-run "${files[@]}" 2>&1) || { echo "FAIL: clang-format: $out"; exit 1; }
mapfile -t bad < <(grep -E '^[^ ]+:[0-9]+:[0-9]+: (warning|error):' <<<"$out" | cut -d: -f1 | uniq)
if [ "${#bad[@]}" -gt 0 ]; then
    echo "FAIL: not clang-formatted (run clang-format -i on them): ${bad[*]}"
    clang-format "${bad[0]}" | diff -u "${bad[0]}" - | head -40
    exit 1
fi
echo "test_format: ok (${#files[@]} files, $(clang-format --version | head -1))"
