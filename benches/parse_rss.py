#!/usr/bin/env python3
"""Peak memory of the server for the largest request bodies (issue 24, item 4).

Run: python3 benches/parse_rss.py --bin target/release/tribunal [--label after]

Starts `tribunal serve` (default config: three simulated judges, a temporary SQLite
file, loopback ports), sends one kind of request to a fresh process, and reads the
process's peak resident set (VmHWM) and current resident set (VmRSS) from
/proc/<pid>/status before, right after, and 3 s after the request. Every scenario gets
a fresh process so each peak is its own. Scenarios:

  huge-grade      one 48.5 MB `POST /v1/grade` body whose inline rubric has 1.3M
                  criteria (refused with 413: over max_criteria_per_rubric = 500)
  huge-grade-x4   four of them at once
  huge-validate   the same rubric (48 MB) to `POST /v1/rubrics/validate`
  max-grade       the largest accepted rubric: 500 criteria, graded by the simulated
                  committee (200)
  max-validate    the same rubric to `/v1/rubrics/validate` (200)

Prints one Markdown table row per scenario. "before" is a binary built from main,
"after" one built from this branch; BENCHMARKS.md holds the figures and the command.
Nothing here is part of tribunal: it is a client and a reader of /proc.
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status_kb(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def mb(kb):
    return f"{kb / 1024:.0f}"


def rubric(n):
    # ~37 bytes per criterion, as in the 48.5 MB / 1.3M-criteria body.
    crit = ",".join(
        '{"id":"c%07d","text":"x","points":1}' % i for i in range(n)
    )
    return (
        '{"format":"rubric.v1","id":"big","version":1,"title":"Big","criteria":[%s]}'
        % crit
    )


def item(rubric_text):
    return (
        '{"format":"case.v1","case_id":"big","conversation":[{"role":"user",'
        '"content":"I have a fever."}],"response":"Rest.","rubric":%s}' % rubric_text
    )


def post(url, body):
    req = urllib.request.Request(
        url, data=body, headers={"content-type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=600) as r:
            return r.status, r.read()[:200]
    except urllib.error.HTTPError as e:
        return e.code, e.read()[:200]


def serve(binary, tmp):
    http, grpc = free_port(), free_port()
    proc = subprocess.Popen(
        [
            binary,
            "serve",
            "--http-addr",
            f"127.0.0.1:{http}",
            "--grpc-addr",
            f"127.0.0.1:{grpc}",
            "--database",
            f"sqlite://{tmp}/t-{http}.db",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "RUST_LOG": "warn"},
    )
    base = f"http://127.0.0.1:{http}"
    for _ in range(300):
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=1):
                return proc, base
        except Exception:
            time.sleep(0.1)
    proc.kill()
    sys.exit("the server did not start")


def run(binary, tmp, name, path, body, parallel=1):
    proc, base = serve(binary, tmp)
    try:
        idle = status_kb(proc.pid, "VmHWM")
        results = []

        def one():
            results.append(post(base + path, body))

        started = time.monotonic()
        threads = [threading.Thread(target=one) for _ in range(parallel)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        secs = time.monotonic() - started
        peak = status_kb(proc.pid, "VmHWM")
        time.sleep(3)
        after = status_kb(proc.pid, "VmRSS")
        codes = ",".join(sorted({str(c) for c, _ in results}))
        print(
            f"| {name} | {len(body) / 1e6:.1f} MB x{parallel} | {codes} | {secs:.2f} "
            f"| {mb(idle)} | {mb(peak)} | {mb(after)} |",
            flush=True,
        )
    finally:
        proc.terminate()
        proc.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--label", default="")
    ap.add_argument("--only", default="", help="comma-separated scenario names")
    args = ap.parse_args()
    huge = rubric(1_300_000)
    top = rubric(500)
    scenarios = [
        ("huge-grade", "/v1/grade", item(huge).encode(), 1),
        ("huge-grade-x4", "/v1/grade", item(huge).encode(), 4),
        ("huge-validate", "/v1/rubrics/validate", huge.encode(), 1),
        ("max-grade", "/v1/grade", item(top).encode(), 1),
        ("max-validate", "/v1/rubrics/validate", top.encode(), 1),
    ]
    only = {s for s in args.only.split(",") if s}
    print(f"{args.label} ({args.bin})")
    print("| scenario | body | status | seconds | idle VmHWM MB | peak VmHWM MB | VmRSS 3 s after MB |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        for name, path, body, parallel in scenarios:
            if only and name not in only:
                continue
            run(args.bin, tmp, name, path, body, parallel)


if __name__ == "__main__":
    main()
