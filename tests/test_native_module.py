"""The native build's host (libtollgate.so, an Envoy dynamic module) through the real Envoy 1.40 binary: the
loading contract, the ABI it links against, its stats and their Prometheus names next to the Wasm build's,
OTLP export through config callouts, the panic guards, the process-wide budget store and gRPC to the
rate-limit service over streamed callouts.

The per-request pieces are driven through the test-only probes (native/src/probes.rs), built into
target/native-test/libtollgate.so by `make native-test-module` and never into `make build`'s libtollgate.so:
a request header makes the module panic in a given hook, export a span, reserve from a budget or call the
rate-limit service, with the core's own code (span builder, metrics aggregator, budget ledger, rate-limit
protocol). The whole e2e suite runs against the native build as well once the exchange core is wired in
(tests/conftest.py)."""

import concurrent.futures
import os
import re
import shutil
import subprocess
import sys
import time
import uuid

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "testenv"))

import gateway  # noqa: E402
import mock_provider  # noqa: E402
from gateway import Background, Topology, default_plugin_config, envoy_bin, get_json, send_json, wait_for  # noqa: E402
from ratelimit_env import RateLimitService, Redis, cluster_yaml, redis_available  # noqa: E402

PROBE_MODULE = os.path.join(ROOT, "target", "native-test", "libtollgate.so")
SHIPPED_MODULE = os.path.join(ROOT, "libtollgate.so")
CHAT = "/v1/chat/completions"
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 7}
OPENAI = {"host": "api.openai.com"}


def need(path, how):
    if not os.path.exists(path):
        pytest.skip(f"{os.path.relpath(path, ROOT)} not built ({how})")


@pytest.fixture
def native(monkeypatch):
    """A factory for gateways running the probe module."""
    need(PROBE_MODULE, "make native-test-module")
    monkeypatch.setenv("TOLLGATE_NATIVE", PROBE_MODULE)
    made = []

    def make(plugin_config=None, **kw):
        t = Topology(plugin_config, build="native", **kw).start()
        made.append(t)
        return t

    yield make
    for t in made:
        t.stop()


def probe(t, what, headers=None, body=None, **kw):
    h = dict(OPENAI, **{"x-tollgate-probe": what})
    h.update(headers or {})
    return t.call(CHAT, BODY if body is None else body, h, **kw)


def nm(path, *flags):
    out = subprocess.run(["nm", "-D", *flags, path], capture_output=True, text=True, check=True).stdout
    return {ln.split()[-1] for ln in out.splitlines() if ln.strip()}


# --- the ABI and the loading contract ---------------------------------------------------------------------


def test_every_declared_callback_is_exported_by_this_envoy():
    """Envoy 1.40 loads a module with RTLD_NOW: a callback it lacks fails the load. Every callback declared in
    native/src/abi.rs, and every one the built module references, must be an export of the binary here."""
    if shutil.which("nm") is None:
        pytest.skip("needs nm (binutils)")
    need(SHIPPED_MODULE, "make build")
    exported = nm(envoy_bin(), "--defined-only")
    with open(os.path.join(ROOT, "native", "src", "abi.rs"), encoding="utf-8") as f:
        declared = set(re.findall(r"pub fn (envoy_dynamic_module_callback_\w+)\(", f.read()))
    assert len(declared) > 30
    assert declared - exported == set()
    referenced = {s for s in nm(SHIPPED_MODULE, "--undefined-only") if s.startswith("envoy_")}
    assert referenced and referenced <= exported
    hooks = {s for s in nm(SHIPPED_MODULE, "--defined-only") if s.startswith("envoy_dynamic_module_on_")}
    assert "envoy_dynamic_module_on_program_init" in hooks
    assert "envoy_dynamic_module_on_http_filter_config_scheduled" in hooks
    assert len(hooks) == 28, sorted(hooks)  # the 21 Envoy requires and 7 optional ones (config events)


def test_loads_by_name_from_the_search_path_with_the_plugin_json(monkeypatch):
    """The shipped module, as users load it: `dynamic_module_config: {name: tollgate}`, the file
    libtollgate.so in ENVOY_DYNAMIC_MODULES_SEARCH_PATH, `filter_name: tollgate`, the plugin JSON as a
    StringValue. Envoy accepts its ABI version and traffic passes."""
    need(SHIPPED_MODULE, "make build")
    monkeypatch.setenv("TOLLGATE_NATIVE", SHIPPED_MODULE)
    t = Topology(build="native").start()
    try:
        assert "Dynamic module ABI version v0.2.0 matched." in t.envoy.log()
        status, _, body = t.call(CHAT, BODY, dict(OPENAI, **{"x-mock-fixture": "openai/chat-json"}))
        assert status == 200 and body == mock_provider.fixture_body(mock_provider.load_fixture("openai/chat-json"))
        assert "x-tollgate-probe" not in t.envoy.log(), "the shipped module has no probes"
        status, _, _ = probe(t, "panic:request_headers")
        assert status == 200
        assert "panic" not in t.envoy.log().lower()
    finally:
        t.stop()


