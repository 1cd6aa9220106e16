#!/usr/bin/env python3
"""`make bench`: tollgate's cost on the data path, measured through real Envoy (see docs/performance.md).

One run measures every filter configuration against the same upstream, load generator and machine, so the
figures that matter are ratios within the run: Envoy without filters, a no-op proxy-wasm module (the cost of
being a Wasm filter at all), the same module making the host calls tollgate makes (the floor for this job),
Envoy's native C++ `ai_protocol_manager`, tollgate (the Wasm build) in three configurations, and tollgate's
native build (libtollgate.so, an Envoy dynamic module) with the defaults and with budgets. The targets of the
native build (docs/native-module.md, "Performance") are reported from the same run. Every scenario's Envoy runs
for the whole bench; the small-request and stream-timing figures are medians of rounds that visit each
scenario in turn (`--rounds`), so the host's drift during the run falls on all of them alike.

Layout: Envoy (`--concurrency 1`) is pinned to CPU 0; nginx (the fixed-response upstream), wrk and the Python
clients share the other CPUs. Filter CPU is Envoy's process CPU time (/proc/<pid>/task/*/schedstat) divided by
the requests served, minus the no-filter scenario's. Writes bench/results/<date>-<build>-wallclock.{md,json}
(see `result_stem`).
"""

import argparse
import asyncio
import datetime
import glob
import http.client
import json
import os
import platform
import shutil
import socket
import statistics
import string
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "testenv"))

from gateway import envoy_bin, free_port  # noqa: E402

KIB = 1024
MIB = 1024 * 1024

# ---------------------------------------------------------------------------------------------------------
# Fixtures: OpenAI Chat Completions shaped, the most common wire format.


