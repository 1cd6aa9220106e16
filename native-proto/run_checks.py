#!/usr/bin/env python3
"""Proves each capability of Envoy's dynamic-modules ABI that the native build of tollgate needs, against the
real Envoy 1.40 binary and the prototype module (native-proto/src). Prints PASS/FAIL per capability and
exits non-zero when one fails.

Everything runs on 127.0.0.1 with free ports: a Python HTTP/1.1 upstream (echo, SSE, callout and export
endpoints; it counts the connections it accepts), Envoy started with `ENVOY_DYNAMIC_MODULES_SEARCH_PATH`
pointing at the directory of `libtollgate.so`, and the loading contract of issue 25:
`dynamic_module_config: {name: tollgate}`, `filter_name: tollgate`, `filter_config` a
`google.protobuf.StringValue` holding JSON.

    .venv/bin/python native-proto/run_checks.py [--module target/native-proto/release/libtollgate.so] [-v]

It builds the module (`cargo build --release`, CARGO_TARGET_DIR=target/native-proto) when --module is absent.
"""

import argparse
import concurrent.futures
import http.client
import http.server
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "testenv"))
sys.path.insert(0, os.path.join(ROOT, "bench"))

import run as bench  # noqa: E402
from gateway import envoy_bin, free_port  # noqa: E402
from pki import TestCA  # noqa: E402

ALL_OPS = "headers,bodies,mutate,deny,rewrite,callout,export,counters,threads,attrs,panic,echo_config,schedule"
CLIENT_SPIFFE = "spiffe://tollgate.test/ns/apps/sa/client"


def fnv1a64(data):
    h = 0xCBF29CE484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


# ---------------------------------------------------------------------------------------------------------
# Upstream: echo, SSE, callout target and export sink, in one threaded HTTP/1.1 server.


class Upstream:
    def __init__(self, sse_events=5, sse_gap=0.25):
        self.connections = 0
        self.requests = []  # (path, headers, body, t_start)
        self.exports = []
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 5

            def log_message(self, *a):
                pass

            def _body(self):
                if self.headers.get("transfer-encoding", "").lower() == "chunked":
                    out = b""
                    while True:
                        n = int(self.rfile.readline().strip().split(b";")[0], 16)
                        if n == 0:
                            self.rfile.readline()
                            return out
                        out += self.rfile.read(n)
                        self.rfile.readline()
                n = int(self.headers.get("content-length", "0"))
                try:
                    return self.rfile.read(n)
                except (socket.timeout, TimeoutError):
                    return b"<timeout>"

            def _send(self, status, body, ctype="application/json"):
                self.send_response(status)
                self.send_header("content-type", ctype)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _handle(self):
                t = time.monotonic()
                body = self._body()
                hdrs = {k.lower(): v for k, v in self.headers.items()}
                with outer.lock:
                    outer.requests.append((self.path, hdrs, body, t))
                if self.path.startswith("/sse"):
                    self.send_response(200)
                    self.send_header("content-type", "text/event-stream")
                    self.send_header("transfer-encoding", "chunked")
                    self.end_headers()
                    for i in range(sse_events):
                        ev = f"data: {{\"i\":{i},\"t\":{time.monotonic():.6f}}}\n\n".encode()
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(ev), ev))
                        self.wfile.flush()
                        time.sleep(sse_gap)
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                    return
                if self.path.startswith("/callout"):
                    return self._send(200, b"callout-ok", "text/plain")
                if self.path.startswith("/export"):
                    with outer.lock:
                        outer.exports.append((t, json.loads(body or b"{}")))
                    return self._send(200, b"{}")
                echo = {"path": self.path, "method": self.command, "headers": hdrs, "body_len": len(body),
                        "body_fnv": f"{fnv1a64(body):016x}", "t_start": t,
                        "body": body.decode("utf-8", "replace") if len(body) <= 4096 else None}
                self._send(200, json.dumps(echo).encode())

            do_GET = do_POST = _handle

            def handle(self):
                try:
                    super().handle()
                except OSError:
                    pass  # a connection the check abandoned on purpose (a stale content-length)

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self):
                conn = super().get_request()
                with outer.lock:
                    outer.connections += 1
                return conn

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


# ---------------------------------------------------------------------------------------------------------
# Envoy