def test_a_filter_name_other_than_tollgate_is_refused(native):
    t = Topology(build="native")
    with open(t.envoy.config_path, encoding="utf-8") as f:
        cfg = f.read()
    with open(t.envoy.config_path, "w", encoding="utf-8") as f:
        f.write(cfg.replace("filter_name: tollgate", "filter_name: tollbooth"))
    with pytest.raises(RuntimeError) as err:
        t.start()
    t.stop()
    assert 'invalid tollgate configuration: filter_name: unknown filter "tollbooth"' in str(err.value)


# --- stats ------------------------------------------------------------------------------------------------


def prometheus_tollgate(t):
    _, body = t.envoy.admin("/stats/prometheus")
    return {re.split(r"[{ ]", ln, maxsplit=1)[0] for ln in body.splitlines()
            if ln.startswith("tollgate_") or ln.startswith("envoy_dynamicmodulescustom")}


def test_same_stat_names_as_the_wasm_build(native):
    """/stats: the Wasm build's names under `dynamicmodulescustom.` instead of `wasmcustom.`; Prometheus: the
    Wasm build's very names (`tollgate_calls`), with the runtime flag the shipped configs set."""
    need(gateway.wasm_path(), "make build")
    n = native()
    w = Topology(build="wasm").start()
    try:
        names = {build: set(t.envoy.tollgate_stats()) for build, t in (("native", n), ("wasm", w))}
        assert names["wasm"] <= names["native"], names["wasm"] - names["native"]
        assert names["native"] - names["wasm"] == {"tollgate.native.panics", "tollgate.budget_rls_debit_errors"}
        prom = {build: prometheus_tollgate(t) for build, t in (("native", n), ("wasm", w))}
        assert prom["wasm"] <= prom["native"], prom["wasm"] - prom["native"]
        assert not any(p.startswith("envoy_dynamicmodulescustom") for p in prom["native"])
        assert {"tollgate_calls", "tollgate_queue_depth", "tollgate_spans_dropped_queue_full"} <= prom["native"]
    finally:
        w.stop()


def test_without_the_runtime_flag_prometheus_names_carry_the_namespace(native):
    t = Topology(build="native")
    with open(t.envoy.config_path, encoding="utf-8") as f:
        rendered = f.read()
    with open(t.envoy.config_path, "w", encoding="utf-8") as f:
        f.write(rendered.replace(
            "envoy.reloadable_features.dynamic_modules_strip_custom_stat_prefix: true",
            "envoy.reloadable_features.dynamic_modules_strip_custom_stat_prefix: false"))
    t.start()
    try:
        prom = prometheus_tollgate(t)
        assert "envoy_dynamicmodulescustom_tollgate_calls" in prom and "tollgate_calls" not in prom
    finally:
        t.stop()


# --- export -----------------------------------------------------------------------------------------------


def test_spans_and_metrics_leave_through_config_callouts(native):
    """Each worker's lane exports its own spans and metric deltas, under its own service.instance.id, from
    the main thread; Envoy's stats count them."""
    cfg = default_plugin_config()
    cfg["otlp"]["metrics"] = True
    cfg["otlp"]["metrics_interval_ms"] = 300
    t = native(cfg)
    n = 60
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda i: probe(t, f"span:model-{i % 3}"), range(n)))
    assert all(a[0] == 200 for a in answers)
    workers = {a[1].get("x-tollgate-probe-worker") for a in answers}
    spans = t.wait_spans(n, timeout=20)
    assert len(spans) == n
    assert {s["name"] for s in spans} == {"chat model-0", "chat model-1", "chat model-2"}
    instances = {s["resource"]["service.instance.id"] for s in spans}
    assert 1 <= len(instances) <= 2 and len(instances) == len(workers), (instances, workers)
    wait_for(lambda: t.envoy.stat("tollgate.spans_exported") == n, "spans_exported")
    assert t.envoy.stat("tollgate.calls") == n
    assert t.envoy.stat("tollgate.tokens_input") == 3 * n
    assert t.envoy.stat("tollgate.spans_enqueued") == n
    assert t.envoy.stat("tollgate.queue_depth") == 0

    def token_sum():
        pts = [p for p in get_json(t.collector.port, "/__points") if p["name"] == "gen_ai.client.token.usage"]
        return sum(p.get("sum", 0) for p in pts) if pts else None
    wait_for(lambda: token_sum() == 5 * n, "the token usage histogram sums to the calls' tokens")
    paths = {r["path"] for r in get_json(t.collector.port, "/__requests")}
    assert paths == {"/v1/traces", "/v1/metrics"}


