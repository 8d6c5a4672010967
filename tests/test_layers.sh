#!/usr/bin/env bash
# The folders form layers, lowest first; a file may include headers of its own
# folder and of lower folders only:
#   common < gguf < numa < io < runtime < cuda < api < tools < server < cli
# (cli holds the commands, `numalm serve` among them, so it sits on server/)
# bench/, tests/, fuzz/ and examples/ sit on top and may include anything.
# include/numalm.h, the public header, includes no project header at all,
# compiles alone (C11 and C++), and every name it declares starts with
# numalm_ / NUMALM_.
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
    server) echo 8 ;;
    cli) echo 9 ;;
    bench | tests | fuzz | examples) echo 10 ;;
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
        elif [ "$r" -lt 0 ] || [ "$tr" -gt "$r" ]; then
            echo "$file:$line: $dir/ includes $inc, a folder above it" >&2
            bad=1
        fi
    done < <(grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$file" |
        sed -E 's/^([0-9]+):[^"]*"([^"]+)".*/\1:\2/')
done < <(git ls-files '*.c' '*.h' '*.cu' '*.cuh' 2>/dev/null || find . -name '*.[ch]' | sed 's|^\./||')

# The public header on its own: a program outside the repository includes it
# first and alone, maybe twice, maybe from C++.
hdr=include/numalm.h
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf '#include "numalm.h"\n#include "numalm.h"\nint main(void) { return 0; }\n' >"$tmp/alone.c"
if ! ${CC:-cc} -std=c11 -Wall -Wextra -Wpedantic -Werror -fsyntax-only -Iinclude "$tmp/alone.c"; then
    echo "$hdr: does not compile alone as C11" >&2
    bad=1
fi
if command -v "${CXX:-c++}" >/dev/null &&
    ! "${CXX:-c++}" -Wall -Wextra -Werror -fsyntax-only -Iinclude -x c++ "$tmp/alone.c"; then
    echo "$hdr: does not compile alone as C++" >&2
    bad=1
fi
# Declared names: macros, typedefs, struct/enum tags, enum constants and
# functions (the comments and struct fields aside).
names=$(sed -E 's://.*$::' "$hdr" | perl -0pe 's:/\*.*?\*/::gs' | perl -ne '
    print "$1\n" if /^#\s*define\s+(\w+)/;
    print "$1\n" if /\b(?:struct|enum)\s+(\w+)/;
    print "$1\n" if /^\}\s*(\w+)\s*;/ || /^typedef\b.*?\b(\w+)\s*;/ || /^typedef\b.*\(\*(\w+)\)/;
    print "$1\n" if /^\s+([A-Z]\w*)\s*(=|,)/;
    print "$1\n" if /^NUMALM_API\b.*?\b(\w+)\s*\(/;')
for n in $names; do
    case $n in
    numalm_* | NUMALM_*) ;;
    *)
        echo "$hdr: '$n' is not a numalm_ / NUMALM_ name" >&2
        bad=1
        ;;
    esac
done
[ -n "$names" ] || { echo "$hdr: found no declarations to check" >&2; bad=1; }

if [ "$bad" != 0 ]; then
    echo "test_layers: failed (layer order: common < gguf < numa < io < runtime < cuda < api < tools < server < cli)" >&2
    exit 1
fi
echo "test_layers: $checked cross-folder includes, all pointing down; $hdr compiles alone and declares $(wc -w <<<"$names") numalm_ names"
