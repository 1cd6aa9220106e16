#!/usr/bin/env python3
"""`make bench` (second part): instructions Envoy executes per request, counted by callgrind.

Wall-clock figures on a shared VM move by ±20 % between runs; an instruction count does not (two runs of the
same build agree within about 1 %). Each scenario starts real Envoy (`--concurrency 1`) under
`valgrind --tool=callgrind` with counting off, sends warm-up requests (connections, allocator and metric
series settle; Envoy's V8 compiles the whole module with TurboFan at load), then counts every instruction
of the Envoy process (all threads: V8's JIT code, Envoy, libc) over N sequential requests on one
connection and divides. The upstream is the same nginx as bench/run.py.

Scenarios: Envoy without filters; the no-op module; the no-op module making the host calls tollgate's data
path cannot avoid (its configuration names them, see bench/noop), all together and (`--breakdown`) one by
one; Envoy's native C++ `ai_protocol_manager`; tollgate's native build (libtollgate.so, `dynmod`); tollgate in
the bench's configurations (budgets: with the
request headers held while the body is read, and on an Envoy without `allow_on_headers_stop_iteration`,
which cannot hold them). A small request is the 1 KiB chat exchange of bench/run.py; a stream is the
1,000-event SSE response. Writes
bench/results/<date>-<build>-instructions.{md,json} (see `run.result_stem`).
"""

import argparse
import glob
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import run as bench  # noqa: E402

FLOOR_OPS = bench.FLOOR_OPS  # the host calls tollgate makes on every small exchange


def count(workdir, key, filters, ports, path, body, warm, n):
    """Instructions per request of Envoy with `filters`, over `n` requests after `warm` ones."""
    env = bench.Envoy(workdir, key, filters, ports, "0")
    out = os.path.join(workdir, f"callgrind-{key}.out")
    env.logf = open(env.log_path, "wb")
    env.proc = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--smc-check=all-non-file",
         f"--callgrind-out-file={out}", bench.envoy_bin(), "-c", env.config_path, "--concurrency", "1",
         "-l", "warn", "--base-id", str(env.admin_port), "--disable-hot-restart"],
        stdout=env.logf, stderr=subprocess.STDOUT, env=env.env())
    try:
        deadline = time.monotonic() + 300
        while True:
            if env.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{key}: Envoy under valgrind did not start:\n{env.log()[-2000:]}")
            try:
                c = http.client.HTTPConnection("127.0.0.1", env.admin_port, timeout=5)
                c.request("GET", "/ready")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        conn = http.client.HTTPConnection("127.0.0.1", env.listen, timeout=300)
        headers = {"content-type": "application/json", "x-conversation-id": "conv-1",
                   "x-tenant-id": "team-a"}

        def send(k):
            for _ in range(k):
                conn.request("POST", path, body=body, headers=headers)
                r = conn.getresponse()
                r.read()
                if r.status != 200:
                    raise RuntimeError(f"{key}: status {r.status}")

        send(warm)
        time.sleep(2)  # background compilation settles
        ctl = ["callgrind_control"]
        subprocess.run(ctl + ["-i", "on", str(env.proc.pid)], capture_output=True, check=True)
        send(n)
        time.sleep(2.5)  # the exporter's next flush and tick fall inside the window too
        subprocess.run(ctl + ["-i", "off", str(env.proc.pid)], capture_output=True, check=True)
        subprocess.run(ctl + ["-d", str(env.proc.pid)], capture_output=True, check=True)
        conn.close()
    finally:
        env.stop()
    total = 0
    for f in glob.glob(out + "*"):
        with open(f, errors="replace") as fh:
            for line in fh:
                if line.startswith("totals:"):
                    total += int(line.split()[1])
    if total == 0:
        raise RuntimeError(f"{key}: callgrind counted nothing")
    return total / n


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tollgate", default=os.path.join(bench.ROOT, "tollgate.wasm"))
    ap.add_argument("--noop", default=os.path.join(bench.ROOT, "target/bench/tollgate_bench_noop.wasm"))
    ap.add_argument("--native", default=os.path.join(bench.ROOT, "libtollgate.so"),
                    help="tollgate's native module (skipped when absent)")
    ap.add_argument("--requests", type=int, default=1000, help="counted small requests per scenario")
    ap.add_argument("--streams", type=int, default=100, help="counted streams per scenario")
    ap.add_argument("--breakdown", action="store_true", help="also price each floor host call alone")
    ap.add_argument("--only", default="", help="comma-separated scenario keys")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    args = ap.parse_args()
    if not shutil.which("valgrind"):
        sys.exit("instructions: valgrind is not installed (scripts/bench-setup.sh installs it)")

    noop = lambda ops="": bench.wasm_filter("noop", args.noop, ops)  # noqa: E731
    tg = lambda otlp=True, extra=None: bench.wasm_filter(  # noqa: E731
        "tollgate", args.tollgate, bench.tollgate_config(otlp, extra))
    small = [("none", "no filter", ""), ("noop", "no-op Wasm", noop()),
             ("floor", "no-op + tollgate's host calls", noop(",".join(FLOOR_OPS)))]
    if args.breakdown:
        small += [(f"op-{op}", f"no-op + {op}", noop(op)) for op in FLOOR_OPS]
    dyn = lambda extra=None: bench.native_module_filter(bench.tollgate_config(True, extra))  # noqa: E731
    native_built = bool(args.native and os.path.isfile(args.native))
    if not native_built:
        print(f"instructions: no native module at {args.native}: its scenarios are skipped", flush=True)
    small += [("native", "native ai_protocol_manager", bench.NATIVE_FILTER),
              ("tollgate", "tollgate defaults", tg()),
              ("tollgate-no-otlp", "tollgate without OTLP export", tg(otlp=False)),
              ("budgets", "tollgate + budgets", tg(extra=bench.BUDGETS)),
              # Without allow_on_headers_stop_iteration the headers are not held: the difference to
              # "budgets" is what holding them costs.
              ("budgets-unheld", "tollgate + budgets, headers not held", bench.wasm_filter(
                  "tollgate", args.tollgate, bench.tollgate_config(True, bench.BUDGETS), hold=False)),
              ("redaction", "tollgate + redaction + capture", tg(extra={
                  "capture_content": True, "redaction": {"egress": True}}))]
    if native_built:
        small += [("dynmod", "tollgate native module", dyn()),
                  ("dynmod-budgets", "tollgate native module + budgets", dyn(bench.BUDGETS))]
    streams = [("none", "no filter", ""), ("noop", "no-op Wasm", noop()),
               ("native", "native ai_protocol_manager", bench.NATIVE_FILTER),
               ("tollgate", "tollgate defaults", tg()),
               ("budgets", "tollgate + budgets", tg(extra=bench.BUDGETS))]
    if native_built:
        streams += [("dynmod", "tollgate native module", dyn())]
    only = set(filter(None, args.only.split(",")))

    res = run_scenarios(small, streams, args.requests, args.streams, only, args.native if native_built else None)
    res["machine"] = bench.machine()
    res["valgrind"] = subprocess.run(["valgrind", "--version"], capture_output=True, text=True).stdout.strip()
    res["tollgate_bytes"] = os.path.getsize(args.tollgate)
    write(res, args)


