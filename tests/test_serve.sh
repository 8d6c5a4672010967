#!/bin/bash
# `numalm serve` with curl on loopback: /health while loading and after,
# completions and chat (plain and streamed) against llama.cpp's greedy
# reference text, usage counts, stop sequences, seeds, every error status
# (401 400 404 405 413 429) with an OpenAI-style body, -ngl with --parallel
# above 1 refused, idle and slow connections timing out, a queue that fills,
# clients that leave mid-stream, SIGTERM during a stream, and the model file
# truncated under the server.
# Every server must exit 0 on SIGTERM (under ASan/LSan: without a leak).
set -u
. "$(dirname "$0")/serve_lib.sh"
REF=$SHARED/models/stories260K.greedy.jsonl
# llama.cpp's greedy continuation of "Once upon a time", 32 tokens
WANT32=$("$PY" -S -E -c '
import json, sys
j = json.loads(open(sys.argv[1]).readline())
assert j["prompt"] == "Once upon a time" and j["n_predict"] == 32
print(j["expected"][len(j["prompt"]):], end="")' "$REF") || { bad "reference file"; exit 1; }
KEY=sekret
AUTH=(-H "Authorization: Bearer $KEY")
SERVE_KEY=$KEY

# ---- 0. Options refused before the port opens: a device runs one sequence.
for dev in "-ngl 4" "--gpu cpu"; do
    "$NUMALM" serve -m "$MODEL" --parallel 2 $dev --port 0 >"$TMP/out" 2>&1
    rc=$?
    [ $rc = 2 ] && grep -q "blocks on a device run one sequence" "$TMP/out" && ! grep -q listening "$TMP/out" &&
        ok "--parallel 2 $dev refused (exit 2)" || bad "--parallel 2 $dev: exit $rc: $(cat "$TMP/out")"
done

# ---- 1. /health answers 503 while the model loads. The server writes its
# port file before loading; a FIFO holds it there until we read the port.
FREE=$("$PY" -S -E -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkfifo "$TMP/fifo"
"$NUMALM" serve -m "$MODEL" --port "$FREE" --port-file "$TMP/fifo" --api-key $KEY --no-progress \
    2>"$TMP/serve.log" &
SPID=$!
URL=http://127.0.0.1:$FREE
for i in $(seq 100); do
    code=$(curl -s -o "$TMP/h" -w '%{http_code}' "$URL/health")
    [ "$code" != 000 ] && break
    sleep 0.1
done
[ "$code" = 503 ] && grep -q '"loading"' "$TMP/h" && ok "/health 503 while loading" ||
    bad "/health while loading: $code $(cat "$TMP/h")"
post /v1/completions '{"prompt":"x"}' "${AUTH[@]}" >/dev/null
[ "$(cat "$TMP/code")" = 503 ] && check "$TMP/body" 'assert j["error"]["code"] == "model_loading"' &&
    ok "requests 503 while loading" || bad "request while loading: $(cat "$TMP/code") $(cat "$TMP/body")"
[ "$(cat "$TMP/fifo")" = "$FREE" ] || bad "port file"
for i in $(seq 300); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/health")" = 200 ] && break
    sleep 0.1
done
[ "$(curl -s "$URL/health")" = '{"status":"ok"}' ] && ok "/health 200 once loaded" || bad "/health after load"
grep -q "loopback only.*--host 0.0.0.0" "$TMP/serve.log" && ok "says it binds loopback, and how to change it" ||
    bad "bind message: $(cat "$TMP/serve.log")"
grep -q "arenas on transparent huge pages (serve's default" "$TMP/serve.log" &&
    grep -q "weights copied into private arenas" "$TMP/serve.log" &&
    ok "log says what memory it chose and why" || bad "THP/io log: $(cat "$TMP/serve.log")"
serve_stop && ok "exit 0 on SIGTERM" || bad "exit after the loading test"

# ---- 2. The main server.
serve_start --api-key $KEY --ctx 512 --max-body 64K --timeout 3 || exit 1

curl -s "$URL/v1/models" "${AUTH[@]}" >"$TMP/models"
check "$TMP/models" 'assert j["object"] == "list" and j["data"][0]["id"] == "stories260K" and j["data"][0]["object"] == "model"' &&
    ok "/v1/models" || bad "/v1/models: $(cat "$TMP/models")"

post /v1/completions '{"prompt":"Once upon a time","max_tokens":32,"temperature":0}' "${AUTH[@]}" >"$TMP/c1"
check "$TMP/c1" '
want = sys.argv[3]
assert j["object"] == "text_completion" and j["id"].startswith("cmpl-"), j
c = j["choices"][0]
assert c["text"] == want and c["finish_reason"] == "length" and c["index"] == 0, (c, want)
assert j["usage"] == {"prompt_tokens": 5, "completion_tokens": 32, "total_tokens": 37}, j["usage"]
' "$WANT32" && ok "completion: llama.cpp's greedy text, usage 5 + 32" || bad "completion: $(cat "$TMP/c1")"

post /v1/completions '{"prompt":"Once upon a time","max_tokens":32,"temperature":0,"stream":true,"stream_options":{"include_usage":true}}' \
    "${AUTH[@]}" -N >"$TMP/s1"
stream_summary "$TMP/s1" >"$TMP/s1.json" && check "$TMP/s1.json" '
assert j["text"] == sys.argv[3] and j["finish"] == "length", j
assert j["usage"] == {"prompt_tokens": 5, "completion_tokens": 32, "total_tokens": 37}, j
' "$WANT32" && ok "streamed completion: same text, usage chunk, [DONE]" || bad "streamed completion: $(head -c 600 "$TMP/s1")"
grep -q '^data: {.*"usage"' "$TMP/s1" && [ "$(grep -c '"usage":null' "$TMP/s1")" -gt 0 ] ||
    bad "include_usage: chunks carry usage null"
post /v1/completions '{"prompt":"Once upon a time","max_tokens":4,"temperature":0,"stream":true}' "${AUTH[@]}" -N >"$TMP/s0"
! grep -q usage "$TMP/s0" && stream_summary "$TMP/s0" >/dev/null && ok "stream without usage" || bad "stream without include_usage: $(cat "$TMP/s0")"

CHAT='{"messages":[{"role":"system","content":"You tell stories."},{"role":"user","content":"Tell me about a dog."}],"max_tokens":24,"temperature":0'
post /v1/chat/completions "$CHAT}" "${AUTH[@]}" >"$TMP/ch1"
post /v1/chat/completions "$CHAT,\"stream\":true,\"stream_options\":{\"include_usage\":true}}" "${AUTH[@]}" -N >"$TMP/ch2"
stream_summary "$TMP/ch2" >"$TMP/ch2.json" && check "$TMP/ch1" '
s = json.load(open(sys.argv[3]))
assert j["object"] == "chat.completion" and j["id"].startswith("chatcmpl-"), j
c = j["choices"][0]
m = c["message"]
assert m["role"] == "assistant" and len(m["content"]) > 0, c
assert s["role"] == "assistant" and s["text"] == m["content"], (s, m)
assert s["finish"] == c["finish_reason"] and s["usage"] == j["usage"], (s, j)
u = j["usage"]
assert u["prompt_tokens"] > 20 and u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"], u
assert c["finish_reason"] == "stop" or u["completion_tokens"] == 24, j
' "$TMP/ch2.json" && ok "chat: plain and streamed agree (text, finish, usage)" || bad "chat: $(cat "$TMP/ch1") / $(head -c 400 "$TMP/ch2")"

# stop sequences: cut before the earliest match, finish_reason stop
for stream in false true; do
    post /v1/completions "{\"prompt\":\"Once upon a time\",\"max_tokens\":32,\"temperature\":0,\"stop\":[\"park\",\"girl\"],\"stream\":$stream}" \
        "${AUTH[@]}" -N >"$TMP/stop"
    if [ $stream = true ]; then stream_summary "$TMP/stop" >"$TMP/stop.json"; else
        check "$TMP/stop" 'print(json.dumps({"text": j["choices"][0]["text"], "finish": j["choices"][0]["finish_reason"]}))' >"$TMP/stop.json"; fi
    check "$TMP/stop.json" 'assert j == {**j, "text": ", there was a little ", "finish": "stop"}, j' &&
        ok "stop sequences (stream $stream)" || bad "stop (stream $stream): $(cat "$TMP/stop")"
done
post /v1/completions '{"prompt":"Once upon a time","max_tokens":32,"temperature":0,"stop":"Lily."}' "${AUTH[@]}" >"$TMP/stop"
check "$TMP/stop" 'assert j["choices"][0]["text"] == ", there was a little girl named " and j["usage"]["completion_tokens"] < 32, j' &&
    ok "stop as a string" || bad "stop string: $(cat "$TMP/stop")"

# a seed reproduces a sampled answer
S='{"prompt":"The little dog","max_tokens":24,"temperature":1.0,"top_k":40,"top_p":0.95,"seed":7}'
post /v1/completions "$S" "${AUTH[@]}" >"$TMP/seed1"
post /v1/completions "$S" "${AUTH[@]}" >"$TMP/seed2"
check "$TMP/seed1" 'assert j["choices"][0]["text"] == json.load(open(sys.argv[3]))["choices"][0]["text"]' "$TMP/seed2" &&
    ok "seed reproduces a sampled text" || bad "seed: $(cat "$TMP/seed1") vs $(cat "$TMP/seed2")"

# logit_bias: every token but one banned, so that one is all there is
BIAS=$("$PY" -S -E -c '
import json
print(json.dumps({"prompt": "Once upon a time", "max_tokens": 4, "temperature": 0,
                  "logit_bias": {str(i): -100 for i in range(512) if i != 300}}))')
post /v1/completions "$BIAS" "${AUTH[@]}" >"$TMP/bias"
check "$TMP/bias" '
t = j["choices"][0]["text"]
assert len(t) >= 4 and len(t) % 4 == 0 and t == t[: len(t) // 4] * 4, repr(t)
assert t != sys.argv[3][: len(t)]
' "$WANT32" && ok "logit_bias" || bad "logit_bias: $(cat "$TMP/bias")"

# ---- 3. Errors: status and an OpenAI-style body
expect_error() { # NAME STATUS CODE_OR_- TYPE
    local name=$1 status=$2 code=$3 type=$4
    if [ "$(cat "$TMP/code")" = "$status" ] && check "$TMP/body" '
e = j["error"]
assert set(e) == {"message", "type", "param", "code"} and e["message"], e
assert e["type"] == sys.argv[4], e
assert sys.argv[3] == "-" or e["code"] == sys.argv[3], e
' "$code" "$type"; then ok "$name: $status"; else bad "$name: $(cat "$TMP/code") $(cat "$TMP/body")"; fi
}
post /v1/completions '{"prompt":"x"}' >/dev/null
expect_error "no API key" 401 invalid_api_key invalid_request_error
post /v1/completions '{"prompt":"x"}' -H "Authorization: Bearer wrong" >/dev/null
expect_error "wrong API key" 401 invalid_api_key invalid_request_error
curl -s -o "$TMP/body" -w '%{http_code}' "$URL/v1/models" >"$TMP/code"
expect_error "GET /v1/models without the key" 401 invalid_api_key invalid_request_error
post /v1/chat/completions '{"messages": [' "${AUTH[@]}" >/dev/null
expect_error "invalid JSON" 400 - invalid_request_error
post /v1/chat/completions '{"messages":[{"role":"user","content":"hi"}],"max_tokens":"ten"}' "${AUTH[@]}" >/dev/null
expect_error "max_tokens of the wrong type" 400 - invalid_request_error
post /v1/chat/completions '{"messages":[{"role":"user","content":"hi"}],"temperature":"hot"}' "${AUTH[@]}" >/dev/null
expect_error "temperature of the wrong type" 400 - invalid_request_error
post /v1/chat/completions '{"messages":"hi"}' "${AUTH[@]}" >/dev/null
expect_error "messages of the wrong type" 400 - invalid_request_error
post /v1/completions '{"prompt":"x","logit_bias":{"512":-100}}' "${AUTH[@]}" >/dev/null
expect_error "logit_bias outside the vocabulary" 400 - invalid_request_error
LONG=$("$PY" -S -E -c 'import json; print(json.dumps({"prompt": "the dog ran " * 300}))')
post /v1/completions "$LONG" "${AUTH[@]}" >/dev/null
expect_error "prompt longer than the context" 400 context_length_exceeded invalid_request_error
"$PY" -S -E -c 'import json; print(json.dumps({"prompt": "x" * 70000}))' >"$TMP/big.json"
post /v1/completions "@$TMP/big.json" "${AUTH[@]}" >/dev/null
expect_error "body over --max-body" 413 request_too_large invalid_request_error
post /v1/completions "@$TMP/big.json" "${AUTH[@]}" -H "Transfer-Encoding: chunked" >/dev/null
expect_error "chunked body over --max-body" 413 request_too_large invalid_request_error
curl -s -o "$TMP/body" -w '%{http_code}' "$URL/v1/nothing" "${AUTH[@]}" >"$TMP/code"
expect_error "unknown path" 404 not_found invalid_request_error
curl -s -o "$TMP/body" -w '%{http_code}' "$URL/v1/completions" "${AUTH[@]}" >"$TMP/code"
expect_error "GET on a POST endpoint" 405 method_not_allowed invalid_request_error
post /v1/completions '{"prompt":"Once upon a time","max_tokens":8,"temperature":0}' "${AUTH[@]}" >/dev/null
[ "$(cat "$TMP/code")" = 200 ] && ok "serving after the errors" || bad "after errors: $(cat "$TMP/body")"

# ---- 4. Idle and slow connections are closed after --timeout (3 s).
"$PY" -S -E - "$PORT" <<'EOF' && ok "idle and slow connections time out" || bad "timeouts"
import socket, sys, time
def closed_within(send, limit):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    s.settimeout(0.2)
    t0 = time.time()
    send(s, 0)
    k = 1
    while time.time() - t0 < limit:
        try:
            if s.recv(4096) == b"":
                return time.time() - t0
        except socket.timeout:
            pass
        except ConnectionResetError:
            return time.time() - t0
        try:
            send(s, k)
        except (BrokenPipeError, ConnectionResetError):
            return time.time() - t0
        k += 1
    return None
# half a request, then nothing
idle = closed_within(lambda s, k: k == 0 and s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n"), 12)
# a body trickling in, one byte every 0.2 s: never idle, still closed
head = b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\nAuthorization: Bearer sekret\r\n\r\n"
slow = closed_within(lambda s, k: s.sendall(head if k == 0 else b" "), 12)
print("idle closed after", idle, "s; slow closed after", slow, "s")
assert idle is not None and 2 <= idle <= 8, idle
assert slow is not None and 2 <= slow <= 8, slow
EOF

# metrics count what happened
curl -s "$URL/metrics" "${AUTH[@]}" >"$TMP/metrics"
check "$TMP/metrics" '
m = {}
for line in t.splitlines():
    if line and not line.startswith("#"):
        k, v = line.rsplit(" ", 1)
        m[k] = float(v)
assert m["numalm_requests_total{endpoint=\"completions\",code=\"200\"}"] >= 8, m
assert m["numalm_requests_total{endpoint=\"completions\",code=\"401\"}"] == 2, m
assert m["numalm_requests_total{endpoint=\"completions\",code=\"413\"}"] == 2, m
assert m["numalm_prompt_tokens_total"] >= 40 and m["numalm_completion_tokens_total"] >= 150, m
assert m["numalm_slots_total"] == 1 and m["numalm_slots_active"] == 0 and m["numalm_queue_depth"] == 0, m
assert m["numalm_time_to_first_token_seconds_count"] >= 8, m
assert any(k.startswith("numalm_node_bytes{node=\"0\",kind=\"weights\"}") and v > 1e6 for k, v in m.items()), m
assert any(k.startswith("numalm_node_bytes{node=\"0\",kind=\"kv_cache\"}") and v > 0 for k, v in m.items()), m
assert "numalm_tokens_per_second" in m
' && ok "/metrics counts requests, tokens, slots, node bytes" || bad "/metrics: $(cat "$TMP/metrics")"
serve_stop && ok "main server: exit 0 on SIGTERM" || bad "main server exit"

# ---- 5. One slot, a queue of one: the third request gets 429; clients
# that leave free their slot and their queue place.
serve_start --parallel 1 --queue 1 --ctx 16384 --grace 1 || exit 1
HOLD='{"prompt":"Once upon a time","max_tokens":16000,"temperature":0,"ignore_eos":true,"stream":true}'
wait_metric() { # NAME VALUE: up to 20 s
    for i in $(seq 200); do [ "$(metric "$1")" = "$2" ] && return 0; sleep 0.1; done
    return 1
}
curl -sN "$URL/v1/completions" -d "$HOLD" >"$TMP/a" 2>/dev/null &
A=$!
wait_metric numalm_slots_active 1 || bad "first request did not start"
# the first stream sends before the disconnect (up to 20 s: a starved CPU)
for i in $(seq 200); do grep -q '^data: {' "$TMP/a" && break; sleep 0.1; done
curl -sN "$URL/v1/completions" -d "$HOLD" >"$TMP/b" 2>/dev/null &
B=$!
wait_metric numalm_queue_depth 1 || bad "second request was not queued"
post /v1/completions '{"prompt":"x","max_tokens":1}' >/dev/null
expect_error "queue full" 429 queue_full rate_limit_error
kill $A $B
wait $A $B 2>/dev/null
wait_metric numalm_slots_active 0 && wait_metric numalm_queue_depth 0 &&
    [ "$(metric numalm_requests_cancelled_total)" = 2 ] && ok "clients that disconnect free their slot and queue place" ||
    bad "after disconnects: active $(metric numalm_slots_active), queued $(metric numalm_queue_depth), cancelled $(metric numalm_requests_cancelled_total)"
[ "$(grep -c '^data: {' "$TMP/a")" -gt 0 ] || bad "the first stream sent nothing before the disconnect"
post /v1/completions '{"prompt":"Once upon a time","max_tokens":32,"temperature":0}' >"$TMP/after"
check "$TMP/after" 'assert j["choices"][0]["text"] == sys.argv[3]' "$WANT32" &&
    ok "the freed slot serves the same greedy text" || bad "after disconnects: $(cat "$TMP/after")"

# SIGTERM during a stream: after the grace time (1 s) the stream ends with
# an error event and [DONE]; the server exits 0.
curl -sN "$URL/v1/completions" -d "$HOLD" >"$TMP/term" 2>/dev/null &
A=$!
wait_metric numalm_slots_active 1 || bad "stream before SIGTERM did not start"
serve_stop TERM && ok "SIGTERM during a stream: exit 0" || bad "SIGTERM during a stream"
wait $A
"$PY" -S -E - "$TMP/term" <<'EOF' && ok "the stream ends with an error event and [DONE]" || bad "stream at SIGTERM: $(tail -c 400 "$TMP/term")"
import json, sys
ev = open(sys.argv[1]).read().split("\n\n")
assert ev[-1] == "" and ev[-2] == "data: [DONE]", ev[-3:]
err = json.loads(ev[-3][6:])["error"]
assert "shutting down" in err["message"] and err["type"] == "server_error", err
assert len(ev) > 4  # text came before
EOF
grep -q "SIGTERM: not accepting connections; 1 running" "$TMP/serve.log" && grep -q "grace time over" "$TMP/serve.log" &&
    ok "log says how it stops" || bad "stop log: $(cat "$TMP/serve.log")"

# ---- 6. The model file truncated, then rewritten, under a running server.
cp "$MODEL" "$TMP/model.gguf"
SERVE_MODEL=$TMP/model.gguf serve_start || exit 1
REQ='{"prompt":"Once upon a time","max_tokens":32,"temperature":0}'
truncate -s 0 "$TMP/model.gguf"
post /v1/completions "$REQ" >"$TMP/t1"
head -c 1185376 /dev/urandom >"$TMP/model.gguf"
post /v1/completions "$REQ" >"$TMP/t2"
check "$TMP/t1" 'assert j["choices"][0]["text"] == sys.argv[3]' "$WANT32" &&
    check "$TMP/t2" 'assert j["choices"][0]["text"] == sys.argv[3]' "$WANT32" &&
    ok "file truncated and rewritten: same answers" || bad "after truncation: $(cat "$TMP/t1") $(cat "$TMP/t2")"
serve_stop && ok "exit 0 after the file changed" || bad "exit after truncation"

echo "$TEST: $fails failed"
[ $fails = 0 ]