def test_collector_failures_are_retried_then_counted(native):
    """503 + Retry-After: the batch is retried after the hinted delay, then exported; a 400: dropped and
    counted. Traffic never waits."""
    t = native()
    send_json(t.collector.port, "/__mode", {"status": 503, "retry_after": 1, "delay_ms": 0})
    assert probe(t, "span:retried")[0] == 200
    wait_for(lambda: t.envoy.stat("tollgate.export_retries") >= 1, "a retry")
    send_json(t.collector.port, "/__mode", {"status": 200, "retry_after": None, "delay_ms": 0})
    wait_for(lambda: t.envoy.stat("tollgate.spans_exported") == 1, "exported after the retry", timeout=40)
    send_json(t.collector.port, "/__mode", {"status": 400, "retry_after": None, "delay_ms": 0})
    assert probe(t, "span:rejected")[0] == 200
    wait_for(lambda: t.envoy.stat("tollgate.spans_dropped_failed") == 1, "dropped on a 400")


def test_an_unknown_collector_cluster_never_touches_traffic(native):
    cfg = default_plugin_config(collector_cluster="no_such_cluster")
    t = native(cfg)
    for _ in range(3):
        assert probe(t, "span:lost")[0] == 200
    wait_for(lambda: "OTLP export dispatch to cluster 'no_such_cluster' failed" in t.envoy.log(), "logged")
    assert t.envoy.stat("tollgate.spans_exported") == 0


# --- no crash takes Envoy down ------------------------------------------------------------------------------


@pytest.mark.parametrize("hook", ["request_headers", "request_body", "response_headers", "response_body",
                                  "stream_complete"])
def test_a_panic_in_any_hook_fails_open_and_is_counted(native, hook):
    t = native()
    fx = mock_provider.load_fixture("openai/chat-json")
    before = t.envoy.stat("tollgate.native.panics")
    status, _, body = probe(t, f"panic:{hook}", headers={"x-mock-fixture": "openai/chat-json"},
                            body=fx["request"])
    assert status == 200 and body == mock_provider.fixture_body(fx), "the request went on untouched"
    wait_for(lambda: t.envoy.stat("tollgate.native.panics") == before + 1, "the panic counted")
    line = [ln for ln in t.envoy.log().splitlines() if "tollgate: panic in" in ln]
    assert line and f"on_http_filter_{hook}" in line[-1] and "deliberate panic" in line[-1], line
    assert "[error][dynamic_modules]" in line[-1]
    # Envoy is alive and the next requests are served, probes and all.
    assert t.envoy.proc.poll() is None and t.envoy.admin("/ready")[0] == 200
    assert probe(t, "span:after")[0] == 200
    t.wait_spans(1)


def test_every_hook_runs_under_a_guard():
    """A panic unwinding out of an unguarded hook aborts Envoy (docs/dynamic-modules-abi.md §8, checked by
    native-proto/run_checks.py). Every function the module exports to Envoy runs its body under `guard` or
    `on_stream`; the tests above prove those catch."""
    with open(os.path.join(ROOT, "native", "src", "lib.rs"), encoding="utf-8") as f:
        src = f.read()
    hooks = re.findall(r'pub extern "C" fn (envoy_dynamic_module_on_\w+)\(', src)
    assert len(hooks) == 28
    for h in hooks:
        body = src.split(f"fn {h}(", 1)[1].split("\n}\n", 1)[0]
        assert re.search(r"\b(guard|on_stream)\(", body), f"{h} runs unguarded"


# --- the budget store ------------------------------------------------------------------------------------


def test_budget_never_overshoots_with_200_concurrent_calls_on_2_workers(native):
    """The core's ledger over the module's process-wide store: 200 concurrent requests, a 50-token budget,
    1 token each, two workers: exactly 50 reach the provider."""
    t = native(concurrency=2)
    tenant = "t-" + uuid.uuid4().hex[:10]
    send_json(t.provider.port, "/__requests", None, method="DELETE")
    with concurrent.futures.ThreadPoolExecutor(200) as pool:
        answers = list(pool.map(lambda _: probe(t, f"budget:50:{tenant}", timeout=60), range(200)))
    statuses = [a[0] for a in answers]
    assert statuses.count(200) == 50 and statuses.count(429) == 150, statuses
    assert {a[1].get("x-tollgate-probe-worker") for a in answers} == {"0", "1"}, "both workers served"
    assert len(t.provider_requests()) == 50, "refused requests never reached the provider"
    wait_for(lambda: t.envoy.stat("tollgate.budget_allowed") == 50
             and t.envoy.stat("tollgate.budget_denied") == 150, "counted")


