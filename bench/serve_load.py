#!/usr/bin/env python3
"""Load generator for OpenAI-compatible servers (numalm serve, llama-server).

N clients stream completions back to back, each R requests of T tokens
(ignore_eos, greedy, prompt cache off), all at once; --ban keeps tokens out
of the output (random-weight models pick byte tokens, and llama-server
ends a stream with an error when its text is not valid UTF-8). Reports as one JSON
line: the aggregate decode rate (completion tokens of all requests over the
wall time from the first request sent to the last token received), time to
first token (median, p90, max), and each stream's own decode rate (tokens
after the first over the time after the first).

The same generator drives both servers in benchmarks, so their figures
compare: only the URL differs.
"""
import argparse
import http.client
import json
import statistics
import sys
import threading
import time
import urllib.parse


def one_request(url, body, key, timeout):
    """Streams one completion; returns (t_sent, t_first, t_last, tokens)."""
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = "Bearer " + key
    t_sent = time.monotonic()
    conn.request("POST", "/v1/completions", json.dumps(body), headers)
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError("HTTP %d: %s" % (resp.status, resp.read()[:300]))
    t_first = t_last = None
    chunks = 0
    usage = None
    for raw in resp:
        line = raw.decode("utf-8", "replace").strip()
        if not line.startswith("data: "):
            continue
        data = line[6:]
        if data == "[DONE]":
            break
        ev = json.loads(data)
        if ev.get("usage"):
            usage = ev["usage"]
        choices = ev.get("choices") or []
        if choices and choices[0].get("text"):
            now = time.monotonic()
            t_first = t_first or now
            t_last = now
            chunks += 1
    conn.close()
    tokens = usage["completion_tokens"] if usage else chunks
    return t_sent, t_first, t_last, tokens


def quantile(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(q * len(v)))] if v else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", required=True, help="http://host:port")
    ap.add_argument("--clients", type=int, default=1)
    ap.add_argument("--requests", type=int, default=2, help="per client")
    ap.add_argument("--tokens", type=int, default=64, help="completion tokens per request")
    ap.add_argument("--prompt", default="Once upon a time, in a town by the sea, there lived")
    ap.add_argument("--api-key", default="")
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--label", default="")
    ap.add_argument("--ban", default="",
                    help="token ids never to sample, e.g. 3-258: logit_bias -100 for each")
    a = ap.parse_args()

    bias = {}
    for part in filter(None, a.ban.split(",")):
        lo, _, hi = part.partition("-")
        for t in range(int(lo), int(hi or lo) + 1):
            bias[str(t)] = -100
    results, errors = [], []
    lock = threading.Lock()

    def client(i):
        for r in range(a.requests):
            body = {
                # distinct prompts of one length: no client shares a cache
                "prompt": "%s %c%c" % (a.prompt, 65 + i % 26, 65 + r % 26),
                "max_tokens": a.tokens,
                "temperature": 0,
                "ignore_eos": True,
                "cache_prompt": False,
                "stream": True,
                "stream_options": {"include_usage": True},
            }
            if bias:
                body["logit_bias"] = bias
            try:
                res = one_request(a.url, body, a.api_key, a.timeout)
                with lock:
                    results.append(res)
            except Exception as e:  # reported, and the run fails
                with lock:
                    errors.append("client %d request %d: %s" % (i, r, e))
                return

    threads = [threading.Thread(target=client, args=(i,)) for i in range(a.clients)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        print("\n".join(errors), file=sys.stderr)
        sys.exit(1)
    t_end = max(r[2] for r in results if r[2])
    tokens = sum(r[3] for r in results)
    ttft = [r[1] - r[0] for r in results if r[1]]
    stream_rates = [(r[3] - 1) / (r[2] - r[1]) for r in results if r[1] and r[2] > r[1] and r[3] > 1]
    out = {
        "label": a.label,
        "clients": a.clients,
        "requests": len(results),
        "tokens": tokens,
        "wall_s": round(t_end - t0, 3),
        "agg_tok_s": round(tokens / (t_end - t0), 3),
        "ttft_median_s": round(statistics.median(ttft), 3),
        "ttft_p90_s": round(quantile(ttft, 0.9), 3),
        "ttft_max_s": round(max(ttft), 3),
        "stream_tok_s_median": round(statistics.median(stream_rates), 3) if stream_rates else None,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