def module_filter(filter_config_any):
    """The HTTP filter entry loading libtollgate.so by name (the loading contract of issue 25)."""
    return f"""
          - name: envoy.filters.http.dynamic_modules
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter
              dynamic_module_config: {{name: tollgate}}
              filter_name: tollgate
              filter_config:
{filter_config_any}"""


def hcm(filter_config_any, routes_cluster="upstream"):
    return f"""
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: gateway
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: "/"}}
                route: {{cluster: {routes_cluster}, timeout: 0s}}
          http_filters:{module_filter(filter_config_any)}
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}"""


def string_value(cfg):
    text = json.dumps(cfg).replace("'", "''")
    return ("                \"@type\": type.googleapis.com/google.protobuf.StringValue\n"
            f"                value: '{text}'")


def struct_value(cfg):
    return ("                \"@type\": type.googleapis.com/google.protobuf.Struct\n"
            f"                value: {json.dumps(cfg)}")


def cluster(name, port):
    return f"""
  - name: {name}
    type: STATIC
    connect_timeout: 2s
    load_assignment:
      cluster_name: {name}
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}}}}}]}}]"""


class Envoy:
    def __init__(self, workdir, name, module_dir, filter_any, upstream_port, concurrency=2, tls=None):
        self.name = name
        self.dir = os.path.join(workdir, name)
        os.makedirs(self.dir, exist_ok=True)
        self.admin, self.port = free_port(), free_port()
        self.tls_port = free_port() if tls else None
        listeners = f"""
  - name: plain
    address: {{socket_address: {{address: 127.0.0.1, port_value: {self.port}}}}}
    filter_chains:
    - filters:{hcm(filter_any)}"""
        if tls:
            listeners += f"""
  - name: mtls
    address: {{socket_address: {{address: 127.0.0.1, port_value: {self.tls_port}}}}}
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true
          common_tls_context:
            tls_certificates: [{{certificate_chain: {{filename: "{tls['cert']}"}}, private_key: {{filename: "{tls['key']}"}}}}]
            validation_context: {{trusted_ca: {{filename: "{tls['ca']}"}}}}
      filters:{hcm(filter_any)}"""
        cfg = f"""admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: {self.admin}}}}}
static_resources:
  listeners:{listeners}
  clusters:{cluster("upstream", upstream_port)}{cluster("sidecar", upstream_port)}{cluster("collector", upstream_port)}
"""
        self.config = os.path.join(self.dir, "envoy.yaml")
        with open(self.config, "w") as f:
            f.write(cfg)
        self.log_path = os.path.join(self.dir, "envoy.log")
        self.module_dir = module_dir
        self.concurrency = concurrency
        self.proc = None

    def start(self, expect_ready=True, timeout=30):
        env = dict(os.environ, ENVOY_DYNAMIC_MODULES_SEARCH_PATH=self.module_dir)
        self.logf = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [envoy_bin(), "-c", self.config, "--concurrency", str(self.concurrency), "-l", "info",
             "--base-id", str(self.admin), "--disable-hot-restart"],
            stdout=self.logf, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            if self.ready():
                return True
            time.sleep(0.05)
        return False

    def ready(self):
        try:
            c = http.client.HTTPConnection("127.0.0.1", self.admin, timeout=2)
            c.request("GET", "/ready")
            return c.getresponse().status == 200
        except OSError:
            return False

    def stats(self, fmt=""):
        c = http.client.HTTPConnection("127.0.0.1", self.admin, timeout=5)
        c.request("GET", "/stats" + fmt)
        return c.getresponse().read().decode()

    def stat(self, name):
        for line in self.stats().splitlines():
            k, _, v = line.partition(": ")
            if k == name:
                return int(v)
        return None

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self):
        bench.stop_proc(self.proc)  # SIGTERM, then SIGKILL after 10 s
        if getattr(self, "logf", None):
            self.logf.close()


def call(port, path="/echo", body=b"", headers=None, method="POST", ctx=None, timeout=15):
    if ctx:
        c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=timeout)
    else:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    h = {"content-type": "application/json"}
    h.update(headers or {})
    c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, data


# ---------------------------------------------------------------------------------------------------------
# Checks


