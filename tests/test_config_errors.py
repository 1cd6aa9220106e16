"""Invalid plugin configuration: every invalid key or value produces a message naming the key and
the reason, and real Envoy rejects the configuration instead of running half-configured. One Envoy takes its
listener from a file (LDS); each case replaces the plugin JSON, and the update must be rejected with the
message in Envoy's log while the previous, valid configuration keeps serving."""

import os
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "testenv"))

import gateway  # noqa: E402

# Every test runs against both builds (conftest.py); loading the configuration is the native host's own.
pytestmark = [pytest.mark.usefixtures("build"), pytest.mark.host_only]


def with_(path, value, base=None):
    """The default plugin config with `path` (dotted; `routes.0.api`) set to `value`."""
    cfg = gateway.default_plugin_config() if base is None else base
    keys = path.split(".")
    node = cfg
    for k in keys[:-1]:
        node = node[int(k)] if isinstance(node, list) else node.setdefault(k, {})
    last = keys[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return cfg


ROUTE = {"host": "llm.internal", "provider": "vllm"}
# (plugin config, the key the message must name, a fragment of the reason)
CASES = [
    (with_("service_name", ""), "service_name", "must not be empty"),
    (with_("service_name", 5), "service_name", "invalid type"),
    (with_("resource", {"a": 1}), "resource.a", "invalid type"),
    ({"otlp": {}}, "otlp", "missing field `cluster`"),
    (with_("otlp.cluster", ""), "otlp.cluster", "must name an Envoy cluster"),
    (with_("otlp.timeout_ms", 0), "otlp.timeout_ms", "between 1 and 60000"),
    (with_("otlp.timeout_ms", 70000), "otlp.timeout_ms", "between 1 and 60000"),
    (with_("otlp.timeout_ms", "soon"), "otlp.timeout_ms", "invalid type"),
    (with_("otlp.flush_interval_ms", 50), "otlp.flush_interval_ms", "between 100 and 60000"),
    (with_("otlp.max_batch", 0), "otlp.max_batch", "between 1 and"),
    (with_("otlp.max_queue", 2, with_("otlp.max_batch", 10)), "otlp.max_queue", "at least otlp.max_batch"),
    (with_("otlp.traces_path", "v1/traces"), "otlp.traces_path", "must start with '/'"),
    (with_("otlp.metrics_path", "metrics"), "otlp.metrics_path", "must start with '/'"),
    (with_("otlp.headers", {":authority": "x"}), "otlp.headers.:authority", "invalid header name"),
    (with_("otlp.bogus", 1), "otlp.bogus", "unknown field `bogus`"),
    (with_("routes", [{"provider": "p"}]), "routes[0]", "missing field `host`"),
    (with_("routes", [{**ROUTE, "host": "http://x/"}]), "routes[0].host", "without scheme, path or port"),
    (with_("routes", [{**ROUTE, "path_prefix": "v1"}]), "routes[0].path_prefix", "must start with '/'"),
    (with_("routes", [ROUTE, {**ROUTE, "api": "nope"}]), "routes[1].api", "unknown API `nope`"),
    (with_("routes", [{**ROUTE, "provider": ""}]), "routes[0].provider", "must not be empty"),
    (with_("routes", [{**ROUTE, "weight": 3}]), "routes[0].weight", "unknown field `weight`"),
    (with_("routes", {"host": "h"}), "routes", "invalid type"),
    (with_("include_usage", "yes"), "include_usage", "expected a boolean"),
    (with_("capture_content", 1), "capture_content", "expected a boolean"),
    (with_("conversation_id_header", "bad header"), "conversation_id_header", "must be a header name"),
    (with_("semconv", "newest"), "semconv", "unknown variant `newest`"),
    (with_("emit_gen_ai_system", "true"), "emit_gen_ai_system", "expected a boolean"),
    (with_("sampling_ratio", 1.5), "sampling_ratio", "between 0.0 and 1.0"),
    (with_("sampling_ratio", -0.1), "sampling_ratio", "between 0.0 and 1.0"),
    (with_("max_request_body", 0), "max_request_body", "between 1 and"),
    (with_("max_request_body", 1 << 40), "max_request_body", "between 1 and"),
    (with_("max_response_body", -1), "max_response_body", "expected u64"),
    (with_("max_event", 0), "max_event", "between 1 and"),
    (with_("typo_key", True), "", "unknown field `typo_key`"),
    ("{not json", "", "invalid JSON: unexpected `n` at line 1 column 2"),
    ('{"service_name": "a"} trailing', "",
     "invalid JSON after the configuration object: trailing characters at line 1 column 23"),
    ('["tollgate"]', "", "must be a JSON object"),
]


def message(key, reason):
    return f"invalid tollgate configuration: {key}: " if key else "invalid tollgate configuration: "


@pytest.fixture(scope="module")
def lds(build):
    t = gateway.lds_topology(gateway.default_plugin_config(), build=build).start()
    yield t
    t.stop()


def counter(t, name):
    return t.envoy.stats(name).get(name, 0)


@pytest.mark.parametrize("cfg,key,reason", CASES, ids=[f"{i:02d}-{c[1] or 'root'}" for i, c in enumerate(CASES)])
def test_invalid_config_is_named_and_rejected(lds, cfg, key, reason):
    rejected = counter(lds, "listener_manager.lds.update_rejected")
    log_before = len(lds.envoy.log())
    gateway.write_lds(lds, cfg)
    deadline = time.time() + 20
    while time.time() < deadline and counter(lds, "listener_manager.lds.update_rejected") == rejected:
        time.sleep(0.05)
    assert counter(lds, "listener_manager.lds.update_rejected") == rejected + 1, "Envoy must reject the update"
    new_log = lds.envoy.log()[log_before:]
    lines = [ln for ln in new_log.splitlines() if "invalid tollgate configuration" in ln]
    assert lines, new_log[-3000:]
    want = message(key, reason)
    assert any(want in ln and reason in ln for ln in lines), f"want {want!r} … {reason!r} in:\n" + "\n".join(lines)
    # The running (valid) configuration keeps serving LLM calls.
    status, _, _ = lds.call("/v1/chat/completions", {"model": "m"}, {"host": "api.openai.com"})
    assert status == 200


def test_valid_update_after_rejections_is_accepted(lds):
    ok = counter(lds, "listener_manager.lds.update_success")
    cfg = gateway.default_plugin_config()
    cfg["service_name"] = "after-errors"
    gateway.write_lds(lds, cfg)
    deadline = time.time() + 20
    while time.time() < deadline and counter(lds, "listener_manager.lds.update_success") == ok:
        time.sleep(0.05)
    assert counter(lds, "listener_manager.lds.update_success") == ok + 1


def test_invalid_bootstrap_config_fails_startup(topology):
    with pytest.raises(RuntimeError) as err:
        topology({"otlp": {"cluster": "otel_collector"}, "max_event": 0})
    assert "invalid tollgate configuration: max_event: must be between 1 and" in str(err.value)
