#!/usr/bin/env python3
"""Continuous-batching figures of a running `ivg serve` (loopback only).

Usage: python3 scripts/serve_bench.py http://127.0.0.1:8000 [MODEL]

1. 16 Base completions of 48 tokens sent one after another, then the same 16
   at once: aggregate completion tokens/s of both and their ratio (one run).
2. A bounded mixed load: 16 concurrent streaming clients x 2 requests, methods
   base / efti / cbsi / efti+cbsi, each compared with the same request sent
   alone (same seed): mismatches, errors, p50/p99 latency, tokens/s.
Standard library only; every request goes to the given loopback URL.
"""
import json
import statistics
import sys
import threading
import time
import urllib.request

URL = sys.argv[1].rstrip("/")
MODEL = sys.argv[2] if len(sys.argv) > 2 else "smollm2"
assert URL.startswith("http://127.") or URL.startswith("http://localhost"), "loopback only"
PROMPTS = ["I watched this film and", "The acting in this movie", "This was the worst", "My favourite scene"]


def post(body, stream=False):
    req = urllib.request.Request(URL + "/v1/completions", json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        if not stream:
            return json.loads(r.read())
        text, usage = "", None
        for line in r:
            line = line.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                raise RuntimeError(chunk["error"])
            if chunk.get("usage"):
                usage = chunk["usage"]
            for c in chunk.get("choices", []):
                text += c.get("text", "")
        return {"choices": [{"text": text}], "usage": usage}


def base_body(i):
    return {"model": MODEL, "prompt": PROMPTS[i % 4], "max_tokens": 48, "seed": i, "ivg": {"method": "base"}}


def batching():
    t = time.time()
    seq = [post(base_body(i)) for i in range(16)]
    t_seq = time.time() - t
    res = [None] * 16
    def one(i):
        res[i] = post(base_body(i))
    ths = [threading.Thread(target=one, args=(i,)) for i in range(16)]
    t = time.time()
    [th.start() for th in ths]
    [th.join() for th in ths]
    t_par = time.time() - t
    tok = sum(r["usage"]["completion_tokens"] for r in seq)
    same = sum(a["choices"][0]["text"] == b["choices"][0]["text"] for a, b in zip(seq, res))
    print(f"batching: 16 base x 48 tokens: one by one {tok / t_seq:.1f} tok/s ({t_seq:.2f} s), "
          f"at once {tok / t_par:.1f} tok/s ({t_par:.2f} s), ratio {t_seq / t_par:.2f}; identical texts {same}/16")


def mixed():
    methods = ["base", "efti", "cbsi", "efti+cbsi"]
    bodies = [{"model": MODEL, "prompt": PROMPTS[i % 4], "max_tokens": 20, "seed": 100 + i, "stream": True,
               "stream_options": {"include_usage": True},
               "ivg": {"method": methods[i % 4], "width": 2, "successors": 2, "chunk_len": 5}} for i in range(32)]
    alone = [post(b, stream=True)["choices"][0]["text"] for b in bodies]
    lat, errors, mismatch, tokens = [], 0, 0, 0
    lock = threading.Lock()
    def client(c):
        nonlocal errors, mismatch, tokens
        for k in range(2):
            i = c * 2 + k
            t = time.time()
            try:
                r = post(bodies[i], stream=True)
            except Exception as e:  # counted, reported below
                with lock:
                    errors += 1
                print("error", i, e)
                continue
            with lock:
                lat.append(time.time() - t)
                tokens += r["usage"]["completion_tokens"] if r["usage"] else 0
                mismatch += r["choices"][0]["text"] != alone[i]
    ths = [threading.Thread(target=client, args=(c,)) for c in range(16)]
    t = time.time()
    [th.start() for th in ths]
    [th.join() for th in ths]
    wall = time.time() - t
    lat.sort()
    p99 = lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else float("nan")
    print(f"mixed: 16 streaming clients x 2 requests ({', '.join(methods)}): errors {errors}, "
          f"differ from alone {mismatch}/32, p50 {statistics.median(lat):.2f} s, p99 {p99:.2f} s, "
          f"{tokens / wall:.1f} tok/s aggregate, wall {wall:.1f} s")


if __name__ == "__main__":
    batching()
    mixed()