def chat_request(size, stream):
    """A chat request of about `size` bytes (the user message is padded with prose)."""
    head = {"model": "gpt-4o-mini", "stream": stream, "temperature": 0.2, "max_tokens": 256,
            "messages": [{"role": "system", "content": "You are a helpful assistant."},
                         {"role": "user", "content": ""}]}
    base = len(json.dumps(head))
    words = "The quick brown fox jumps over the lazy dog while the gateway counts tokens. "
    text = (words * (size // len(words) + 1))[: max(0, size - base)]
    head["messages"][1]["content"] = text
    return json.dumps(head).encode()


def chat_response(size):
    """A non-streamed chat completion of about `size` bytes, with usage."""
    doc = {"id": "chatcmpl-bench", "object": "chat.completion", "created": 1763700000, "model": "gpt-4o-mini",
           "choices": [{"index": 0, "message": {"role": "assistant", "content": ""}, "finish_reason": "stop"}],
           "usage": {"prompt_tokens": 250, "completion_tokens": 240, "total_tokens": 490}}
    base = len(json.dumps(doc))
    words = "Tokens flow through the gateway and every one of them is counted exactly once. "
    doc["choices"][0]["message"]["content"] = (words * (size // len(words) + 1))[: max(0, size - base)]
    return json.dumps(doc).encode()


def sse_body(events):
    """`events` content chunks as OpenAI streams them, then the finish chunk, the usage chunk and [DONE]."""
    out = []
    for i in range(events):
        chunk = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1763700000,
                 "model": "gpt-4o-mini", "system_fingerprint": "fp_bench",
                 "choices": [{"index": 0, "delta": {"content": f" token{i % 100:02d} and more"},
                              "logprobs": None, "finish_reason": None}], "usage": None}
        out.append(b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n")
    fin = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1763700000,
           "model": "gpt-4o-mini", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": None}
    use = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1763700000,
           "model": "gpt-4o-mini", "choices": [],
           "usage": {"prompt_tokens": 250, "completion_tokens": events, "total_tokens": 250 + events}}
    out.append(b"data: " + json.dumps(fin, separators=(",", ":")).encode() + b"\n\n")
    out.append(b"data: " + json.dumps(use, separators=(",", ":")).encode() + b"\n\n")
    out.append(b"data: [DONE]\n\n")
    return b"".join(out)


# ---------------------------------------------------------------------------------------------------------
# Processes


def cpus():
    return sorted(os.sched_getaffinity(0))


def pin(cpuset, argv):
    return ["taskset", "-c", cpuset, *argv] if shutil.which("taskset") and cpuset else argv


class Nginx:
    """Debian nginx serving fixed files for POST (static files answer 405 to POST; `error_page 405 =200`
    turns that into the file) plus an OTLP sink that accepts every export."""

    def __init__(self, workdir, cpuset, bodies):
        self.dir = os.path.join(workdir, "nginx")
        self.www = os.path.join(self.dir, "www")
        self.port, self.otlp_port = free_port(), free_port()
        for name, (ctype, body) in bodies.items():
            path = os.path.join(self.www, name, "v1", "chat")
            os.makedirs(path, exist_ok=True)
            with open(os.path.join(path, "completions"), "wb") as f:
                f.write(body)
        locs = "".join(
            f"    location /{name}/ {{ default_type {ctype}; error_page 405 =200 $uri; }}\n"
            for name, (ctype, _) in bodies.items())
        temp = "".join(f"  {k}_temp_path {self.dir}/{k}_temp;\n"
                       for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        conf = f"""worker_processes 1;
error_log {self.dir}/error.log warn;
pid {self.dir}/nginx.pid;
{"user root;" if os.geteuid() == 0 else ""}
events {{ worker_connections 8192; }}
http {{
  access_log off;
  types {{ }}
{temp}  client_max_body_size 64m;
  client_body_buffer_size 1m;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
  sendfile on;
  tcp_nopush on;
  server {{
    listen 127.0.0.1:{self.port} backlog=4096;
    root {self.www};
{locs}  }}
  server {{
    listen 127.0.0.1:{self.otlp_port};
    location / {{ default_type application/x-protobuf; return 200 ""; }}
  }}
}}
"""
        os.makedirs(self.dir, exist_ok=True)
        self.conf = os.path.join(self.dir, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(conf)
        self.proc = subprocess.Popen(pin(cpuset, ["nginx", "-p", self.dir, "-c", self.conf, "-g", "daemon off;"]),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, self.proc, "nginx")

    def stop(self):
        stop_proc(self.proc)


class StallUpstream:
    """An upstream that answers with SSE headers and a first event, then holds every stream open until
    released: it keeps many streams in flight at once to measure memory per in-flight stream."""

    def __init__(self):
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.release = None
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.ready.wait(10)

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.release = asyncio.Event()

        async def handle(reader, writer):
            try:
                head = await reader.readuntil(b"\r\n\r\n")
                n = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        n = int(line.split(b":", 1)[1])
                chunked = b"transfer-encoding: chunked" in head.lower()
                if n:
                    await reader.readexactly(n)
                elif chunked:
                    await reader.readuntil(b"0\r\n\r\n")
                first = sse_body(1).split(b"\n\n")[0] + b"\n\n"
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                             b"transfer-encoding: chunked\r\n\r\n"
                             + b"%x\r\n" % len(first) + first + b"\r\n")
                await writer.drain()
                if b" /stall/paced/" in head:
                    # Like a model: the first event now, the rest of the 1,000-event stream 20 ms later.
                    await asyncio.sleep(0.02)
                    rest = PACED_REST
                    writer.write(b"%x\r\n" % len(rest) + rest + b"\r\n0\r\n\r\n")
                    await writer.drain()
                    return
                await self.release.wait()
                writer.write(b"0\r\n\r\n")
                await writer.drain()
            except (OSError, asyncio.IncompleteReadError, ValueError):
                pass
            finally:
                writer.close()

        async def main():
            server = await asyncio.start_server(handle, "127.0.0.1", self.port, backlog=4096)
            self.ready.set()
            async with server:
                await server.serve_forever()

        try:
            self.loop.run_until_complete(main())
        except RuntimeError:
            pass

    def reset(self):
        def swap():
            self.release.set()
            self.release = asyncio.Event()
        self.loop.call_soon_threadsafe(swap)

    def stop(self):
        self.loop.call_soon_threadsafe(self.release.set)
        self.loop.call_soon_threadsafe(self.loop.stop)


PACED_REST = sse_body(1000).split(b"\n\n", 1)[1]


def wait_port(port, proc, what, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port}")


def stop_proc(proc):
    if proc and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wasm_filter(name, path, config, hold=True):
    """The Wasm filter; `hold`: Envoy holds request headers the plugin pauses while it reads the body
    (`allow_on_headers_stop_iteration`, as envoy/gateway.yaml sets it)."""
    cfg = json.dumps(config) if not isinstance(config, str) else config
    return f"""
          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: {name}
                root_id: {name}
                vm_config:
                  vm_id: {name}
                  runtime: envoy.wasm.runtime.v8
                  code: {{local: {{filename: "{path}"}}}}
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: '{cfg.replace("'", "''")}'
                failure_policy: FAIL_OPEN""" + ("""
                allow_on_headers_stop_iteration: true""" if hold else "")


def native_module_filter(config):
    """tollgate's native build, as envoy/gateway-native.yaml configures it (Envoy finds libtollgate.so in
    ENVOY_DYNAMIC_MODULES_SEARCH_PATH, which `Envoy` sets)."""
    cfg = json.dumps(config) if not isinstance(config, str) else config
    return f"""
          - name: envoy.filters.http.dynamic_modules
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter
              dynamic_module_config: {{name: tollgate}}
              filter_name: tollgate
              filter_config:
                "@type": type.googleapis.com/google.protobuf.StringValue
                value: '{cfg.replace("'", "''")}'"""


# The directory Envoy opens libtollgate.so in (`module_dir`): the native module under its loading name.
MODULE_DIR = None


def module_dir(workdir, native):
    """A directory holding `native` as libtollgate.so (Envoy opens `lib<name>.so` by name), or None when the
    native build is absent (its scenarios are then skipped)."""
    global MODULE_DIR
    if not native or not os.path.isfile(native):
        return None
    d = os.path.join(workdir, "modules")
    os.makedirs(d, exist_ok=True)
    dst = os.path.join(d, "libtollgate.so")
    if not os.path.exists(dst):
        shutil.copyfile(native, dst)
    MODULE_DIR = d
    return d


# Envoy's native AI filter: no route-level protocol is configured, so both directions are told to handle
# unconfigured routes as OpenAI Chat Completions (the fixtures' wire format).
NATIVE_FILTER = """
          - name: envoy.filters.http.ai_protocol_manager
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ai_protocol_manager.v3.AiProtocolManager
              request_handling: {parse_unconfigured_routes: true}
              response_handling:
                token_usage: {include_unconfigured_routes: true, default_llm_protocol: OPENAI_CHAT_COMPLETIONS}"""

ENVOY_TMPL = string.Template("""
admin:
  address: {socket_address: {address: 127.0.0.1, port_value: ${ADMIN}}}
static_resources:
  listeners:
  - name: gateway
    address: {socket_address: {address: 127.0.0.1, port_value: ${LISTEN}}}
    per_connection_buffer_limit_bytes: 8388608
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: gateway
          stream_idle_timeout: 300s
          route_config:
            virtual_hosts:
            - name: providers
              domains: ["*"]
              routes:
              - match: {prefix: "/stall/"}
                route: {cluster: stall, timeout: 0s}
              - match: {prefix: "/"}
                route: {cluster: upstream, timeout: 0s}
          http_filters:${FILTERS}
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
  clusters:
  - name: upstream
    type: STATIC
    connect_timeout: 2s
    per_connection_buffer_limit_bytes: 8388608
    circuit_breakers: {thresholds: [{max_connections: 100000, max_pending_requests: 100000, max_requests: 100000}]}
    load_assignment:
      cluster_name: upstream
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: ${UPSTREAM}}}}}]}]
  - name: stall
    type: STATIC
    connect_timeout: 2s
    circuit_breakers: {thresholds: [{max_connections: 100000, max_pending_requests: 100000, max_requests: 100000}]}
    load_assignment:
      cluster_name: stall
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: ${STALL}}}}}]}]
  - name: otel_collector
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: otel_collector
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: ${OTLP}}}}}]}]
""")


class Envoy:
    def __init__(self, workdir, name, filters, ports, cpuset):
        self.listen, self.admin_port = free_port(), free_port()
        self.dir = os.path.join(workdir, "envoy-" + name)
        os.makedirs(self.dir, exist_ok=True)
        cfg = ENVOY_TMPL.substitute(ADMIN=self.admin_port, LISTEN=self.listen, FILTERS=filters, **ports)
        self.config_path = os.path.join(self.dir, "envoy.yaml")
        with open(self.config_path, "w") as f:
            f.write(cfg)
        self.log_path = os.path.join(self.dir, "envoy.log")
        self.cpuset = cpuset
        self.proc = None
        self.start_s = None

    def env(self):
        """Envoy's environment: the native module's directory for the dynamic-modules filter."""
        env = dict(os.environ)
        if MODULE_DIR:
            env["ENVOY_DYNAMIC_MODULES_SEARCH_PATH"] = MODULE_DIR
        return env

    def start(self, timeout=60):
        self.logf = open(self.log_path, "wb")
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            pin(self.cpuset, [envoy_bin(), "-c", self.config_path, "--concurrency", "1", "-l", "warn",
                              "--base-id", str(self.admin_port), "--disable-hot-restart"]),
            stdout=self.logf, stderr=subprocess.STDOUT, env=self.env())
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=2)
                c.request("GET", "/ready")
                if c.getresponse().status == 200:
                    self.start_s = time.monotonic() - t0
                    return True
            except OSError:
                pass
            time.sleep(0.01)
        return False

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def cpu_ns(self):
        total = 0
        for p in glob.glob(f"/proc/{self.proc.pid}/task/*/schedstat"):
            try:
                with open(p) as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                pass
        return total

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def stop(self):
        stop_proc(self.proc)
        if getattr(self, "logf", None):
            self.logf.close()


# ---------------------------------------------------------------------------------------------------------
# Load


WRK_LUA = """
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
local f = io.open("%s", "rb"); wrk.body = f:read("*all"); f:close()
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('BENCHJSON {"requests":%%d,"duration_us":%%d,"bytes":%%d,"p50_us":%%d,"p90_us":%%d,' ..
    '"p99_us":%%d,"errors":%%d,"status_errors":%%d}\\n', summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
"""


def wrk(workdir, cpuset, url, body_path, conns, seconds):
    script = os.path.join(workdir, "wrk-" + os.path.basename(body_path) + ".lua")
    if not os.path.exists(script):
        with open(script, "w") as f:
            f.write(WRK_LUA % body_path)
    out = subprocess.run(pin(cpuset, ["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--timeout", "10s",
                                      "-s", script, url]),
                         capture_output=True, text=True, timeout=seconds + 60)
    for line in out.stdout.splitlines():
        if line.startswith("BENCHJSON "):
            return json.loads(line[len("BENCHJSON "):])
    raise RuntimeError(f"wrk failed: {out.stdout}\n{out.stderr}")


def measured_load(env, workdir, cpuset, path, body_path, conns, seconds):
    """wrk against `path` while sampling Envoy's CPU time; adds rps, MB/s and CPU µs per request."""
    url = f"http://127.0.0.1:{env.listen}{path}"
    wrk(workdir, cpuset, url, body_path, conns, 1)  # warm-up: connections, VM, allocator
    c0 = env.cpu_ns()
    r = wrk(workdir, cpuset, url, body_path, conns, seconds)
    c1 = env.cpu_ns()
    secs = r["duration_us"] / 1e6
    r["rps"] = r["requests"] / secs if secs else 0.0
    r["mb_s"] = r["bytes"] / secs / 1e6 if secs else 0.0
    r["cpu_us_per_req"] = (c1 - c0) / 1e3 / r["requests"] if r["requests"] else None
    r["cpu_util"] = (c1 - c0) / 1e9 / secs if secs else None
    return r


def stream_timing(env, path, body, n):
    """Sequential streamed requests on one keep-alive connection: median time to the response headers, to
    the first body byte and to the end of the body (µs)."""
    conn = http.client.HTTPConnection("127.0.0.1", env.listen, timeout=30)
    hdr, first, total, size = [], [], [], 0
    try:
        for i in range(n + 3):
            t0 = time.perf_counter()
            conn.request("POST", path, body=body, headers={"content-type": "application/json"})
            r = conn.getresponse()
            t1 = time.perf_counter()
            b = r.read1(65536)
            t2 = time.perf_counter()
            rest = r.read()
            t3 = time.perf_counter()
            size = len(b) + len(rest)
            if i >= 3:  # the first requests warm the connection and the VM
                hdr.append((t1 - t0) * 1e6)
                first.append((t2 - t0) * 1e6)
                total.append((t3 - t0) * 1e6)
    finally:
        conn.close()
    med = statistics.median
    return {"ttfb_headers_us": med(hdr), "ttfb_body_us": med(first), "total_us": med(total),
            "bytes": size, "client_mb_s": size / (med(total) / 1e6) / 1e6,
            "samples": {"ttfb_headers_us": hdr, "ttfb_body_us": first, "total_us": total}}


def median_load(runs):
    """One load point from its rounds: the median of each figure (CPU per request included)."""
    med = statistics.median
    out = {k: med([r[k] for r in runs]) for k in ("rps", "mb_s", "p50_us", "p90_us", "p99_us")}
    cpu = [r["cpu_us_per_req"] for r in runs if r["cpu_us_per_req"] is not None]
    out["cpu_us_per_req"] = med(cpu) if cpu else None
    out["requests"] = sum(r["requests"] for r in runs)
    out["errors"] = sum(r["errors"] + r["status_errors"] for r in runs)
    out["rounds"] = len(runs)
    return out


def median_timing(runs):
    """Stream timings from their rounds: the median over every stream of every round."""
    med = statistics.median
    out = {k: med([x for r in runs for x in r["samples"][k]]) for k in ("ttfb_headers_us", "ttfb_body_us",
                                                                         "total_us")}
    out["bytes"] = runs[-1]["bytes"]
    out["client_mb_s"] = out["bytes"] / (out["total_us"] / 1e6) / 1e6
    out["streams"] = sum(len(r["samples"]["total_us"]) for r in runs)
    return out


def inflight_memory(env, body, n):
    """Envoy's RSS growth with `n` streams held open mid-response (KiB per stream)."""
    def open_streams(k):
        socks = []
        req = (b"POST /stall/v1/chat/completions HTTP/1.1\r\nhost: api.openai.com\r\n"
               b"content-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body)) + body
        for _ in range(k):
            s = socket.create_connection(("127.0.0.1", env.listen), timeout=10)
            s.sendall(req)
            socks.append(s)
        for s in socks:  # every stream has its headers and first event through the filter
            s.recv(4096)
        return socks

    warm = open_streams(16)
    time.sleep(0.3)
    for s in warm:
        s.close()
    time.sleep(0.5)
    before = env.rss_kib()
    socks = open_streams(n)
    time.sleep(0.5)
    after = env.rss_kib()
    for s in socks:
        s.close()
    return {"streams": n, "rss_before_kib": before, "rss_after_kib": after,
            "kib_per_stream": (after - before) / n}


# ---------------------------------------------------------------------------------------------------------
# Scenarios


def tollgate_config(otlp, extra=None):
    cfg = {"service_name": "tollgate-bench",
           "otlp": {"cluster": "otel_collector", "authority": "otel-collector", "flush_interval_ms": 1000},
           "conversation_id_header": "x-conversation-id"}
    if not otlp:
        cfg.pop("otlp")
    cfg.update(extra or {})
    return cfg


# A budget no request exhausts: every request is checked (and held until its body is read).
BUDGETS = {"tenant": {"header": "x-tenant-id", "default": "anonymous"},
           "budgets": [{"tenant": "*", "window": "1d", "tokens": 10 ** 15}]}

# The host calls tollgate makes on every small exchange (host/http.rs), as bench/noop names them: both header
# maps read whole, the request body held and read once, every response chunk read, `traceparent` added, the
# request's `content-length` removed, two clock reads. Its counters go to Envoy once per tick, not per call.
# The no-op module making just these calls is the "floor": what any proxy-wasm filter doing this job costs
# before it runs a line of its own code.
FLOOR_OPS = ["headers", "bodies", "traceparent", "content_length", "clock"]


def scenarios(args):
    out = [("none", "no filter", ""),
           ("noop", "no-op Wasm", wasm_filter("noop", args.noop, "")),
           ("floor", "no-op + tollgate's host calls (floor)", wasm_filter("noop", args.noop, ",".join(FLOOR_OPS))),
           ("native", "native ai_protocol_manager", NATIVE_FILTER),
           ("tollgate", "tollgate defaults", wasm_filter("tollgate", args.tollgate, tollgate_config(True))),
           # Budgets and redaction: the keys documented in README; if this build rejects them the scenario is
           # skipped with Envoy's reason.
           ("budgets", "tollgate + budgets", wasm_filter("tollgate", args.tollgate, tollgate_config(True, BUDGETS))),
           # The same on an Envoy without allow_on_headers_stop_iteration: tollgate cannot hold the headers
           # and forwards them before the budget decision. The difference to "budgets" is the cost of holding.
           ("budgets-unheld", "tollgate + budgets, headers not held",
            wasm_filter("tollgate", args.tollgate, tollgate_config(True, BUDGETS), hold=False)),
           ("redaction", "tollgate + redaction + capture", wasm_filter("tollgate", args.tollgate, tollgate_config(
               True, {"capture_content": True, "redaction": {"egress": True}}))),
           # The native build, same plugin JSON: the issue's targets compare it with "none" and "native".
           ("dynmod", "tollgate native module", native_module_filter(tollgate_config(True))),
           ("dynmod-budgets", "tollgate native module + budgets",
            native_module_filter(tollgate_config(True, BUDGETS))),
           # What the span and metric export costs the native build (callouts to the collector, their sockets).
           ("dynmod-noexport", "tollgate native module without OTLP export",
            native_module_filter(tollgate_config(False)))]
    return [s for s in out if not args.only or s[0] in args.only.split(",")]


# The native build's targets (issue: the same core as a native Envoy dynamic module): (label, derived key,
# bound, how to read it). Benchmark targets, reported, never asserted by a test.
TARGETS = [
    ("small requests at 32 connections, × Envoy without filters", "small_rps_vs_none", ">=", 0.90),
    ("added CPU per small request, µs (every span exported)", "small_cpu_us_added", "<=", 8.0),
    ("a lone request, added p50 µs", "small1_p50_us_added", "<=", 20.0),
    ("a 1,000-event stream arriving at once, × total time", "sse_total_us_ratio", "<=", 1.10),
    ("a paced stream, × total time", "paced_total_us_ratio", "<=", 1.01),
    ("RSS over Envoy without filters, MiB", "rss_mib_added", "<=", 10.0),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tollgate", default=os.path.join(ROOT, "tollgate.wasm"))
    ap.add_argument("--noop", default=os.path.join(ROOT, "target/bench/tollgate_bench_noop.wasm"))
    ap.add_argument("--native", default=os.path.join(ROOT, "libtollgate.so"),
                    help="tollgate's native module (copied as libtollgate.so into the run's module directory)")
    ap.add_argument("--seconds", type=float, default=5, help="measured wrk run length per load point")
    ap.add_argument("--conns", type=int, default=32)
    ap.add_argument("--quick", action="store_true", help="short runs, for checking the harness")
    ap.add_argument("--only", default="", help="comma-separated scenario keys")
    ap.add_argument("--rounds", type=int, default=3,
                    help="interleaved rounds of the small-request and stream-timing measurements")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    args = ap.parse_args()
    if args.quick:
        args.seconds = 1.5
    secs = max(1, int(round(args.seconds)))
    n_timing = 20 if args.quick else 30  # per round
    n_streams = 100 if args.quick else 400

    all_cpus = cpus()
    envoy_cpu = str(all_cpus[0])
    load_cpus = ",".join(str(c) for c in all_cpus[1:]) or envoy_cpu
    workdir = tempfile.mkdtemp(prefix="tollgate-bench-")
    os.chmod(workdir, 0o755)

    bodies = {"small": ("application/json", chat_response(1 * KIB)),
              "big": ("application/json", chat_response(1 * MIB)),
              "r64k": ("application/json", chat_response(64 * KIB)),
              "r256k": ("application/json", chat_response(256 * KIB)),
              "sse250": ("text/event-stream", sse_body(250)),
              "sse": ("text/event-stream", sse_body(1000)),
              "sse4000": ("text/event-stream", sse_body(4000))}
    reqs = {}
    for name, size, stream in (("req1k", 1 * KIB, False), ("req1k-stream", 1 * KIB, True),
                               ("req16k", 16 * KIB, False), ("req256k", 256 * KIB, False)):
        reqs[name] = os.path.join(workdir, name + ".json")
        with open(reqs[name], "wb") as f:
            f.write(chat_request(size, stream))

    # (key, path, request body, connections, seconds): measured in interleaved rounds (below).
    rounds = 1 if args.quick else args.rounds
    interleaved = [("small", "/small/v1/chat/completions", "req1k", args.conns, max(1, secs - 2)),
                   # One connection, one request at a time: the latency a filter adds when Envoy is not
                   # saturated (at 32 connections p50 is mostly queueing, i.e. throughput again).
                   ("small1", "/small/v1/chat/completions", "req1k", 1, max(1, secs - 3))]
    # (key, path, request body, connections): the other load points every scenario runs.
    loads = [("sse", "/sse/v1/chat/completions", "req1k-stream", 8),
             ("req256k", "/small/v1/chat/completions", "req256k", 8),
             ("resp1m", "/big/v1/chat/completions", "req1k", 8)]
    # Linearity: only where a filter's cost scales with bytes.
    linear = [("req16k", "/small/v1/chat/completions", "req16k", 8),
              ("resp64k", "/r64k/v1/chat/completions", "req1k", 8),
              ("resp256k", "/r256k/v1/chat/completions", "req1k", 8),
              ("sse250", "/sse250/v1/chat/completions", "req1k-stream", 8),
              ("sse4000", "/sse4000/v1/chat/completions", "req1k-stream", 8)]

    nginx = Nginx(workdir, load_cpus, bodies)
    stall = StallUpstream()
    ports = {"UPSTREAM": nginx.port, "STALL": stall.port, "OTLP": nginx.otlp_port}
    results = {"scenarios": {}, "skipped": {}}
    t_start = time.monotonic()
    envs = {}  # key -> (Envoy, its results), every scenario's Envoy running at once (only one gets load)
    if module_dir(workdir, args.native) is None:
        results["skipped"].update({k: {"label": label, "reason": f"no native module at {args.native} (make build)"}
                                   for k, label, _ in scenarios(args) if k.startswith("dynmod")})
    sse_req = open(reqs["req1k-stream"], "rb").read()
    small_req = open(reqs["req1k"], "rb").read()
    try:
        for key, label, filters in scenarios(args):
            if key in results["skipped"]:
                continue
            env = Envoy(workdir, key, filters, ports, envoy_cpu)
            print(f"bench: start {label}", flush=True)
            if not env.start():
                lines = env.log().splitlines()
                # The plugin's own message (logged through the Wasm log) names the rejected key.
                reason = [ln for ln in lines if "wasm log" in ln] or [
                    ln for ln in lines if "error" in ln.lower() or "critical" in ln.lower()]
                text = reason[0] if reason else env.log()[-400:]
                text = text.split("wasm log", 1)[-1].strip(" :") if "wasm log" in text else text
                results["skipped"][key] = {"label": label, "reason": text[:400]}
                print(f"bench:   skipped: {results['skipped'][key]['reason']}", flush=True)
                env.stop()
                continue
            # A rejected plugin configuration with FAIL_OPEN still starts; a probe shows whether it works.
            s = {"label": label, "start_s": env.start_s, "rss_start_kib": env.rss_kib()}
            probe = http.client.HTTPConnection("127.0.0.1", env.listen, timeout=10)
            probe.request("POST", "/small/v1/chat/completions", body=open(reqs["req1k"], "rb").read(),
                          headers={"content-type": "application/json"})
            st = probe.getresponse().status
            probe.close()
            log = env.log()
            if st != 200 or ("tollgate" in key or key.startswith("budgets") or key == "redaction") and (
                    "configuration" in log.lower() and ("rejected" in log.lower() or "failed" in log.lower())):
                bad = [ln for ln in log.splitlines() if "config" in ln.lower()]
                results["skipped"][key] = {"label": label,
                                           "reason": (bad[-1] if bad else f"probe status {st}")[:400]}
                print(f"bench:   skipped: {results['skipped'][key]['reason']}", flush=True)
                env.stop()
                continue
            envs[key] = (env, s)

        # The figures the targets are about, in rounds that visit every scenario in turn: the host's drift
        # during the run (other tenants of the VM, CPU frequency) then falls on every scenario alike.
        # Each figure is the median of its rounds; the rounds are kept in the JSON.
        for r in range(rounds):
            print(f"bench: round {r + 1} of {rounds}", flush=True)
            for key, (env, s) in envs.items():
                per = s.setdefault("rounds", {})
                for lk, path, req, conns, dur in interleaved:
                    one = measured_load(env, workdir, load_cpus, path, reqs[req], conns, dur)
                    per.setdefault(lk, []).append(one)
                    print(f"bench:   {s['label']} {lk}: {one['rps']:.0f} rps, p50 {one['p50_us']} µs, "
                          f"cpu {fmt(one['cpu_us_per_req'], '.1f')} µs/req", flush=True)
                per.setdefault("stream_timing", []).append(
                    stream_timing(env, "/sse/v1/chat/completions", sse_req, n_timing))
                # A small non-streamed exchange, one at a time: the time to its first byte includes the
                # upstream connection's reuse and the whole exchange, so holding headers shows here.
                per.setdefault("small_timing", []).append(
                    stream_timing(env, "/small/v1/chat/completions", small_req, n_timing))
                # Paced: the upstream sends the first event, then the rest 20 ms later, so the time to the
                # first byte is the cost of the headers and the first event alone (nginx sends the whole
                # stream at once, and Envoy flushes the headers only after processing that burst).
                per.setdefault("paced_timing", []).append(
                    stream_timing(env, "/stall/paced/v1/chat/completions", sse_req, n_timing))
        for key, (env, s) in envs.items():
            # Resident memory after the rounds' traffic: steady state, each Envoy having served the same load.
            s["rss_kib"] = env.rss_kib()
            for lk, *_ in interleaved:
                s[lk] = median_load(s["rounds"][lk])
            for lk in ("stream_timing", "paced_timing", "small_timing"):
                s[lk] = median_timing(s["rounds"][lk])
            print(f"bench: {s['label']}: small {s['small']['rps']:.0f} rps, sse timing {s['stream_timing']}",
                  flush=True)

        for key, (env, s) in envs.items():
            print(f"bench: {s['label']}", flush=True)
            try:
                for lk, path, req, conns in loads:
                    s[lk] = measured_load(env, workdir, load_cpus, path, reqs[req], conns, secs)
                    print(f"bench:   {lk}: {s[lk]['rps']:.0f} rps, p50 {s[lk]['p50_us']} µs, "
                          f"cpu {fmt(s[lk]['cpu_us_per_req'], '.1f')} µs/req", flush=True)
                if key in ("none", "noop", "tollgate", "redaction", "dynmod"):
                    for lk, path, req, conns in linear:
                        s[lk] = measured_load(env, workdir, load_cpus, path, reqs[req], conns, max(1, secs - 2))
                if key in ("none", "noop", "floor", "tollgate", "dynmod"):
                    s["inflight"] = inflight_memory(env, sse_req, n_streams)
                    stall.reset()
                    print(f"bench:   in-flight: {s['inflight']['kib_per_stream']:.1f} KiB/stream", flush=True)
                s["envoy_log_warnings"] = sum(1 for ln in env.log().splitlines() if "[warning]" in ln)
                results["scenarios"][key] = s
            finally:
                env.stop()
    finally:
        for env, _ in envs.values():
            env.stop()
        stall.stop()
        nginx.stop()
    results["elapsed_s"] = time.monotonic() - t_start
    results["machine"] = machine()
    results["wasm"] = wasm_sizes(args)
    if args.native and os.path.isfile(args.native):
        results["native_bytes"] = os.path.getsize(args.native)
    results["sizes"] = {"sse_bytes": {k: len(bodies[k][1]) for k in ("sse250", "sse", "sse4000")},
                        "response_bytes": {k: len(bodies[k][1]) for k in ("small", "r64k", "r256k", "big")},
                        "request_bytes": {k: os.path.getsize(v) for k, v in reqs.items()}}
    results["derived"] = derive(results)
    write(results, args)
    shutil.rmtree(workdir, ignore_errors=True)


def machine():
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        pass
    ver = subprocess.run([envoy_bin(), "--version"], capture_output=True, text=True).stdout.strip().split()[-1]
    wrkv = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    return {"host": platform.node(), "cpu": model, "cpus": len(cpus()), "kernel": platform.release(),
            "loadavg": os.getloadavg(), "envoy": ver, "wrk": (wrkv.stdout + wrkv.stderr).split("\n")[0],
            **build()}


def build():
    """What was measured: the tollgate version (Cargo.toml), the commit, and the build name results are filed
    under: `git describe` of the tree, i.e. `v<version>` on a release tag, else the abbreviated commit
    (`v<version>-<n>-g<commit>` after a tag), with `-dirty` when the tree had uncommitted changes. The date
    is UTC."""
    def git(*a):
        return subprocess.run(["git", "-C", ROOT, *a], capture_output=True, text=True).stdout.strip()
    commit = git("rev-parse", "--short", "HEAD")
    dirty = bool(git("status", "--porcelain"))
    name = (git("describe", "--tags", "--match", "v[0-9]*", "--always") or "unknown") + ("-dirty" if dirty else "")
    with open(os.path.join(ROOT, "Cargo.toml")) as f:
        version = next((ln.split('"')[1] for ln in f if ln.startswith("version = ")), "")
    now = datetime.datetime.now(datetime.timezone.utc)
    return {"version": version, "commit": commit + ("-dirty" if dirty else ""), "build": name,
            "day": now.strftime("%Y-%m-%d"), "date": now.strftime("%Y-%m-%d %H:%M UTC")}


def wasm_sizes(args):
    out = {"tollgate_bytes": os.path.getsize(args.tollgate), "noop_bytes": os.path.getsize(args.noop)}
    opt = shutil.which("wasm-opt")
    if opt:
        dst = os.path.join(tempfile.gettempdir(), "tollgate-bench-opt.wasm")
        r = subprocess.run([opt, "-Oz", "--all-features", "--strip-debug", "--strip-producers",
                            args.tollgate, "-o", dst], capture_output=True, text=True)
        out["wasm_opt_Oz_bytes"] = os.path.getsize(dst) if r.returncode == 0 else None
        if r.returncode != 0:
            out["wasm_opt_error"] = (r.stderr or r.stdout)[:300]
    return out


def derive(res):
    sc = res["scenarios"]
    d = {}
    base = sc.get("none")
    noop = sc.get("noop")
    floor = sc.get("floor")
    for key, s in sc.items():
        x = {}
        for lk in ("small", "small1", "sse", "req256k", "resp1m"):
            if lk not in s:
                continue
            if s[lk]["cpu_us_per_req"] is None:
                continue
            if base and lk in base and base[lk]["cpu_us_per_req"] is not None:
                x[f"{lk}_rps_vs_none"] = s[lk]["rps"] / base[lk]["rps"]
                x[f"{lk}_cpu_us_added"] = s[lk]["cpu_us_per_req"] - base[lk]["cpu_us_per_req"]
                x[f"{lk}_p50_us_added"] = s[lk]["p50_us"] - base[lk]["p50_us"]
            if noop and lk in noop and noop[lk]["cpu_us_per_req"] is not None:
                x[f"{lk}_rps_vs_noop"] = s[lk]["rps"] / noop[lk]["rps"]
                x[f"{lk}_cpu_us_vs_noop"] = s[lk]["cpu_us_per_req"] - noop[lk]["cpu_us_per_req"]
            if floor and lk in floor and floor[lk]["cpu_us_per_req"] is not None:
                x[f"{lk}_rps_vs_floor"] = s[lk]["rps"] / floor[lk]["rps"]
                x[f"{lk}_cpu_us_vs_floor"] = s[lk]["cpu_us_per_req"] - floor[lk]["cpu_us_per_req"]
        if base and "stream_timing" in s and "stream_timing" in base:
            for m in ("ttfb_headers_us", "ttfb_body_us", "total_us"):
                x[f"sse_{m}_ratio"] = s["stream_timing"][m] / base["stream_timing"][m]
        if base and "small_timing" in s and "small_timing" in base:
            for m in ("ttfb_headers_us", "ttfb_body_us"):
                x[f"small_{m}_added"] = s["small_timing"][m] - base["small_timing"][m]
        if base and "paced_timing" in s and "paced_timing" in base:
            for m in ("ttfb_body_us", "total_us"):
                x[f"paced_{m}_ratio"] = s["paced_timing"][m] / base["paced_timing"][m]
                x[f"paced_{m}_added"] = s["paced_timing"][m] - base["paced_timing"][m]
        if base and "sse" in s:
            mib = res["sizes"]["sse_bytes"]["sse"] / MIB
            x["sse_cpu_us_per_mib_added"] = x.get("sse_cpu_us_added", 0) / mib
            if noop and "sse" in noop:
                per = (s["sse"]["cpu_us_per_req"] - noop["sse"]["cpu_us_per_req"]) / mib
                x["sse_cpu_us_per_mib_vs_noop"] = per
                x["sse_mb_s_per_core_vs_noop"] = (1e6 / per) * MIB / 1e6 if per > 0 else None
        # Linearity: added CPU (vs none) against body size, for each family with 3 sizes.
        if base:
            fam = {"request": [("req1k", "small"), ("req16k", "req16k"), ("req256k", "req256k")],
                   "response": [("r64k", "resp64k"), ("r256k", "resp256k"), ("big", "resp1m")],
                   "sse": [("sse250", "sse250"), ("sse", "sse"), ("sse4000", "sse4000")]}
            for fname, pts in fam.items():
                row = []
                for size_key, lk in pts:
                    if lk in s and lk in base:
                        if fname == "request":
                            size = res["sizes"]["request_bytes"][size_key]
                        elif fname == "response":
                            size = res["sizes"]["response_bytes"][size_key]
                        else:
                            size = res["sizes"]["sse_bytes"][size_key]
                        if s[lk]["cpu_us_per_req"] is None or base[lk]["cpu_us_per_req"] is None:
                            continue
                        added = s[lk]["cpu_us_per_req"] - base[lk]["cpu_us_per_req"]
                        row.append({"bytes": size, "cpu_us_added": added, "us_per_kib": added / (size / KIB)})
                if len(row) == 3:
                    x[f"linearity_{fname}"] = row
        if base and "inflight" in s and "inflight" in base:
            x["inflight_kib_per_stream_vs_none"] = s["inflight"]["kib_per_stream"] - base["inflight"]["kib_per_stream"]
        if noop and "inflight" in s and "inflight" in noop:
            x["inflight_kib_per_stream_vs_noop"] = s["inflight"]["kib_per_stream"] - noop["inflight"]["kib_per_stream"]
        if base:
            x["start_s_added"] = s["start_s"] - base["start_s"]
        if base and "rss_kib" in s and "rss_kib" in base:
            x["rss_mib_added"] = (s["rss_kib"] - base["rss_kib"]) / 1024
        d[key] = x
    return d


def fmt(v, spec=".0f"):
    return "–" if v is None else format(v, spec)


def result_stem(out_dir, m, kind):
    """bench/results/<date>-<build>-<kind>, e.g. `2026-12-05-cb04db5-instructions` or
    `2026-12-20-v0.2.0-wallclock`: the day (UTC) and the build measured (`build`). A second run of the same
    build on the same day gets `-2`, `-3` ...: a run never overwrites another result."""
    stem = os.path.join(out_dir, f"{m['day']}-{m['build']}-{kind}")
    out, n = stem, 1
    while os.path.exists(out + ".md") or os.path.exists(out + ".json"):
        n += 1
        out = f"{stem}-{n}"
    return out


def write(res, args):
    os.makedirs(args.out, exist_ok=True)
    m = res["machine"]
    stem = result_stem(args.out, m, "wallclock")
    with open(stem + ".json", "w") as f:
        json.dump(res, f, indent=1, sort_keys=True)
    order = ["none", "noop", "floor", "native", "tollgate", "budgets", "budgets-unheld", "redaction", "dynmod",
             "dynmod-budgets", "dynmod-noexport"]
    sc = {k: res["scenarios"][k] for k in sorted(res["scenarios"], key=lambda k: (order + [k]).index(k))}
    d = res["derived"]
    L = [f"# tollgate benchmark — {m['date']}", "",
         f"Machine: `{m['host']}`, {m['cpu']}, {m['cpus']} CPUs, Linux {m['kernel']}, load average at the end "
         f"{', '.join(f'{x:.2f}' for x in m['loadavg'])}. Envoy {m['envoy']} (`--concurrency 1`, pinned to CPU 0); "
         f"nginx upstream, {m['wrk']} and the Python clients on the other CPUs. Build `{m['build']}` "
         f"(tollgate {m['version']}, commit `{m['commit']}`). "
         f"Run time {res['elapsed_s']:.0f} s.", "",
         "Every scenario ran in this one run against the same upstream, so **compare ratios within the table**; "
         "absolute figures depend on the machine and on whatever else was running (on a shared CI host they "
         "are noisy). CPU figures are Envoy's whole-process CPU time divided by requests served.", ""]
    if "dynmod" in sc:
        x, cpp = d["dynmod"], d.get("native", {})
        L += ["## Targets of the native build", "",
              "tollgate's native module (`libtollgate.so`) in this run, against the targets it was built for; "
              "benchmark targets, not test assertions. The Wasm build and Envoy's C++ `ai_protocol_manager` "
              "are shown for the same measure.", "",
              "| measure | target | native module | met | Wasm build | C++ ai_protocol_manager |",
              "|---|---|---:|:---:|---:|---:|"]
        for label, k, op, bound in TARGETS:
            v = x.get(k)
            met = "–" if v is None else ("yes" if (v >= bound if op == ">=" else v <= bound) else "no")
            spec = ".2f" if bound < 5 else ".1f"
            L.append(f"| {label} | {op} {bound:g} | {fmt(v, spec)} | {met} | "
                     f"{fmt(d.get('tollgate', {}).get(k), spec)} | {fmt(cpp.get(k), spec)} |")
        if cpp.get("small_rps_vs_none") is not None and x.get("small_rps_vs_none") is not None:
            L.append(f"| small requests: above the C++ filter | > {cpp['small_rps_vs_none']:.2f} | "
                     f"{x['small_rps_vs_none']:.2f} | "
                     f"{'yes' if x['small_rps_vs_none'] > cpp['small_rps_vs_none'] else 'no'} | | |")
        L.append("")
    n_rounds = max((s.get("small", {}).get("rounds", 1) for s in sc.values()), default=1)
    L += ["## Small requests (1 KiB in / 1 KiB out, 32 connections)", "",
          (f"Medians of {n_rounds} rounds that visit every scenario in turn. " if n_rounds > 1 else
           "One round (`--quick`). ") + "The floor is the no-op module "
          "making the host calls tollgate makes on every exchange (`FLOOR_OPS`): what any proxy-wasm filter "
          "doing this job costs before its own code runs.", "",
          "| scenario | req/s | × no filter | × no-op Wasm | × floor | p50 µs | p99 µs | Envoy CPU µs/req | "
          "added vs no filter | added vs no-op | added vs floor |",
          "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for key, s in sc.items():
        r, x = s["small"], d[key]
        L.append(f"| {s['label']} | {r['rps']:.0f} | {fmt(x.get('small_rps_vs_none'), '.2f')} | "
                 f"{fmt(x.get('small_rps_vs_noop'), '.2f')} | {fmt(x.get('small_rps_vs_floor'), '.2f')} | "
                 f"{r['p50_us']} | {r['p99_us']} | {fmt(r['cpu_us_per_req'], '.1f')} | "
                 f"{fmt(x.get('small_cpu_us_added'), '+.1f')} | {fmt(x.get('small_cpu_us_vs_noop'), '+.1f')} | "
                 f"{fmt(x.get('small_cpu_us_vs_floor'), '+.1f')} |")
    if any("small1" in s for s in sc.values()):
        L += ["", "One connection, one request at a time (Envoy not saturated): the latency each filter adds.", "",
              "| scenario | req/s | p50 µs | added p50 µs vs no filter | p99 µs | Envoy CPU µs/req |",
              "|---|---:|---:|---:|---:|---:|"]
        for key, s in sc.items():
            r, x = s.get("small1"), d[key]
            if r:
                L.append(f"| {s['label']} | {r['rps']:.0f} | {r['p50_us']} | "
                         f"{fmt(x.get('small1_p50_us_added'), '+.0f')} | {r['p99_us']} | "
                         f"{fmt(r['cpu_us_per_req'], '.1f')} |")
    if any("small_timing" in s for s in sc.values()):
        L += ["", "Time to first byte of a small non-streamed exchange (sequential, one connection, median): a "
              "request a budget checks is held until its body is read (`budgets`); `budgets-unheld` is the same "
              "filter on an Envoy without `allow_on_headers_stop_iteration`.", "",
              "| scenario | headers µs | added vs no filter | first byte µs | added vs no filter |",
              "|---|---:|---:|---:|---:|"]
        for key, s in sc.items():
            t, x = s.get("small_timing"), d[key]
            if t:
                L.append(f"| {s['label']} | {t['ttfb_headers_us']:.0f} | "
                         f"{fmt(x.get('small_ttfb_headers_us_added'), '+.0f')} | {t['ttfb_body_us']:.0f} | "
                         f"{fmt(x.get('small_ttfb_body_us_added'), '+.0f')} |")
    L += ["", "## Streaming (1,000-event SSE, " + f"{res['sizes']['sse_bytes']['sse'] / KIB:.0f} KiB)", "",
          "Sequential streams on one connection (median): time to headers, to the first body byte, to the end; "
          "and with 8 connections: streams/s and Envoy CPU.", "",
          "| scenario | headers µs | first byte µs | total µs | × no filter (total) | client MB/s | streams/s (8 conns) | "
          "CPU µs/stream | added CPU µs per MiB vs no-op |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for key, s in sc.items():
        t, x, r = s["stream_timing"], d[key], s["sse"]
        L.append(f"| {s['label']} | {t['ttfb_headers_us']:.0f} | {t['ttfb_body_us']:.0f} | {t['total_us']:.0f} | "
                 f"{fmt(x.get('sse_total_us_ratio'), '.2f')} | {t['client_mb_s']:.0f} | {r['rps']:.0f} | "
                 f"{fmt(r['cpu_us_per_req'], '.0f')} | {fmt(x.get('sse_cpu_us_per_mib_vs_noop'), '.0f')} |")
    L += ["", "Paced stream (first event at once, the other 1,000 events 20 ms later, like a model): median time "
          "to the first body byte and to the end.", "",
          "| scenario | first byte µs | × no filter | added µs | total µs | × no filter |", "|---|---:|---:|---:|---:|---:|"]
    for key, s in sc.items():
        t, x = s.get("paced_timing"), d[key]
        if t:
            L.append(f"| {s['label']} | {t['ttfb_body_us']:.0f} | {fmt(x.get('paced_ttfb_body_us_ratio'), '.2f')} | "
                     f"{fmt(x.get('paced_ttfb_body_us_added'), '+.0f')} | {t['total_us']:.0f} | "
                     f"{fmt(x.get('paced_total_us_ratio'), '.3f')} |")
    L += ["", "## Large bodies (8 connections)", "",
          "| scenario | 256 KiB requests/s | × no filter | CPU µs/req | 1 MiB responses/s | × no filter | CPU µs/req |",
          "|---|---:|---:|---:|---:|---:|---:|"]
    for key, s in sc.items():
        x = d[key]
        L.append(f"| {s['label']} | {s['req256k']['rps']:.0f} | {fmt(x.get('req256k_rps_vs_none'), '.2f')} | "
                 f"{fmt(s['req256k']['cpu_us_per_req'], '.0f')} | {s['resp1m']['rps']:.0f} | "
                 f"{fmt(x.get('resp1m_rps_vs_none'), '.2f')} | {fmt(s['resp1m']['cpu_us_per_req'], '.0f')} |")
    L += ["", "## Linearity (Envoy CPU added vs no filter, µs per request and per KiB)", ""]
    for key, s in sc.items():
        if key == "none":
            continue
        for fam in ("request", "response", "sse"):
            row = d[key].get(f"linearity_{fam}")
            if row:
                L.append(f"- {s['label']}, {fam} bodies: " + "; ".join(
                    f"{p['bytes'] / KIB:.0f} KiB → {p['cpu_us_added']:.0f} µs ({p['us_per_kib']:.2f} µs/KiB)"
                    for p in row))
    L += ["", "## Memory, size, start-up", ""]
    L.append("- Envoy RSS growth with 400 streams held open mid-response, per stream (Wasm linear memory never "
             "shrinks and grows in 64 KiB pages, so this is coarse; the filter's own carried state is measured "
             "exactly by `hotpath sse`):")
    for key, s in sc.items():
        if "inflight" in s:
            i = s["inflight"]
            extra = d[key].get("inflight_kib_per_stream_vs_noop")
            L.append(f"  - {s['label']}: {i['kib_per_stream']:.1f} KiB"
                     + (f", {extra:+.1f} KiB vs the no-op module" if extra is not None and key != "noop" else ""))
    w = res["wasm"]
    L.append(f"- tollgate.wasm: {w['tollgate_bytes']} bytes ({w['tollgate_bytes'] / MIB:.3f} MiB); no-op module "
             f"{w['noop_bytes']} bytes" + (f"; `wasm-opt -Oz` would give {w['wasm_opt_Oz_bytes']} bytes"
                                           if w.get("wasm_opt_Oz_bytes") else ""))
    L.append("- Start-up to /ready: " + ", ".join(f"{s['label']} {s['start_s'] * 1000:.0f} ms" for s in sc.values()))
    L.append("- Envoy RSS after the small-request rounds: " + ", ".join(
        f"{s['label']} {s['rss_kib'] / 1024:.0f} MiB" for s in sc.values() if "rss_kib" in s))
    if res.get("native_bytes"):
        L.append(f"- libtollgate.so: {res['native_bytes']} bytes")
    if res["skipped"]:
        L += ["", "## Skipped", ""]
        for key, v in res["skipped"].items():
            L.append(f"- {v['label']}: `{v['reason']}`")
    L.append("")
    with open(stem + ".md", "w") as f:
        f.write("\n".join(L))
    print(f"bench: wrote {stem}.md and {stem}.json")


if __name__ == "__main__":
    main()
