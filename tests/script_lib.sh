# shellcheck shell=bash
# What the test scripts share (sourced, not run):
#     . "$(dirname "$0")/script_lib.sh"
# sets TEST (the script's name), SHARED (the shared test data), PY (the
# system python3 without site packages: a pyenv shim is slow in the NUMA
# VM) and TMP (a fresh folder, removed on exit; a script that needs more at
# exit sets its own trap and removes TMP there), and gives:
#   need_numalm          stop (exit 2) unless $NUMALM is the numalm binary
#   need_files FILE...   skip (exit 77) when one of them is absent or empty
#   ok TEXT / bad TEXT   a passed / failed check ($fails counts the failed)
#   finish               the closing "TEST: N failed" line; fails unless 0
#   ref_line LINE        a line of a *.greedy.jsonl reference: sets prompt
#                        and n_predict, writes the expected text (and a
#                        newline, as `numalm run` ends) to $TMP/want
TEST=$(basename "$0" .sh)
SHARED=${NUMALM_SHARED:-$(dirname "${BASH_SOURCE[0]}")/../../shared}
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

need_numalm() {
    if [ -z "${NUMALM:-}" ] || [ ! -x "$NUMALM" ]; then
        echo "$TEST: \$NUMALM is not set to the numalm binary"
        exit 2
    fi
}

need_files() {
    local f
    for f in "$@"; do
        [ -s "$f" ] || { echo "$TEST: skipped: $f is absent"; exit 77; }
    done
}

fails=0
ok() { echo "ok   $1"; }
bad() { echo "FAIL $1"; fails=$((fails + 1)); }
finish() {
    echo "$TEST: $fails failed"
    [ "$fails" = 0 ]
}

TMP=$(mktemp -d "${TMPDIR:-/tmp}/$TEST.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

ref_line() {
    n_predict=$("$PY" -S -E -c 'import json, sys
j = json.loads(sys.argv[1])
open(sys.argv[2] + "/prompt", "w").write(j["prompt"])
open(sys.argv[2] + "/want", "w").write(j["expected"] + "\n")
print(j["n_predict"])' "$1" "$TMP")
    prompt=$(cat "$TMP/prompt")
}
