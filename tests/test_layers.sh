#!/usr/bin/env bash
# The folders form layers, lowest first; a file may include headers of its own
# folder and of lower folders only:
#   common < gguf < numa < io < runtime < cuda < api < tools < cli, server
# bench/, tests/, fuzz/ and examples/ sit on top and may include anything.
# include/numalm.h, the public header, includes no project header at all.
set -euo pipefail
cd "${NUMALM_SOURCE:-$(dirname "$0")/..}"

rank() {
    case $1 in
    common) echo 0 ;;
    gguf) echo 1 ;;
    numa) echo 2 ;;
    io) echo 3 ;;
    runtime) echo 4 ;;
    cuda) echo 5 ;;
    api) echo 6 ;;
    tools) echo 7 ;;
    cli | server) echo 8 ;;
    bench | tests | fuzz | examples) echo 9 ;;
    include) echo -1 ;;
    *) echo "" ;;
    esac
}

bad=0
checked=0
while IFS= read -r file; do
    dir=${file%%/*}
    r=$(rank "$dir")
    [ -n "$r" ] || continue
    # includes in quotes: "folder/x.h", "../folder/x.h" or a same-folder "x.h"
    while IFS=: read -r line inc; do
        inc=${inc#../}
        case $inc in
        */*) target=${inc%%/*} ;;
        *)
            [ "$dir" = include ] && { echo "$file:$line: the public header includes \"$inc\"" >&2; bad=1; }
            continue
            ;;
        esac
        tr=$(rank "$target")
        checked=$((checked + 1))
        if [ -z "$tr" ]; then
            echo "$file:$line: includes \"$inc\" from an unknown folder '$target'" >&2
            bad=1
        elif [ "$r" -lt 0 ] || [ "$tr" -gt "$r" ] || { [ "$tr" = 8 ] && [ "$r" = 8 ] && [ "$target" != "$dir" ]; }; then
            echo "$file:$line: $dir/ includes $inc, a folder above it" >&2
            bad=1
        fi
    done < <(grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$file" |
        sed -E 's/^([0-9]+):[^"]*"([^"]+)".*/\1:\2/')
done < <(git ls-files '*.c' '*.h' '*.cu' '*.cuh' 2>/dev/null || find . -name '*.[ch]' | sed 's|^\./||')

if [ "$bad" != 0 ]; then
    echo "test_layers: includes point upwards (order: common < gguf < numa < io < runtime < cuda < api < tools < cli, server)" >&2
    exit 1
fi
echo "test_layers: $checked cross-folder includes, all pointing down"
