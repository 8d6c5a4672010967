#!/bin/bash
# `numalm serve` driven by the official `openai` client from npm (a client
# nobody here wrote), installed into this test's own temporary folder:
# models.list, completions and chat plain and streamed (text against
# llama.cpp's greedy reference, usage), stop sequences, a stream the client
# aborts, and the client's own error classes for 401, 400, 413 and 429.
# Skips with a message when npm or the registry is unavailable.
set -u
. "$(dirname "$0")/serve_lib.sh"
command -v node >/dev/null && command -v npm >/dev/null ||
    { echo "$TEST: skipped: node and npm are not installed"; exit 77; }
if ! (cd "$TMP" && timeout 300 npm install --no-audit --no-fund --loglevel=error openai \
    >"$TMP/npm.log" 2>&1); then
    echo "$TEST: skipped: npm could not install the openai package: $(tail -3 "$TMP/npm.log")"
    exit 77
fi
WANT32=$("$PY" -S -E -c '
import json, sys
j = json.loads(open(sys.argv[1]).readline())
print(j["expected"][len(j["prompt"]):], end="")' "$SHARED/models/stories260K.greedy.jsonl")

serve_start --api-key sekret --parallel 1 --queue 1 --ctx 16384 --max-body 256K || exit 1
cat >"$TMP/client.mjs" <<'EOF'
import OpenAI from "openai";

const [base, want32] = process.argv.slice(2);
const client = new OpenAI({ baseURL: base + "/v1", apiKey: "sekret", maxRetries: 0 });
let fails = 0;
const ok = (name) => console.log("ok   " + name);
const bad = (name, why) => { console.log("FAIL " + name + ": " + why); fails++; };
async function test(name, fn) {
    try { await fn(); ok(name); } catch (e) { bad(name, e && e.stack ? e.stack : e); }
}
function assert(cond, what) { if (!cond) throw new Error(what); }
async function expectError(name, cls, status, fn, code) {
    try {
        await fn();
        bad(name, "no error");
    } catch (e) {
        if (e instanceof cls && e.status === status && (!code || e.code === code) && e.error?.message)
            ok(name + ": " + cls.name + " " + status);
        else
            bad(name, `${e?.constructor?.name} ${e?.status} ${e?.code} ${e?.message}`);
    }
}
async function streamText(stream, chat) {
    let text = "", finish = null, usage = null, role = null;
    for await (const c of stream) {
        if (c.usage) { usage = c.usage; continue; }
        const ch = c.choices[0];
        if (chat) { role = ch.delta.role ?? role; text += ch.delta.content ?? ""; }
        else text += ch.text;
        finish = ch.finish_reason ?? finish;
    }
    return { text, finish, usage, role };
}
const greedy = { prompt: "Once upon a time", max_tokens: 32, temperature: 0, model: "stories260K" };
const usage32 = (u) => u && u.prompt_tokens === 5 && u.completion_tokens === 32 && u.total_tokens === 37;

await test("models.list", async () => {
    const ids = [];
    for await (const m of client.models.list()) ids.push(m.id);
    assert(ids.length === 1 && ids[0] === "stories260K", JSON.stringify(ids));
});
await test("completions.create: greedy text and usage", async () => {
    const r = await client.completions.create(greedy);
    assert(r.choices[0].text === want32, JSON.stringify(r.choices[0].text));
    assert(r.choices[0].finish_reason === "length" && usage32(r.usage), JSON.stringify(r));
});
await test("completions.create stream with include_usage", async () => {
    const s = await client.completions.create({ ...greedy, stream: true, stream_options: { include_usage: true } });
    const r = await streamText(s, false);
    assert(r.text === want32 && r.finish === "length" && usage32(r.usage), JSON.stringify(r));
});
await test("completions.create with stop sequences", async () => {
    const r = await client.completions.create({ ...greedy, stop: ["park", "girl"] });
    assert(r.choices[0].text === ", there was a little " && r.choices[0].finish_reason === "stop",
        JSON.stringify(r.choices[0]));
});
const chat = { model: "stories260K", temperature: 0, max_tokens: 20,
    messages: [{ role: "system", content: "You tell stories." }, { role: "user", content: "A cat?" }] };
await test("chat.completions.create: plain and streamed agree", async () => {
    const r = await client.chat.completions.create(chat);
    const m = r.choices[0].message;
    assert(r.object === "chat.completion" && m.role === "assistant" && m.content.length > 0, JSON.stringify(r));
    const s = await client.chat.completions.create({ ...chat, stream: true, stream_options: { include_usage: true } });
    const t = await streamText(s, true);
    assert(t.role === "assistant" && t.text === m.content && t.finish === r.choices[0].finish_reason,
        JSON.stringify([t, r]));
    assert(JSON.stringify(t.usage) === JSON.stringify(r.usage), JSON.stringify([t.usage, r.usage]));
});
await test("a stream the client aborts frees the slot", async () => {
    const s = await client.completions.create({ ...greedy, max_tokens: 16000, ignore_eos: true, stream: true });
    let n = 0;
    for await (const c of s) { if (++n === 3) break; } // leaves the loop: aborts the request
    for (let i = 0; i < 200; i++) {
        const m = await (await fetch(base + "/metrics", { headers: { Authorization: "Bearer sekret" } })).text();
        if (/^numalm_slots_active 0$/m.test(m) && /^numalm_requests_cancelled_total 1$/m.test(m)) return;
        await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error("the slot stayed busy");
});

const wrong = new OpenAI({ baseURL: base + "/v1", apiKey: "wrong", maxRetries: 0 });
await expectError("wrong API key", OpenAI.AuthenticationError, 401,
    () => wrong.completions.create(greedy), "invalid_api_key");
await expectError("max_tokens of the wrong type", OpenAI.BadRequestError, 400,
    () => client.completions.create({ ...greedy, max_tokens: "many" }));
await expectError("prompt longer than the context", OpenAI.BadRequestError, 400,
    () => client.completions.create({ ...greedy, prompt: "the dog ran ".repeat(6000) }), "context_length_exceeded");
await expectError("body over --max-body", OpenAI.APIError, 413,
    () => client.completions.create({ ...greedy, prompt: "x".repeat(300000) }), "request_too_large");
// one slot busy, one request queued: the next gets 429
const hold = { ...greedy, max_tokens: 16000, ignore_eos: true, stream: true };
const ac = new AbortController();
const a = await client.completions.create(hold, { signal: ac.signal });
const ia = a[Symbol.asyncIterator](); await ia.next();
const b = client.completions.create(hold, { signal: ac.signal }).catch(() => null);
for (let i = 0; i < 200; i++) {
    const m = await (await fetch(base + "/metrics", { headers: { Authorization: "Bearer sekret" } })).text();
    if (/^numalm_queue_depth 1$/m.test(m)) break;
    await new Promise((r) => setTimeout(r, 100));
}
await expectError("queue full", OpenAI.RateLimitError, 429, () => client.completions.create(greedy), "queue_full");
ac.abort();
await b;
console.log(`client: ${fails} failed`);
process.exit(fails ? 1 : 0);
EOF
(cd "$TMP" && timeout 300 node client.mjs "$URL" "$WANT32") || bad "the openai client checks (above)"
serve_stop && ok "exit 0 on SIGTERM" || bad "exit"
echo "$TEST: $fails failed"
[ $fails = 0 ]
