#!/bin/bash
# The installed library as a program outside the repository sees it:
# `cmake --install` into a temporary prefix puts libnumalm (shared and
# static), numalm.h and numalm.pc there; examples/generate.c builds against
# that copy with `pkg-config --cflags --libs numalm` (and once against
# libnumalm.a) and generates llama.cpp's greedy reference text from
# stories260K; libnumalm.so exports numalm_* only; `numalm --version` of the
# installed command agrees with the .pc file. Without the model the
# generation is skipped with a message (exit 77 after the other checks).
set -u
. "$(dirname "$0")/script_lib.sh"
BUILD=${NUMALM_BUILD:?set NUMALM_BUILD to the build directory}
SRC=${NUMALM_SOURCE:-$(dirname "$0")/..}
MODEL=$SHARED/models/stories260K.gguf
REF=$SHARED/models/stories260K.greedy.jsonl
CC=${CC:-cc}

for tool in pkg-config jq nm "$CC"; do
    command -v "$tool" >/dev/null || { echo "test_install: skipped: no $tool"; exit 77; }
done
PREFIX=$TMP/prefix

# 1. The install.
if ! cmake --install "$BUILD" --prefix "$PREFIX" >"$TMP/install.log" 2>&1; then
    echo "FAIL cmake --install: $(tail -5 "$TMP/install.log")"
    exit 1
fi
pc=$(find "$PREFIX" -name numalm.pc | head -1)
[ -n "$pc" ] || { echo "FAIL no numalm.pc under $PREFIX"; exit 1; }
export PKG_CONFIG_PATH=$(dirname "$pc")
libdir=$(pkg-config --variable=libdir numalm)
for f in "$PREFIX/include/numalm.h" "$libdir/libnumalm.so" "$libdir/libnumalm.a" "$PREFIX/bin/numalm"; do
    [ -e "$f" ] && ok "installed $(basename "$f")" || bad "missing $f"
done

# 2. The shared library exports the public interface and nothing else.
others=$(nm -D --defined-only "$libdir/libnumalm.so" | awk '{print $3}' | grep -v '^numalm_')
n_public=$(nm -D --defined-only "$libdir/libnumalm.so" | awk '{print $3}' | grep -c '^numalm_')
[ -z "$others" ] && [ "$n_public" -gt 20 ] && ok "libnumalm.so exports $n_public numalm_ symbols, nothing else" ||
    bad "libnumalm.so exports $n_public numalm_ symbols and also: $(echo $others | head -c 300)"
# every function numalm.h declares is there
missing=""
for f in $(grep -oE '^NUMALM_API [^(]*\b(numalm_[a-z0-9_]+)\(' "$PREFIX/include/numalm.h" |
    grep -oE 'numalm_[a-z0-9_]+\($' | tr -d '('); do
    nm -D --defined-only "$libdir/libnumalm.so" | grep -qw "$f" || missing="$missing $f"
done
[ -z "$missing" ] && ok "every function of numalm.h is exported" || bad "not exported:$missing"

# 3. The version the installed command reports is the .pc file's.
ver=$(pkg-config --modversion numalm)
"$PREFIX/bin/numalm" --version >"$TMP/version" 2>&1
head -1 "$TMP/version" | grep -q "^numalm $ver (commit [0-9a-f]\{12\}\(-dirty\)\?)$\|^numalm $ver (commit unknown)$" &&
    grep -q "^kernels: scalar" "$TMP/version" && grep -q "^cuda: " "$TMP/version" &&
    ok "numalm --version: $(head -1 "$TMP/version")" || bad "numalm --version: $(cat "$TMP/version")"
# (-n with input: an empty output fails, where plain jq -e would pass it)
"$PREFIX/bin/numalm" --version --json | jq -en --arg v "$ver" 'input | .version == $v and (.commit | length) > 0' >/dev/null &&
    ok "numalm --version --json" || bad "numalm --version --json: $("$PREFIX/bin/numalm" --version --json)"

# 4. The example, built as its header says (and once statically).
flags=(-std=c11 -Wall -Wextra -Werror)
[ "${NUMALM_SANITIZE:-OFF}" = ON ] && flags+=(-fsanitize=address,undefined -fno-omit-frame-pointer)
if "$CC" "${flags[@]}" "$SRC/examples/generate.c" $(pkg-config --cflags --libs numalm) \
    -Wl,-rpath,"$libdir" -o "$TMP/generate" 2>"$TMP/cc.log"; then
    ok "examples/generate.c builds with pkg-config --cflags --libs numalm"
else
    bad "examples/generate.c (shared): $(cat "$TMP/cc.log")"
fi
# static: libnumalm.a, its own private libraries (depth 2: numalm's, not its
# requirements' static closure, which hwloc's .pc makes need libudev-dev)
# and the required packages' shared libraries
if "$CC" "${flags[@]}" "$SRC/examples/generate.c" $(pkg-config --cflags numalm) \
    -Wl,-Bstatic -lnumalm -Wl,-Bdynamic \
    $(pkg-config --static --libs --maximum-traverse-depth=2 numalm | sed 's/-lnumalm / /') \
    $(pkg-config --libs hwloc liburing libxxhash) -o "$TMP/generate_static" 2>"$TMP/cc.log"; then
    ldd "$TMP/generate_static" | grep -q libnumalm && bad "generate_static links libnumalm.so" ||
        ok "examples/generate.c builds against libnumalm.a"
else
    bad "examples/generate.c (static): $(cat "$TMP/cc.log")"
fi

# 5. Greedy text: llama.cpp's reference for the first prompt.
if [ ! -s "$MODEL" ] || [ ! -s "$REF" ]; then
    echo "test_install: $fails failed; generation skipped: $MODEL or $REF is absent"
    [ $fails = 0 ] && exit 77 || exit 1
fi
line=$(head -1 "$REF")
prompt=$(jq -r .prompt <<<"$line")
n=$(jq -r .n_predict <<<"$line")
jq -r .expected <<<"$line" >"$TMP/want"
for prog in generate generate_static; do
    [ -x "$TMP/$prog" ] || continue
    if "$TMP/$prog" "$MODEL" "$prompt" "$n" >"$TMP/got" 2>"$TMP/err" && cmp -s "$TMP/got" "$TMP/want"; then
        ok "$prog: llama.cpp's greedy text for '$prompt'"
    else
        bad "$prog: got '$(cat "$TMP/got")' ($(cat "$TMP/err")), want '$(cat "$TMP/want")'"
    fi
done
# errors come back as text, not a crash
"$TMP/generate" "$TMP/nope.gguf" hi >/dev/null 2>"$TMP/err" && bad "missing model accepted" ||
    { grep -q "nope.gguf" "$TMP/err" && ok "missing model: $(cat "$TMP/err")" || bad "missing model: $(cat "$TMP/err")"; }

finish
