# Helpers for the `numalm serve` tests (sourced, not run): start a server on
# a free loopback port, wait for it, stop it with SIGTERM and check that it
# exits 0 (under ASan/LSan a leak makes that fail), and ok/bad counting.
# Needs $NUMALM, stories260K, curl and python3; skips (77) without them.
. "$(dirname "${BASH_SOURCE[0]}")/script_lib.sh"
MODEL=$SHARED/models/stories260K.gguf
need_numalm
need_files "$MODEL"
command -v curl >/dev/null || { echo "$TEST: skipped: no curl (scripts/deps.sh installs it)"; exit 77; }

SPID=
cleanup() {
    [ -n "$SPID" ] && kill -KILL "$SPID" 2>/dev/null
    jobs -p | xargs -r kill 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT

# serve_start [options...]: a server on a free port; sets SPID, PORT, URL.
# Its stderr goes to $TMP/serve.log.
serve_start() {
    rm -f "$TMP/port"
    "$NUMALM" serve -m "${SERVE_MODEL:-$MODEL}" --port 0 --port-file "$TMP/port" --no-progress \
        "$@" 2>"$TMP/serve.log" &
    SPID=$!
    local i
    for i in $(seq 600); do
        if [ -s "$TMP/port" ]; then
            PORT=$(cat "$TMP/port")
            URL=http://127.0.0.1:$PORT
            [ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/health")" = 200 ] && return 0
        fi
        kill -0 "$SPID" 2>/dev/null || break
        sleep 0.1
    done
    echo "serve_start: no server ($*):"
    cat "$TMP/serve.log"
    return 1
}

# serve_stop [SIGNAL]: signals the server and waits (60 s at most); 0 when
# it exited 0.
serve_stop() {
    local sig=${1:-TERM} i rc
    kill -"$sig" "$SPID" 2>/dev/null
    for i in $(seq 600); do
        kill -0 "$SPID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$SPID" 2>/dev/null; then
        kill -KILL "$SPID"
        wait "$SPID" 2>/dev/null
        SPID=
        echo "serve_stop: still running 60 s after SIG$sig"
        return 1
    fi
    wait "$SPID"
    rc=$?
    SPID=
    [ $rc = 0 ] || { echo "serve_stop: exit status $rc:"; tail -30 "$TMP/serve.log"; }
    return $rc
}

# post PATH JSON [curl options...]: the body to stdout, the status code to
# $TMP/code.
post() {
    local path=$1 body=$2
    shift 2
    curl -sS --max-time 120 -o "$TMP/body" -w '%{http_code}' -H 'Content-Type: application/json' \
        "$@" -d "$body" "$URL$path" >"$TMP/code"
    cat "$TMP/body"
}

# metric NAME: its value from /metrics.
metric() {
    curl -s "$URL/metrics" -H "Authorization: Bearer ${SERVE_KEY:-}" |
        awk -v n="$1" '$1 == n { print $2 }'
}

# check FILE PYTHON [ARGS...]: runs the Python (with `j` the parsed JSON of
# FILE, or `t` its text when it is not JSON; ARGS from sys.argv[3]); ok when
# it raises nothing.
check() {
    "$PY" -S -E -c '
import json, sys
t = open(sys.argv[1], encoding="utf-8").read()
try:
    j = json.loads(t)
except ValueError:
    j = None
exec(sys.argv[2])
' "$@"
}

# stream_summary FILE: checks an SSE stream of chunks as OpenAI sends them
# (every event "data: {json}", one id and object throughout, the finish
# reason on the last choice chunk, "data: [DONE]" last) and prints
# {"text", "finish", "usage", "role"} as JSON.
stream_summary() {
    "$PY" -S -E -c '
import json, sys
raw = open(sys.argv[1], encoding="utf-8").read()
assert raw.endswith("data: [DONE]\n\n"), "no [DONE] at the end: " + repr(raw[-80:])
blocks = raw[:-2].split("\n\n")
text, finish, usage, role, ids, objects = "", None, None, None, set(), set()
for b in blocks[:-1]:
    assert b.startswith("data: ") and "\n" not in b, repr(b)
    c = json.loads(b[6:])
    assert "error" not in c, c
    ids.add(c["id"]); objects.add(c["object"])
    if "usage" in c and c["usage"] is not None:
        assert c["choices"] == [], c
        usage = c["usage"]
        continue
    assert finish is None, "a chunk after the finish reason: %r" % c
    ch = c["choices"][0]
    if c["object"] == "chat.completion.chunk":
        role = ch["delta"].get("role", role)
        text += ch["delta"].get("content", "")
    else:
        text += ch["text"]
    finish = ch["finish_reason"]
assert len(ids) == 1 and len(objects) == 1, (ids, objects)
print(json.dumps({"text": text, "finish": finish, "usage": usage, "role": role}))
' "$1"
}
