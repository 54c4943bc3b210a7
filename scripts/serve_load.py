"""Streaming load on an OpenAI-compatible server: N requests, C at a time, each a
~100-token prompt and exactly MAX_TOKENS generated tokens (ignore_eos). Prints one
JSON line: generated tok/s over the wall time, median time to first token.

  serve_load.py BASE_URL [N] [C] [MAX_TOKENS]   (stdlib only)
"""
import http.client
import json
import statistics
import sys
import threading
import time
import urllib.parse

WORDS = ("the quick brown fox jumps over a lazy dog while rivers run to the sea and "
         "mountains rise above quiet valleys where farmers grow wheat barley and corn ").split()


def prompt(i):
    return f"Request {i}. " + " ".join(WORDS[(i + k) % len(WORDS)] for k in range(90))


def one(url, i, max_tokens, out):
    u = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": prompt(i)}],
                       "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True,
                       "stream": True, "stream_options": {"include_usage": True}})
    start = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise SystemExit(f"request {i}: HTTP {resp.status}: {resp.read()[:300]!r}")
    first, chunks, usage = None, 0, None
    for raw in resp:
        line = raw.decode().strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        msg = json.loads(line[6:])
        if "error" in msg:
            raise SystemExit(f"request {i}: {msg}")
        if msg.get("usage"):
            usage = msg["usage"]
        for c in msg.get("choices", []):
            if (c.get("delta") or {}).get("content"):
                chunks += 1
                if first is None:
                    first = time.perf_counter()
    end = time.perf_counter()
    generated = usage["completion_tokens"] if usage else chunks
    prompt_tokens = usage["prompt_tokens"] if usage else 0
    out[i] = (first - start if first else float("nan"), generated, prompt_tokens, end)


def main():
    url = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 32
    c = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    max_tokens = int(sys.argv[4]) if len(sys.argv) > 4 else 128
    out = {}
    next_i = iter(range(n))
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                i = next(next_i, None)
            if i is None:
                return
            one(url, i, max_tokens, out)

    start = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(c)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if len(out) != n:
        raise SystemExit(f"only {len(out)} of {n} requests finished")
    wall = max(v[3] for v in out.values()) - start
    generated = sum(v[1] for v in out.values())
    print(json.dumps({
        "requests": n, "concurrency": c, "generated": generated,
        "prompt_tokens": sum(v[2] for v in out.values()),
        "wall_s": round(wall, 3), "gen_tok_s": round(generated / wall, 2),
        "ttft_median_s": round(statistics.median(v[0] for v in out.values()), 4),
    }))


if __name__ == "__main__":
    main()
