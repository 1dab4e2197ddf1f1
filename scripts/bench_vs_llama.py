#!/usr/bin/env python3
"""ivg against llama.cpp on the same Q8_0 GGUF, same machine, one run.

Usage: python3 scripts/bench_vs_llama.py [--rounds 3] [--ivg target/release/ivg] [--write bench/]

Builds llama.cpp as .ci/run does (scripts/build-llama-server.sh, cached),
makes a Q8_0 GGUF of SmolLM2-135M-Instruct with llama-quantize (cached beside
it), then, at 1 thread and at all cores, alternates `ivg bench` with
llama.cpp's `llama-bench` (prefill, batch-1 decode) and `llama-batched-bench`
(batch-16 decode), `--rounds` times, and prints the medians, the ranges and
the ivg / llama.cpp ratios. Then it times every method of the matrix per
prompt with `ivg bench-guided` (no llama.cpp counterpart) at the same thread
counts. With --write, the tables and the machine go to a dated Markdown file
in that folder. Standard library only.
"""
import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROMPT, GEN, BATCH = 32, 64, 16


def run(cmd, stderr=subprocess.PIPE):
    return subprocess.run(cmd, check=True, stdout=subprocess.PIPE, stderr=stderr, text=True).stdout


def cache_root():
    if os.environ.get("IVG_CACHE_DIR"):
        return os.environ["IVG_CACHE_DIR"]
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    return os.path.join(xdg, "ivg") if xdg.startswith("/") else os.path.expanduser("~/.cache/ivg")


def q8_gguf(bin_dir, ivg):
    out = os.path.join(cache_root(), "bench", "SmolLM2-135M-Instruct.Q8_0.gguf")
    if not os.path.exists(out):
        os.makedirs(os.path.dirname(out), exist_ok=True)
        src = run([ivg, "assets", "fetch", "smollm2"]).strip().split("\t")[-1]
        tmp = out + ".tmp"
        run([os.path.join(bin_dir, "llama-quantize"), "--allow-requantize", src, tmp, "Q8_0"])
        os.replace(tmp, out)
    return out


def ivg_bench(ivg, model, threads):
    text = run([ivg, "--threads", str(threads), "bench", "--model", model, "--batch", f"1,{BATCH}",
                "--prompt-len", str(PROMPT), "--new-tokens", str(GEN)])
    rows = {}
    for line in text.splitlines():
        m = re.match(r"\|\s*(\d+)\s*\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|", line)
        if m:
            rows[int(m.group(1))] = (float(m.group(2)), float(m.group(3)))
    return {"prefill": rows[1][0], "decode1": rows[1][1], f"decode{BATCH}": rows[BATCH][1]}


def llama(bin_dir, model, threads):
    out = run([os.path.join(bin_dir, "llama-bench"), "-m", model, "-t", str(threads), "-p", str(PROMPT),
               "-n", str(GEN), "-r", "1", "-o", "jsonl"], stderr=subprocess.DEVNULL)
    res = {}
    for line in out.splitlines():
        r = json.loads(line)
        res["prefill" if r["n_prompt"] else "decode1"] = r["avg_ts"]
    out = run([os.path.join(bin_dir, "llama-batched-bench"), "-m", model, "-t", str(threads), "-c", "4096",
               "-npp", str(PROMPT), "-ntg", str(GEN), "-npl", str(BATCH), "--output-format", "jsonl"],
              stderr=subprocess.DEVNULL)
    for line in out.splitlines():
        if line.startswith("{") and '"speed_tg"' in line:
            res[f"decode{BATCH}"] = json.loads(line)["speed_tg"]
    return res


def machine():
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    rev = run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]).strip()
    return f"{cpu}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}; ivg {rev}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--ivg", default=os.path.join(ROOT, "target", "release", "ivg"))
    ap.add_argument("--write", metavar="DIR")
    args = ap.parse_args()
    bin_dir = run(["bash", os.path.join(ROOT, "scripts", "build-llama-server.sh")]).strip()
    model = q8_gguf(bin_dir, args.ivg)
    metrics = [("prefill", "prefill tok/s"), ("decode1", "decode tok/s, batch 1"),
               (f"decode{BATCH}", f"decode tok/s, batch {BATCH} (aggregate)")]
    lines = [f"Same GGUF (`{os.path.basename(model)}`), prompts of {PROMPT} tokens, {GEN} decode steps; "
             f"{args.rounds} rounds alternating ivg and llama.cpp; medians, ranges in brackets.", "",
             "| threads | measure | ivg | llama.cpp | ivg / llama.cpp |", "|---:|---|---:|---:|---:|"]
    for threads in sorted({1, os.cpu_count() or 1}):
        ours, theirs = [], []
        for _ in range(args.rounds):
            ours.append(ivg_bench(args.ivg, model, threads))
            theirs.append(llama(bin_dir, model, threads))
        for key, label in metrics:
            a = [r[key] for r in ours]
            b = [r[key] for r in theirs]
            ratios = [x / y for x, y in zip(a, b)]
            lines.append(f"| {threads} | {label} | {statistics.median(a):.1f} [{min(a):.1f}-{max(a):.1f}] | "
                         f"{statistics.median(b):.1f} [{min(b):.1f}-{max(b):.1f}] | "
                         f"{statistics.median(ratios):.2f} [{min(ratios):.2f}-{max(ratios):.2f}] |")
    lines += ["", "Every method of the matrix, `ivg bench-guided` (base SmolLM2 Q8_0, random 4-layer d=256 "
              "guides, 2 prompts, W = K = 4, L = 5, 50 tokens), one run per thread count:"]
    for threads in sorted({1, os.cpu_count() or 1}):
        table = run([args.ivg, "--threads", str(threads), "bench-guided"])
        lines += ["", f"{threads} thread(s):", ""] + [l for l in table.splitlines() if l.startswith("|")]
    version = run([os.path.join(bin_dir, "llama-server"), "--version"], stderr=subprocess.STDOUT).strip()
    lines += ["", f"Machine: {machine()}.", f"llama.cpp: {version.splitlines()[0]} (llama-cpp-python 0.3.36 sdist, AVX2, no AMX)."]
    text = "\n".join(lines)
    print(text)
    if args.write:
        os.makedirs(args.write, exist_ok=True)
        path = os.path.join(args.write, f"{datetime.date.today().isoformat()}-llama-cpp.md")
        with open(path, "w") as f:
            f.write(f"# ivg vs llama.cpp, {datetime.date.today().isoformat()}\n\n{text}\n")
        print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
