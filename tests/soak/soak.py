#!/usr/bin/env python3
"""Soak test (`make soak`, not in CI): mixed LLM traffic through real Envoy + tollgate at high concurrency for
a fixed time, then three verdicts:
  1. zero errors introduced: every response is byte-identical to what the provider sent;
  2. memory flat after warm-up: Envoy's RSS (Wasm VMs included) in the last quarter of the run is within
     --max-growth of the first post-warm-up quarter;
  3. every call accounted once: the mock provider's request count == tollgate's `calls` counter == spans
     received by the OTLP receiver == tollgate's `spans_exported`, and no span was dropped.
Usage: soak.py [--duration 600] [--concurrency 64] [--workers 2]. Prints a JSON report; exit 1 on failure."""

import argparse
import gzip
import json
import os
import sys
import threading
import time
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "testenv"))

import brotli  # noqa: E402

import gateway  # noqa: E402
import mock_provider  # noqa: E402

DECODE = {None: lambda b: b, "gzip": gzip.decompress, "br": brotli.decompress, "deflate": zlib.decompress}


def workload():
    """Every fixture, delivered whole, in small chunks, gzip- and br-compressed."""
    out = []
    fixtures = sorted(os.path.relpath(os.path.join(r, f), mock_provider.FIXTURES)[:-5]
                      for r, _, fs in os.walk(mock_provider.FIXTURES) for f in fs if f.endswith(".json"))
    for name in fixtures:
        fx = mock_provider.load_fixture(name)
        req = fx["request"]
        body = req.encode() if isinstance(req, str) else json.dumps(req).encode()
        base = {"host": fx["host"], "x-mock-fixture": name, "content-type": "application/json"}
        base.update(fx.get("request_headers", {}))
        want = mock_provider.fixture_body(fx)
        status = fx["response"].get("status", 200)
        for extra, enc in [({}, None), ({"x-mock-chunk": "37"}, None),
                           ({"x-mock-gzip": "1", "x-mock-chunk": "64"}, "gzip"),
                           ({"x-mock-encoding": "br"}, "br")]:
            out.append((fx["path"], body, {**base, **extra}, status, want, enc))
    return out


def rss_kib(pid):
    with open(f"/proc/{pid}/status", encoding="utf-8") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=600)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--max-growth", type=float, default=0.10, help="allowed RSS growth after warm-up")
    args = ap.parse_args()

    cfg = gateway.default_plugin_config()
    cfg["otlp"]["max_queue"] = 100000
    t = gateway.Topology(cfg, concurrency=args.workers).start()
    reqs = workload()
    errors, sent = [], [0]
    lock = threading.Lock()
    stop = threading.Event()
    samples = []  # (elapsed s, RSS KiB)

    def client(k):
        i = k
        while not stop.is_set():
            path, body, h, status, want, enc = reqs[i % len(reqs)]
            i += args.concurrency
            try:
                got = gateway.request(t.port, path, body, h)
                ok = got[0] == status and DECODE[enc](got[2]) == want
                problem = None if ok else f"{h['x-mock-fixture']} {h}: status {got[0]}"
            except Exception as e:  # noqa: BLE001 - any failure is an error introduced
                problem = f"{h['x-mock-fixture']}: {e!r}"
            with lock:
                sent[0] += 1
                if problem and len(errors) < 50:
                    errors.append(problem)
                elif problem:
                    errors.append("…")

    start = time.time()
    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(args.concurrency)]
    for th in threads:
        th.start()
    while time.time() - start < args.duration:
        samples.append((round(time.time() - start, 1), rss_kib(t.envoy.proc.pid)))
        time.sleep(max(0.5, args.duration / 200))
    stop.set()
    for th in threads:
        th.join()
    elapsed = time.time() - start

    # Let the export queue drain, then account.
    deadline = time.time() + 30
    while time.time() < deadline:
        s = {k.rsplit("tollgate.", 1)[-1]: v for k, v in t.envoy.stats("tollgate.").items()}
        received = gateway.get_json(t.collector.port, "/__stats")["spans"]
        if s.get("calls", 0) == sent[0] and received >= sent[0] and s.get("queue_depth", 0) == 0:
            break
        time.sleep(0.5)
    provider_count = gateway.get_json(t.provider.port, "/__count")
    t.stop()

    n = len(samples)
    warm = [r for _, r in samples[n // 4: n // 2]]
    late = [r for _, r in samples[3 * n // 4:]]
    warm_avg = sum(warm) / max(1, len(warm))
    late_avg = sum(late) / max(1, len(late))
    growth = (late_avg - warm_avg) / warm_avg if warm_avg else 0.0
    report = {
        "duration_s": round(elapsed, 1), "concurrency": args.concurrency, "workers": args.workers,
        "requests": sent[0], "rps": round(sent[0] / elapsed, 1), "errors": len(errors),
        "error_samples": errors[:10],
        "provider_requests": provider_count, "tollgate_calls": s.get("calls", 0),
        "spans_received": received, "spans_exported": s.get("spans_exported", 0),
        "spans_dropped": s.get("spans_dropped_queue_full", 0) + s.get("spans_dropped_failed", 0),
        "calls_failed": s.get("calls_failed", 0),
        "rss_kib": {"start": samples[0][1] if samples else 0, "after_warmup_avg": round(warm_avg),
                    "last_quarter_avg": round(late_avg), "max": max((r for _, r in samples), default=0)},
        "rss_growth_after_warmup": round(growth, 4),
    }
    checks = {
        "zero errors introduced": not errors,
        "memory flat after warm-up": growth <= args.max_growth,
        "every call accounted once": provider_count == sent[0] == report["tollgate_calls"]
        == received == report["spans_exported"] and report["spans_dropped"] == 0,
    }
    report["checks"] = checks
    print(json.dumps(report, indent=1))
    sys.exit(0 if all(checks.values()) else 1)


if __name__ == "__main__":
    main()