# --- gRPC to the rate-limit service -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rls():
    if not redis_available() or shutil.which("cargo") is None:
        pytest.skip("needs redis-server (scripts/setup.sh) and cargo")
    redis = Redis().start()
    service = RateLimitService(redis).start()
    yield redis, service
    service.stop()
    redis.stop()


def rls_config(port, failure_mode="closed", timeout_ms=500):
    cfg = default_plugin_config()
    cfg["tenant"] = {"header": "x-tenant-id"}
    cfg["budgets"] = {"backend": "rls", "rules": [{"tenant": "*", "window": "30d", "tokens": 100}],
                      "rls": {"cluster": "ratelimit", "authority": "ratelimit", "domain": "tollgate-native",
                              "timeout_ms": timeout_ms, "failure_mode": failure_mode}}
    return cfg


def redis_tokens(redis, tenant):
    keys = [k for k in (redis.cli("--scan", "--pattern", f"tollgate-rls:*{tenant}*") or "").split() if k]
    return sum(int(redis.cli("GET", k) or 0) for k in keys)


def test_rate_limit_service_over_grpc_on_streamed_callouts(native, rls):
    """Admission (a unary ShouldRateLimit call from the request, which waits for it) and debits (sent from
    the main thread after the response) reach the real service over HTTP/2, and its answers are read: OK
    under the limit, OVER_LIMIT past it."""
    redis, service = rls
    t = native(rls_config(service.port), extra_clusters=cluster_yaml(service.port))
    tenant = "t-" + uuid.uuid4().hex[:10]
    # Each admitted call takes 1 token at admission and 4 more by its debit: 5 per call, 10 allowed.
    for used in (5, 10):
        status, headers, _ = probe(t, f"rls:10:{tenant}")
        assert (status, headers.get("x-tollgate-probe-rls")) == (200, "status=0 admit")
        wait_for(lambda: redis_tokens(redis, tenant) == used, f"{used} tokens counted by the service")
    status, _, body = probe(t, f"rls:10:{tenant}")
    assert status == 429 and body == b"rls status=0 deny", body
    wait_for(lambda: t.envoy.stat("tollgate.budget_rls_debits") == 2, "two debits sent")
    wait_for(lambda: t.envoy.stat("tollgate.budget_rls_checks") == 3, "three checks")
    assert t.envoy.stat("tollgate.budget_rls_denied") == 1
    assert t.envoy.stat("tollgate.budget_rls_debit_errors") == 0
    assert len(t.provider_requests()) == 2, "the denied call never reached the provider"


def test_rate_limit_service_down_follows_the_failure_mode(native, rls):
    dead = gateway.free_port()
    closed = native(rls_config(dead, "closed"), extra_clusters=cluster_yaml(dead))
    status, _, body = probe(closed, "rls:10:t-down")
    assert (status, body) == (429, b"rls status=14 fail_closed")
    opened = native(rls_config(dead, "open"), extra_clusters=cluster_yaml(dead))
    status, headers, _ = probe(opened, "rls:10:t-down")
    assert (status, headers.get("x-tollgate-probe-rls")) == (200, "status=14 fail_open")
    wait_for(lambda: opened.envoy.stat("tollgate.budget_rls_failed_open") == 1, "counted")
    # A debit the service cannot take is counted as an error (the Wasm build cannot see those).
    wait_for(lambda: opened.envoy.stat("tollgate.budget_rls_debit_errors") == 1, "debit error counted")


def test_a_panic_while_the_request_waits_for_the_service_resumes_it(native, rls):
    """The request is paused for the admission call; the answer's hook panics: the guard resumes the request
    (fail open), so it reaches the provider instead of hanging."""
    redis, service = rls
    t = native(rls_config(service.port), extra_clusters=cluster_yaml(service.port))
    status, _, _ = probe(t, "rls:10:t-panic,panic:grpc", timeout=10)
    assert status == 200
    assert len(t.provider_requests()) == 1
    wait_for(lambda: t.envoy.stat("tollgate.native.panics") == 1, "counted")
    assert "on_http_filter_http_stream_complete" in t.envoy.log()