def run_scenarios(small, streams, requests, n_streams, only=(), native=None):
    """Counts each (key, label, filters) scenario: `small` over `requests` small requests, `streams` over
    `n_streams` SSE streams, against one nginx upstream; `only` restricts to those keys; `native` is the
    native module for the dynamic-modules scenarios."""
    workdir = tempfile.mkdtemp(prefix="tollgate-instr-")
    os.chmod(workdir, 0o755)
    bench.module_dir(workdir, native)
    nginx = bench.Nginx(workdir, "1", {"small": ("application/json", bench.chat_response(1024)),
                                       "sse": ("text/event-stream", bench.sse_body(1000))})
    ports = {"UPSTREAM": nginx.port, "STALL": nginx.port, "OTLP": nginx.otlp_port}
    res = {"small": {}, "sse": {}, "requests": requests, "streams": n_streams}
    t0 = time.monotonic()
    try:
        for part, scenarios, path, stream, warm, n in (
                ("small", small, "/small/v1/chat/completions", False, 300, requests),
                ("sse", streams, "/sse/v1/chat/completions", True, 50, n_streams)):
            if n <= 0:
                continue
            for key, label, filters in scenarios:
                if only and key not in only:
                    continue
                v = count(workdir, f"{part}-{key}", filters, ports, path, bench.chat_request(1024, stream),
                          warm, n)
                res[part][key] = {"label": label, "instructions": v}
                print(f"instructions: {part} {label}: {v:,.0f}", flush=True)
    finally:
        nginx.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    res["elapsed_s"] = time.monotonic() - t0
    return res


def write(res, args):
    m = res["machine"]
    os.makedirs(args.out, exist_ok=True)
    base = bench.result_stem(args.out, m, "instructions")
    with open(base + ".json", "w") as f:
        json.dump(res, f, indent=1)
    lines = [f"# tollgate instructions per request — {m['date']}", "",
             f"Envoy {m['envoy']} (`--concurrency 1`) under {res['valgrind']} callgrind, build `{m['build']}` "
             f"(tollgate {m['version']}, commit `{m['commit']}`), machine `{m['host']}`, tollgate.wasm {res['tollgate_bytes']} bytes. Instructions of the whole Envoy process per request "
             f"(V8's JIT code, Envoy, libc), averaged over {res['requests']} sequential small requests or "
             f"{res['streams']} streams after a warm-up; two runs of the same build agree within about 1 %. "
             "Ratios of instructions are not ratios of time (memory stalls differ), but they move the same way.",
             ""]
    for part, title, unit in (("small", "Small requests (1 KiB in / 1 KiB out)", "request"),
                              ("sse", "Streams (1,000-event SSE, 247 KiB)", "stream")):
        rows = res[part]
        if not rows:
            continue
        none = rows.get("none", {}).get("instructions")
        noop = rows.get("noop", {}).get("instructions")
        lines += [f"## {title}", "", f"| scenario | instructions per {unit} | added vs no filter | "
                  "added vs no-op Wasm | × no-op Wasm |", "|---|---:|---:|---:|---:|"]
        for r in rows.values():
            v = r["instructions"]
            lines.append(f"| {r['label']} | {v:,.0f} | {(v - none) if none else 0:+,.0f} | "
                         f"{(v - noop) if noop else 0:+,.0f} | {(v / noop) if noop else 0:.3f} |")
        lines.append("")
    if "floor" in res["small"] and "noop" in res["small"]:
        noop = res["small"]["noop"]["instructions"]
        floor = res["small"]["floor"]["instructions"] - noop
        lines += [f"The host calls alone add {floor:,.0f} instructions per small request to the no-op module; "
                  f"at 0.85 × the no-op module's throughput a filter may add about {noop / 0.85 - noop:,.0f} "
                  "in all.", ""]
    with open(base + ".md", "w") as f:
        f.write("\n".join(lines))
    print(f"instructions: wrote {base}.md and .json")


if __name__ == "__main__":
    main()