class Results:
    def __init__(self, verbose):
        self.rows = []
        self.verbose = verbose

    def check(self, name, ok, evidence):
        self.rows.append((name, bool(ok), evidence))
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {evidence}", flush=True)

    def info(self, name, text):
        print(f"INFO  {name}: {text}", flush=True)


def run(args):
    res = Results(args.verbose)
    workdir = tempfile.mkdtemp(prefix="tollgate-native-proto-")
    module = os.path.abspath(args.module)
    module_dir = os.path.dirname(module)
    if os.path.basename(module) != "libtollgate.so":
        module_dir = os.path.join(workdir, "modules")
        os.makedirs(module_dir)
        shutil.copy(module, os.path.join(module_dir, "libtollgate.so"))
    envoys, upstreams = [], []

    def new_upstream(**kw):
        u = Upstream(**kw)
        upstreams.append(u)
        return u

    def new_envoy(name, cfg, up, struct=False, **kw):
        e = Envoy(workdir, name, module_dir, (struct_value if struct else string_value)(cfg), up.port, **kw)
        envoys.append(e)
        return e

    try:
        # -- ABI symbols: every Envoy callback the module references is exported by this Envoy binary.
        undefined = set(subprocess.run(["nm", "-D", "--undefined-only", module], capture_output=True, text=True)
                        .stdout.split())
        needed = {s for s in undefined if s.startswith("envoy_dynamic_module_callback_")}
        exported = set(subprocess.run(["nm", "-D", "--defined-only", envoy_bin()], capture_output=True,
                                      text=True).stdout.split())
        missing = sorted(needed - exported)
        res.check("abi_symbols", needed and not missing,
                  f"{len(needed)} callbacks referenced by the module, all exported by Envoy" if not missing
                  else f"missing in Envoy: {missing}")

        os.makedirs(os.path.join(workdir, "pki"))
        ca = TestCA(os.path.join(workdir, "pki"))
        server = ca.issue(dns_names=["gateway.test"], ip_addresses=["127.0.0.1"])
        client = ca.issue(uri_sans=[CLIENT_SPIFFE], client=True, server=False, cn="client")
        tls = {"cert": server.cert, "key": server.key, "ca": ca.cert}
        cctx = ssl.create_default_context(cafile=ca.cert)
        cctx.load_cert_chain(client.cert, client.key)

        up = new_upstream()
        cfg = {"ops": ALL_OPS, "export_interval_ms": 300}
        main = new_envoy("main", cfg, up, tls=tls)
        started = main.start()
        log = main.log()
        res.check("load", started and "Dynamic module ABI version v0.2.0 matched." in log,
                  "found as libtollgate.so through ENVOY_DYNAMIC_MODULES_SEARCH_PATH; log: "
                  + next((line.split("] ", 2)[-1] for line in log.splitlines() if "ABI version" in line),
                         "no ABI line"))
        if not started:
            print(log[-3000:])
            return res

        # -- filter_config arrives as the StringValue's bytes, verbatim.
        st, _, data = call(main.port)
        echo = json.loads(data)
        sent = json.dumps(cfg)
        res.check("filter_config_string", st == 200 and echo["headers"].get("x-proto-config") == sent,
                  f"module received {echo['headers'].get('x-proto-config')!r}")

        # -- headers: add one, replace one, remove one; the upstream sees the result.
        st, _, data = call(main.port, headers={"x-proto-replace": "original", "x-proto-remove": "gone"})
        h = json.loads(data)["headers"]
        res.check("headers_add_replace_remove",
                  h.get("x-proto-added") == "1" and h.get("x-proto-replace") == "replaced"
                  and "x-proto-remove" not in h,
                  f"upstream saw x-proto-added={h.get('x-proto-added')!r}, "
                  f"x-proto-replace={h.get('x-proto-replace')!r}, x-proto-remove present={'x-proto-remove' in h}")

        # -- hold the request until its body is whole: headers return StopIteration, the body callbacks keep
        #    coming (StopIterationAndBuffer), then the whole body is read and the request continues.
        body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x" * 262144}]}).encode()
        pieces = [body[i:i + 32768] for i in range(0, len(body), 32768)]
        c = http.client.HTTPConnection("127.0.0.1", main.port, timeout=15)
        c.putrequest("POST", "/echo")
        c.putheader("content-type", "application/json")
        c.putheader("content-length", str(len(body)))
        c.endheaders()
        for p in pieces:
            time.sleep(0.05)
            c.send(p)
        t_last = time.monotonic()
        r = c.getresponse()
        echo = json.loads(r.read())
        c.close()
        report = dict(kv.split("=") for kv in echo["headers"].get("x-proto-body", "").split())
        ok = (r.status == 200 and echo["body_len"] == len(body) and echo["body_fnv"] == f"{fnv1a64(body):016x}"
              and report.get("fnv") == f"{fnv1a64(body):016x}" and int(report.get("callbacks", 0)) > 1
              and echo["t_start"] >= t_last - 0.001)
        res.check("hold_request_until_body_complete", ok,
                  f"{len(body)} bytes sent in {len(pieces)} pieces 50 ms apart; module: {report}; upstream got "
                  f"{echo['body_len']} bytes (digest {'matches' if echo['body_fnv'] == report.get('fnv') else 'differs'})"
                  f", its request began {echo['t_start'] - t_last:+.3f} s after the client's last piece")

        # -- the same with a small body that arrives with its headers (one read, the common LLM request).
        small = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).encode()
        st, _, data = call(main.port, body=small)
        e = json.loads(data)
        report = dict(kv.split("=") for kv in e["headers"].get("x-proto-body", "").split())
        res.check("hold_small_body", st == 200 and e["body"] == small.decode()
                  and report.get("fnv") == f"{fnv1a64(small):016x}",
                  f"{len(small)} bytes in one write; module: {report}; upstream body intact: {e['body'] == small.decode()}")

        # -- replace the whole buffered body; the module sets content-length to match.
        for label, hdr in (("rewrite_body", "yes"),):
            st, _, data = call(main.port, body=small, headers={"x-proto-rewrite": hdr})
            e = json.loads(data)
            want = json.dumps({"rewritten": True, "original_bytes": len(small)}, separators=(",", ":"))
            res.check(label, st == 200 and e["body"] == want and e["headers"].get("content-length") == str(len(want)),
                      f"upstream body {e['body']!r}, content-length {e['headers'].get('content-length')} "
                      f"(client sent {len(small)}); {e['headers'].get('x-proto-rewrite-result')}")
        try:
            st, _, data = call(main.port, body=small, headers={"x-proto-rewrite": "no-cl"}, timeout=8)
            e = json.loads(data) if st == 200 else {}
            res.info("rewrite_body_without_content_length",
                     f"status {st}; upstream saw content-length {e.get('headers', {}).get('content-length')} and "
                     f"body {e.get('body')!r}")
        except (OSError, http.client.HTTPException) as ex:
            res.info("rewrite_body_without_content_length", f"request failed: {ex!r}")

        # -- per-stream HTTP callout: the request waits for the answer, which the module copies into it.
        st, rh, data = call(main.port, headers={"x-proto-callout": "1"})
        h = json.loads(data)["headers"]
        res.check("http_callout_from_stream",
                  st == 200 and h.get("x-proto-callout-status") == "200" and h.get("x-proto-callout-body") == "callout-ok"
                  and h.get("x-proto-callout-tid") == rh.get("x-proto-tid"),
                  f"callout answered {h.get('x-proto-callout-status')} {h.get('x-proto-callout-body')!r} in "
                  f"on_http_filter_http_callout_done on thread {h.get('x-proto-callout-tid')} (the stream's worker: "
                  f"{rh.get('x-proto-tid')}); request resumed with continue_decoding")

        # -- per-stream scheduler: a module thread commits an event; it runs on the stream's worker.
        st, rh, data = call(main.port, headers={"x-proto-schedule": "1"})
        h = json.loads(data)["headers"]
        sched = h.get("x-proto-scheduled", "")
        res.check("scheduler_from_other_thread", st == 200 and sched == f"event=42 tid={h.get('x-proto-headers-tid')}",
                  f"committed from a module thread, on_http_filter_scheduled ran with {sched!r}; the headers hook "
                  f"ran on tid {h.get('x-proto-headers-tid')}")

        # -- local reply: 429 with headers and a JSON body; the upstream never sees a connection.
        up_deny = new_upstream()
        deny = new_envoy("deny", {"ops": "deny"}, up_deny)
        if deny.start():
            got = [call(deny.port, headers={"x-proto-deny": "1"}) for _ in range(5)]
            st, rh, data = got[0]
            try:
                err = json.loads(data)["error"]
            except (ValueError, KeyError):
                err = {}
            ok = (all(g[0] == 429 for g in got) and rh.get("content-type") == "application/json"
                  and rh.get("retry-after") == "30" and err.get("code") == "tollgate_budget"
                  and up_deny.connections == 0 and not up_deny.requests)
            res.check("local_reply_429", ok,
                      f"5 requests -> {[g[0] for g in got]}, content-type {rh.get('content-type')}, retry-after "
                      f"{rh.get('retry-after')}, body {data.decode()!r}; upstream accepted {up_deny.connections} "
                      f"connections")
        else:
            res.check("local_reply_429", False, "Envoy did not start: " + deny.log()[-500:])

        # -- response chunks read as they pass, without pausing: SSE events reach the client one by one.
        before = main.stat("dynamicmodulescustom.response_chunks") or 0
        c = http.client.HTTPConnection("127.0.0.1", main.port, timeout=15)
        c.request("POST", "/sse", body=b'{"stream":true}', headers={"content-type": "application/json"})
        t0 = time.monotonic()
        r = c.getresponse()
        arrivals, buf = [], b""
        while True:
            chunk = r.read1(65536)
            if not chunk:
                break
            buf += chunk
            for _ in range(chunk.count(b"data: ")):
                arrivals.append(time.monotonic() - t0)
        c.close()
        after = main.stat("dynamicmodulescustom.response_chunks") or 0
        spread = arrivals[-1] - arrivals[0] if arrivals else 0
        res.check("response_streaming_sse", len(arrivals) == 5 and spread >= 0.8 and after - before >= 5,
                  f"5 events sent 250 ms apart arrived at {[round(a, 2) for a in arrivals]} s; the module's "
                  f"response body hook ran {after - before} times for the stream")

        # -- counters: names and values in /stats and in the Prometheus output.
        n0 = main.stat("dynamicmodulescustom.requests_total") or 0
        for _ in range(7):
            call(main.port, headers={"x-tenant-id": "team-a"})
        n1 = main.stat("dynamicmodulescustom.requests_total")
        team = main.stat("dynamicmodulescustom.requests_by_tenant.tenant.team-a")
        prom = [line for line in main.stats("/prometheus").splitlines()
                if "requests_total" in line or "requests_by_tenant" in line]
        prom = [line for line in prom if not line.startswith("#")]
        res.check("counters", n1 == n0 + 7 and team == 7,
                  f"/stats: dynamicmodulescustom.requests_total {n0} -> {n1}, "
                  f"dynamicmodulescustom.requests_by_tenant.tenant.team-a = {team}; Prometheus: {prom}")

        # -- attributes: the downstream peer certificate's URI SAN over mTLS, and a plain connection's.
        st, _, data = call(main.tls_port, ctx=cctx, headers={"x-proto-attr-scan": "1"})
        h = json.loads(data)["headers"]
        st2, _, data2 = call(main.port)
        h2 = json.loads(data2)["headers"]
        ok = (st == 200 and h.get("x-proto-attr-uri-san-peer") == CLIENT_SPIFFE and h.get("x-proto-attr-mtls") == "true"
              and h.get("x-proto-attr-path") == "/echo" and h.get("x-proto-attr-method") == "POST"
              and h2.get("x-proto-attr-uri-san-peer") == "<none>")
        res.check("peer_certificate_uri_san", ok,
                  "mTLS: " + ", ".join(f"{k[13:]}={v!r}" for k, v in sorted(h.items()) if k.startswith("x-proto-attr-"))
                  + f"; plaintext: uri-san-peer={h2.get('x-proto-attr-uri-san-peer')!r} mtls={h2.get('x-proto-attr-mtls')!r}")
        scan = [line.split("tollgate-attr-scan ", 1)[1] for line in main.log().splitlines() if "tollgate-attr-scan" in line]
        if args.verbose:
            for line in scan:
                res.info("attribute_scan", line)

        # -- workers are threads of one process; a plain static counts across them.
        def one(i):
            return call(main.port, headers={"x-tenant-id": f"t{i % 3}"})
        with concurrent.futures.ThreadPoolExecutor(24) as ex:
            got = list(ex.map(one, range(96)))
        workers = {g[1].get("x-proto-worker") for g in got}
        pids = {g[1].get("x-proto-pid") for g in got}
        tids = {g[1].get("x-proto-tid") for g in got}
        tasks_ok = all(os.path.exists(f"/proc/{main.proc.pid}/task/{t}") for t in tids)
        final = call(main.port)[1].get("x-proto-requests")
        total = main.stat("dynamicmodulescustom.requests_total")
        res.check("workers_share_process_state",
                  workers == {"0", "1"} and pids == {str(main.proc.pid)} and len(tids) == 2 and tasks_ok
                  and final is not None and int(final) == total,
                  f"workers {sorted(workers)}, pids {sorted(pids)} (Envoy {main.proc.pid}), thread ids {sorted(tids)} "
                  f"(threads of Envoy: {tasks_ok}); the module's static counter says {final}, Envoy's counter {total}")

        # -- config-level timer + callout: a module thread ticks the config scheduler; each tick runs on the main
        #    thread and exports through an HTTP callout that outlives any request.
        time.sleep(1.2)
        with up.lock:
            exports = list(up.exports)
        seqs = [e[1].get("seq") for e in exports]
        tids_main = {e[1].get("tid") for e in exports}
        ok_count = main.stat("dynamicmodulescustom.exports_ok") or 0
        # Each listener's HTTP connection manager builds its own filter config (config_new runs once per
        # listener here), so each runs its own timer: every seq is exported once per config.
        per_seq = {q: seqs.count(q) for q in seqs}
        configs = max(per_seq.values()) if per_seq else 0
        res.check("config_timer_and_callout",
                  len(exports) >= 3 and seqs == sorted(seqs) and tids_main == {main.proc.pid} and ok_count >= 2
                  and exports[-1][1].get("requests", 0) > 0,
                  f"{len(exports)} exports over {time.monotonic() - exports[0][0]:.1f} s (interval 0.3 s), each seq "
                  f"exported {configs}x (one timer per filter config: 2 listeners = 2 configs), all on thread "
                  f"{sorted(tids_main)} = Envoy's main thread (pid {main.proc.pid}); last export counted "
                  f"{exports[-1][1].get('requests') if exports else None} requests; exports_ok counter {ok_count}")

        # -- a panic inside a guarded hook: caught, logged, counted; the request fails open; Envoy stays up.
        st, _, _ = call(main.port, headers={"x-proto-panic": "guarded"})
        time.sleep(0.1)
        call(main.port)  # flushes the panic count into the counter from stream_complete
        alive = main.ready() and main.proc.poll() is None
        caught = "panic caught in on_http_filter_request_headers" in main.log()
        panics = main.stat("dynamicmodulescustom.panics")
        res.check("panic_guarded", st == 200 and alive and caught and (panics or 0) >= 1,
                  f"request answered {st} (fail open), Envoy ready={alive}, logged={caught}, panics counter={panics}")

        # -- a panic that unwinds out of an extern "C" hook: Rust aborts the process, and Envoy with it.
        up_p = new_upstream()
        pe = new_envoy("panic", {"ops": "panic"}, up_p)
        if pe.start():
            try:
                call(pe.port, headers={"x-proto-panic": "unguarded"}, timeout=5)
                outcome = "answered"
            except (OSError, http.client.HTTPException) as ex:
                outcome = type(ex).__name__
            try:
                rc = pe.proc.wait(10)
            except subprocess.TimeoutExpired:
                rc = None
            plog = pe.log()
            line = next((x for x in plog.splitlines() if "cannot unwind" in x), "")
            crit = next((x.split("] ", 2)[-1] for x in plog.splitlines() if "Caught Aborted" in x), "")
            line = f"{line.strip()} / {crit.strip()}"
            res.check("panic_unguarded_aborts_envoy", rc is not None and rc < 0,
                      f"client: {outcome}; Envoy exited with {('signal ' + signal.Signals(-rc).name) if rc and rc < 0 else rc}; "
                      f"log: {line[:200]!r}")
        else:
            res.check("panic_unguarded_aborts_envoy", False, "Envoy did not start")

        # -- budgets across workers: N concurrent requests on 2 workers, exactly `budget` pass.
        up_b = new_upstream()
        be = new_envoy("budget", {"ops": "budget,threads", "budget": 50}, up_b)
        if be.start():
            with concurrent.futures.ThreadPoolExecutor(50) as ex:
                got = list(ex.map(lambda i: call(be.port), range(200)))
            codes = [g[0] for g in got]
            workers = {g[1].get("x-proto-worker") for g in got if g[0] == 200}
            res.check("budget_no_overshoot_two_workers", codes.count(200) == 50 and codes.count(429) == 150
                      and len(up_b.requests) == 50,
                      f"200 concurrent requests: {codes.count(200)} passed, {codes.count(429)} refused; upstream saw "
                      f"{len(up_b.requests)}; passing requests ran on workers {sorted(workers)}")
        else:
            res.check("budget_no_overshoot_two_workers", False, "Envoy did not start")

        # -- filter_config as a google.protobuf.Struct: the module receives it rendered as JSON.
        up_s = new_upstream()
        se = new_envoy("struct", {"ops": "echo_config", "budget": 3}, up_s, struct=True)
        if se.start():
            got = json.loads(call(se.port)[2])["headers"].get("x-proto-config", "")
            try:
                parsed = json.loads(got)
            except ValueError:
                parsed = None
            res.check("filter_config_struct_as_json", parsed == {"ops": "echo_config", "budget": 3},
                      f"module received {got!r}")
        else:
            res.check("filter_config_struct_as_json", False, "Envoy did not start: " + se.log()[-400:])

        # -- an invalid filter_config: the module returns null from config_new and Envoy refuses the config.
        up_x = new_upstream()
        xe = new_envoy("invalid", {"ops": "headers,frobnicate"}, up_x)
        started = xe.start(timeout=15)
        xlog = xe.log()
        ours = next((x.split("] ", 2)[-1] for x in xlog.splitlines() if "invalid configuration" in x), "")
        envoys_err = next((x.split("] ", 2)[-1] for x in xlog.splitlines()
                           if "Failed to initialize dynamic module" in x or "Failed to create filter config" in x), "")
        # -- where config_new ran, and whether Envoy destroys the configs when it shuts down (a module that
        #    buffers telemetry would flush there).
        news = [x.split("config_new ", 1)[1] for x in main.log().splitlines() if "tollgate: config_new" in x]
        main.stop()
        rc = main.proc.returncode
        destroys = [x.split("config_destroy ", 1)[1] for x in main.log().splitlines() if "tollgate: config_destroy" in x]
        on_main = all(x == f"pid={main.proc.pid} tid={main.proc.pid}" for x in news + destroys)
        res.check("config_lifecycle", len(news) == 2 and len(destroys) == 2 and on_main and rc == 0,
                  f"config_new ran {len(news)} times ({', '.join(news)}; Envoy's pid {main.proc.pid}); after SIGTERM "
                 f"Envoy exited {rc} and config_destroy ran {len(destroys)} times ({', '.join(destroys)})")
        res.check("invalid_config_rejected", not started and xe.proc.poll() not in (None, 0) and "frobnicate" in ours,
                  f"Envoy exited {xe.proc.poll()}; module: {ours.strip()!r}; Envoy: {envoys_err.strip()[:200]!r}")
    finally:
        for e in envoys:
            e.stop()
        for u in upstreams:
            u.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"kept {workdir}")
    return res


def build_module():
    """`cargo build --release` of the prototype into target/native-proto (stable Rust, no dependencies)."""
    subprocess.run(["cargo", "build", "--release", "--manifest-path", os.path.join(HERE, "Cargo.toml")],
                   check=True, env=dict(os.environ, CARGO_TARGET_DIR=os.path.join(ROOT, "target/native-proto")))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--module", default=os.path.join(ROOT, "target/native-proto/release/libtollgate.so"))
    ap.add_argument("-v", "--verbose", action="store_true", help="also print the attribute scan")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (configs, logs)")
    args = ap.parse_args()
    if not os.path.exists(args.module):
        build_module()
    res = run(args)
    failed = [n for n, ok, _ in res.rows if not ok]
    print(f"{len(res.rows) - len(failed)} passed, {len(failed)} failed")
    sys.exit(1 if failed or not res.rows else 0)


if __name__ == "__main__":
    main()
