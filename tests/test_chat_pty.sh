#!/bin/bash
# numalm chat in a terminal: tmux runs it on a pty, send-keys types, and
# capture-pane reads the screen. A conversation with stories260K: replies
# stream, the second turn finds all of the first in the KV cache, the
# first reply is the one `numalm run --chat` gives, /reset forgets, a line
# ending in \ continues, /exit leaves with status 0. Then a random model
# that does not stop by itself: Ctrl-C stops a reply, the session goes on
# with its whole history cached (the reply's tokens as generated), Ctrl-C at
# the prompt leaves with status 0.
set -u
: "${NUMALM:?set NUMALM to the built numalm binary}"
command -v tmux >/dev/null || { echo "skipped: no tmux (scripts/deps.sh installs it)"; exit 77; }
shared=${NUMALM_SHARED:-$(dirname "$0")/../../shared}
stories=$shared/models/stories260K.gguf
[ -f "$stories" ] || { echo "skipped: $stories is absent"; exit 77; }
tmp=$(mktemp -d)
n_term=0
sock="$tmp/tmux0.sock"
trap 'tmux -S "$sock" kill-server 2>/dev/null; rm -rf "$tmp"' EXIT
fail() {
    echo "FAIL: $*"
    echo "--- screen:"
    screen
    exit 1
}
screen() { tmux -S "$sock" capture-pane -t chat -p -J -S -1000 2>/dev/null; }
# wait_for PATTERN [COUNT]: until the screen holds COUNT lines matching (60 s)
wait_for() {
    local want=${2:-1} i
    for ((i = 0; i < 600; i++)); do
        [ "$(screen | grep -cF -- "$1")" -ge "$want" ] && return 0
        sleep 0.1
    done
    fail "no '$1' (x$want) on the screen after 60 s"
}
keys() { tmux -S "$sock" send-keys -t chat "$@"; }
# wait_reply MESSAGE: until the reply to "> MESSAGE" has begun to stream
wait_reply() {
    local i
    for ((i = 0; i < 600; i++)); do
        screen | awk -v m="> $1" 'seen && length($0) > 0 { found = 1 } $0 == m { seen = 1 }
            END { exit !found }' && return 0
        sleep 0.1
    done
    fail "no reply to '$1' after 60 s"
}
# start ARGS...: numalm chat ARGS in a fresh 250x50 terminal. Each start
# gets a tmux server of its own: killing the last session makes its server
# exit, and a new-session sent to that socket meanwhile can reach the exiting
# server ("server exited unexpectedly").
start() {
    tmux -S "$sock" kill-server 2>/dev/null
    n_term=$((n_term + 1))
    sock="$tmp/tmux$n_term.sock"
    tmux -S "$sock" new-session -d -s chat -x 250 -y 50 \
        "$NUMALM chat --no-progress $*; echo EXITED \$?; sleep 60"
}

common=(-m "$stories" --chat-template llama2 -n 24 --verbose -t 1)
want=$("$NUMALM" run --chat -p "Once upon a time" --no-progress -m "$stories" --chat-template llama2 \
    -n 24 -t 1 2>/dev/null) ||
    fail "run --chat failed"
[ -n "$want" ] || fail "run --chat gave no reply"

# a file without a chat template, and --system without --chat
if err=$("$NUMALM" run --chat -m "$stories" -p hi --no-progress 2>&1 >/dev/null); then
    fail "run --chat without a template succeeded"
fi
grep -qF -- "--chat-template NAME" <<<"$err" || fail "no template: $err"
if err=$("$NUMALM" run -m "$stories" -p hi --system x 2>&1 >/dev/null); then
    fail "--system without --chat succeeded"
fi
grep -qF -- "go with --chat" <<<"$err" || fail "--system alone: $err"
echo "ok: refusals name --chat-template and --chat"

start "${common[@]}"
wait_for "> " 1
keys "Once upon a time" Enter
wait_for "[context " 1
wait_for "> " 2
screen | grep -qF -- "${want:0:40}" || fail "the reply differs from run --chat's: ${want:0:40}"
echo "ok: first reply, as run --chat gives it"
keys "Tell me more" Enter
wait_for "[context " 2
wait_for "> " 3
first=$(screen | grep -F "[context " | sed -n 1p | sed -E 's/.*context ([0-9]+) tokens.*/\1/')
cached=$(screen | grep -F "[context " | sed -n 2p | sed -E 's/.*\(([0-9]+) cached.*/\1/')
[ "$cached" -eq "$first" ] || fail "second turn: $cached cached, the first turn left $first"
echo "ok: second turn: the first turn's $first tokens came from the cache"
keys "/reset" Enter
wait_for "(conversation reset)"
keys 'Hi\' Enter
wait_for ". "
keys "there" Enter
wait_for "[context " 3
screen | grep -F "[context " | sed -n 3p | grep -qF "(0 cached" || fail "after /reset: cached tokens"
echo "ok: /reset and a continued line"
keys "/exit" Enter
wait_for "EXITED 0"
echo "ok: /exit"

# A random model: the replies never end by themselves.
"$NUMALM" mkmodel "$tmp/rnd.gguf" --preset tiny --vocab 4096 --ctx 4096 >/dev/null ||
    fail "mkmodel failed"
start -m "$tmp/rnd.gguf" --chat-template llama2 --verbose -t 1
wait_for "> " 1
keys "Hello" Enter
wait_reply "Hello"
keys C-c
wait_for "(interrupted)" 1
wait_for "[context " 1
wait_for "> " 2
keys "Again" Enter
wait_reply "Again"
keys C-c
wait_for "(interrupted)" 2
wait_for "> " 3
first=$(screen | grep -F "[context " | sed -n 1p | sed -E 's/.*context ([0-9]+) tokens.*/\1/')
cached=$(screen | grep -F "[context " | sed -n 2p | sed -E 's/.*\(([0-9]+) cached.*/\1/')
[ "$cached" -eq "$first" ] || fail "after Ctrl-C: $cached cached, the first turn left $first"
echo "ok: Ctrl-C stopped two replies; the session went on with all $cached tokens cached"
keys C-c
wait_for "EXITED 0"
echo "ok: Ctrl-C at the prompt leaves"
exit 0
