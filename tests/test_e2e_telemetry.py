"""OpenTelemetry export through real Envoy, decoded with the official protobuf definitions: span attribute
completeness and types, trace context, OTLP metrics whose counts and sums match the calls made, the
`latest` semconv set, gzip export, partial success, and Envoy-native stats at /stats/prometheus."""

import json
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "testenv"))

import mock_provider  # noqa: E402
from gateway import default_plugin_config, get_json, send_json, wait_for  # noqa: E402

import pytest  # noqa: E402

pytestmark = pytest.mark.usefixtures("build")  # every test runs against both builds (conftest.py)

TOKEN_BUCKETS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864]
DURATION_BUCKETS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92]
DELTA = 1  # AGGREGATION_TEMPORALITY_DELTA
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def config(**otlp):
    cfg = default_plugin_config()
    cfg["otlp"].update({"metrics_interval_ms": 300}, **otlp)
    cfg["resource"] = {"deployment.environment.name": "e2e"}
    return cfg


def points(t, name=None):
    pts = get_json(t.collector.port, "/__points")
    return [p for p in pts if name is None or p["name"] == name]


def hist_count(t, name, **attrs):
    return sum(p["count"] for p in points(t, name) if all(p["attributes"].get(k) == v for k, v in attrs.items()))


def json_call(t, extra_headers=None):
    fx = mock_provider.load_fixture("openai/chat-json")
    req = dict(fx["request"], stop=["\n\n", "END"], seed=7, frequency_penalty=0.5, presence_penalty=-0.25)
    headers = {"host": fx["host"], "x-mock-fixture": "openai/chat-json"}
    headers.update(extra_headers or {})
    status, _, body = t.call(fx["path"], req, headers)
    assert (status, body) == (200, mock_provider.fixture_body(fx)), "the client gets the provider's answer"


def stream_call(t):
    fx = mock_provider.load_fixture("openai/chat-stream")
    status, _, body = t.call(fx["path"], fx["request"], {
        "host": fx["host"], "x-mock-fixture": "openai/chat-stream", "x-mock-chunk": "40", "x-mock-delay-ms": "5"})
    assert (status, body) == (200, mock_provider.fixture_body(fx))


def test_span_attributes_types_and_trace_context(topology):
    t = topology(config())
    json_call(t, {"traceparent": TP, "tracestate": "vendor=abc,other=1", "x-conversation-id": "c-1"})
    stream_call(t)
    spans = t.wait_spans(2)
    by_stream = {bool(s["attributes"].get("gen_ai.request.stream")): s for s in spans}
    j, s = by_stream[False], by_stream[True]

    a = j["attributes"]
    assert a["gen_ai.request.stop_sequences"] == ["\n\n", "END"], "string array"
    assert a["gen_ai.response.finish_reasons"] == ["stop"], "string array"
    for k in ("gen_ai.request.temperature", "gen_ai.request.top_p", "gen_ai.request.frequency_penalty",
              "gen_ai.request.presence_penalty"):
        assert isinstance(a[k], float), k
    assert a["gen_ai.request.presence_penalty"] == -0.25
    for k in ("gen_ai.request.max_tokens", "gen_ai.request.seed", "gen_ai.usage.input_tokens",
              "gen_ai.usage.output_tokens", "server.port", "http.response.status_code"):
        assert isinstance(a[k], int) and not isinstance(a[k], bool), k
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (19, 10)
    assert a["gen_ai.request.seed"] == 7
    assert a["gen_ai.conversation.id"] == "c-1"
    assert a["openai.api.type"] == "chat_completions"
    assert (a["server.address"], a["server.port"]) == ("api.openai.com", 443)
    assert "gen_ai.request.stream" not in a and "gen_ai.response.time_to_first_chunk" not in a
    assert j["status"]["code"] == 0, "UNSET on success"

    b = s["attributes"]
    assert b["gen_ai.request.stream"] is True
    assert isinstance(b["gen_ai.response.time_to_first_chunk"], float)
    assert 0 < b["gen_ai.response.time_to_first_chunk"] <= (s["end"] - s["start"]) / 1e9
    assert (b["gen_ai.usage.input_tokens"], b["gen_ai.usage.output_tokens"]) == (19, 10)

    # Trace context: continued, tracestate passed on; the new trace for the call without traceparent.
    assert (j["trace_id"], j["parent_span_id"]) == ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
    assert j["trace_state"] == "vendor=abc,other=1"
    assert s["trace_id"] != j["trace_id"] and s["parent_span_id"] == "" and s["trace_state"] == ""
    sent = {r["headers"].get("traceparent") for r in t.provider_requests()}
    assert sent == {f"00-{x['trace_id']}-{x['span_id']}-01" for x in spans}, "upstream names the gateway span"

    for sp in spans:
        r = sp["resource"]
        assert r["service.name"] == "tollgate" and r["service.version"]
        assert UUID.match(r["service.instance.id"]), r["service.instance.id"]
        assert r["deployment.environment.name"] == "e2e"


def test_metrics_match_the_calls(topology):
    # Two workers: each VM exports its own deltas; their sum is what the calls produced.
    t = topology(config(), concurrency=2)
    for _ in range(3):
        json_call(t)
    stream_call(t)
    wait_for(lambda: hist_count(t, "gen_ai.client.operation.duration") >= 4, "4 operations")
    wait_for(lambda: hist_count(t, "gen_ai.client.token.usage") >= 8, "8 token measurements")
    assert hist_count(t, "gen_ai.client.operation.duration") == 4
    usage = points(t, "gen_ai.client.token.usage")
    for kind, per_call in (("input", 19), ("output", 10)):
        pts = [p for p in usage if p["attributes"]["gen_ai.token.type"] == kind]
        assert sum(p["count"] for p in pts) == 4
        assert sum(p["sum"] for p in pts) == 4 * per_call
        assert sum(sum(p["bucket_counts"]) for p in pts) == 4
        # 19 falls in (16, 64], 10 in (4, 16].
        idx = 3 if kind == "input" else 2
        assert sum(p["bucket_counts"][idx] for p in pts) == 4
    for p in usage:
        assert p["unit"] == "{token}" and p["kind"] == "histogram" and p["temporality"] == DELTA
        assert p["explicit_bounds"] == TOKEN_BUCKETS
        assert p["start"] < p["time"]
        a = p["attributes"]
        assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.provider.name"] == "openai"
        assert a["gen_ai.request.model"] == "gpt-4o" and a["gen_ai.response.model"] == "gpt-4o-2024-08-06"
        assert (a["server.address"], a["server.port"]) == ("api.openai.com", 443)
        assert "error.type" not in a
    for p in points(t, "gen_ai.client.operation.duration"):
        assert p["unit"] == "s" and p["explicit_bounds"] == DURATION_BUCKETS and p["temporality"] == DELTA
    ttfc = points(t, "gen_ai.client.operation.time_to_first_chunk")
    assert sum(p["count"] for p in ttfc) == 1, "time to first chunk: the stream only"
    assert not points(t, "gen_ai.client.inference.duration"), "latest names only when opted in"
    # Deltas from one VM never overlap: each interval starts where the previous one ended.
    by_vm = {}
    for p in points(t, "gen_ai.client.operation.duration"):
        by_vm.setdefault(p["resource"]["service.instance.id"], []).append((p["start"], p["time"]))
    for spans in by_vm.values():
        spans.sort()
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))


def test_error_calls_carry_error_type(topology):
    t = topology(config())
    fx = mock_provider.load_fixture("openai/chat-error-429")
    status, _, body = t.call(fx["path"], fx["request"], {"host": fx["host"], "x-mock-fixture": "openai/chat-error-429"})
    assert (status, body) == (fx["response"]["status"], mock_provider.fixture_body(fx))
    [p] = wait_for(lambda: points(t, "gen_ai.client.operation.duration"), "duration point")
    [span] = t.wait_spans(1)
    assert p["attributes"]["error.type"] == span["attributes"]["error.type"]
    assert span["status"]["code"] == 2


def test_latest_semconv_metrics(topology):
    cfg = config()
    cfg["semconv"] = "latest"
    t = topology(cfg, concurrency=1)
    stream_call(t)
    json_call(t)
    names = {
        "gen_ai.client.token.usage", "gen_ai.client.operation.duration",
        "gen_ai.client.operation.time_to_first_chunk", "gen_ai.client.inference.duration",
        "gen_ai.client.inference.time_to_first_chunk", "gen_ai.client.inference.usage.input_tokens",
        "gen_ai.client.inference.usage.output_tokens", "gen_ai.client.inference.usage.cache_read.input_tokens",
        "gen_ai.client.inference.usage.reasoning.output_tokens",
        "gen_ai.client.inference.operation.input_tokens", "gen_ai.client.inference.operation.output_tokens",
    }
    wait_for(lambda: names <= {p["name"] for p in points(t)}
         and hist_count(t, "gen_ai.client.inference.duration") >= 2, "every latest instrument")
    counters = [p for p in points(t) if p["name"].startswith("gen_ai.client.inference.usage.")]
    for p in counters:
        assert p["kind"] == "sum" and p["monotonic"] and p["temporality"] == DELTA and p["unit"] == "{token}"
        assert p["attributes"]["gen_ai.token.modality"] == "unknown"
    assert sum(p["value"] for p in counters if p["name"].endswith("usage.input_tokens")) == 38
    assert sum(p["value"] for p in counters if p["name"].endswith("usage.output_tokens")) == 20
    assert hist_count(t, "gen_ai.client.inference.time_to_first_chunk") == 1
    # The metrics and the span measure one first chunk.
    [streamed] = [s for s in t.wait_spans(2) if s["attributes"].get("gen_ai.request.stream")]
    ttfc = streamed["attributes"]["gen_ai.response.time_to_first_chunk"]
    for name in ("gen_ai.client.inference.time_to_first_chunk", "gen_ai.client.operation.time_to_first_chunk"):
        assert abs(sum(p["sum"] for p in points(t, name)) - ttfc) < 1e-9, name
    assert hist_count(t, "gen_ai.client.inference.operation.input_tokens") == 2


def test_gzip_export(topology):
    t = topology(config(compression="gzip"))
    json_call(t)
    [span] = t.wait_spans(1)
    assert span["attributes"]["gen_ai.usage.input_tokens"] == 19
    wait_for(lambda: points(t, "gen_ai.client.operation.duration"), "metrics")
    log = get_json(t.collector.port, "/__requests")
    assert {r["path"] for r in log} == {"/v1/traces", "/v1/metrics"}
    for r in log:
        assert r["encoding"] == "gzip" and r["content_type"] == "application/x-protobuf"
        assert r["user_agent"].startswith("tollgate/")


def test_uncompressed_by_default(gw):
    gw.reset()
    json_call(gw)
    gw.wait_spans(1)
    assert all(r["encoding"] is None for r in get_json(gw.collector.port, "/__requests"))


def prometheus(t):
    _, body = t.envoy.admin("/stats/prometheus")
    out = {}
    for line in body.splitlines():
        m = re.match(r"^(tollgate_[a-z_]+)(?:\{[^}]*\})? (\d+)", line)
        if m:
            out[m.group(1)] = out.get(m.group(1), 0) + int(m.group(2))
    return out


def test_envoy_stats_at_prometheus_endpoint(topology):
    t = topology(config())
    for _ in range(2):
        json_call(t)
    stream_call(t)
    fx = mock_provider.load_fixture("openai/chat-error-429")
    t.call(fx["path"], fx["request"], {"host": fx["host"], "x-mock-fixture": "openai/chat-error-429"})
    t.wait_spans(4)
    s = wait_for(lambda: (lambda p: p if p.get("tollgate_spans_exported", 0) >= 4
                               and p.get("tollgate_metrics_exported", 0) > 0 else None)(prometheus(t)), "stats")
    assert s["tollgate_calls"] == 4
    assert s["tollgate_calls_failed"] == 1
    assert s["tollgate_tokens_input"] == 3 * 19 and s["tollgate_tokens_output"] == 3 * 10
    assert s["tollgate_spans_exported"] == 4 and s["tollgate_spans_enqueued"] == 4
    assert s["tollgate_spans_dropped_queue_full"] == 0 and s["tollgate_spans_dropped_failed"] == 0
    assert s["tollgate_queue_depth"] == 0
    for name in ("tollgate_export_retries", "tollgate_metrics_dropped", "tollgate_metrics_export_retries",
                 "tollgate_metrics_overflow", "tollgate_spans_rejected", "tollgate_metrics_rejected"):
        assert s[name] == 0, name
    # Bounded cardinality: the stat names are fixed, whatever models or hosts the traffic names.
    _, body = t.envoy.admin("/stats/prometheus")
    assert not [ln for ln in body.splitlines() if ln.startswith("tollgate_") and "{" in ln and "gpt" in ln]


def test_metric_cardinality_is_capped(topology):
    t = topology(config(metrics_max_series=2), concurrency=1)
    fx = mock_provider.load_fixture("openai/chat-json")
    for i in range(5):
        status, _, _ = t.call(fx["path"], dict(fx["request"], model=f"model-{i}"),
                              {"host": fx["host"], "x-mock-fixture": "openai/chat-json"})
        assert status == 200
    wait_for(lambda: hist_count(t, "gen_ai.client.operation.duration") >= 5, "5 operations")
    pts = points(t, "gen_ai.client.operation.duration")
    overflow = [p for p in pts if p["attributes"].get("otel.metric.overflow") is True]
    assert len(pts) == 3 and sum(p["count"] for p in overflow) == 3
    assert overflow[0]["attributes"] == {"otel.metric.overflow": True}
    s = wait_for(lambda: prometheus(t).get("tollgate_metrics_overflow"), "overflow stat")
    assert s >= 3


def test_partial_success_is_counted_not_retried(topology):
    t = topology(config(), concurrency=1)
    send_json(t.collector.port, "/__mode", {"rejected": 1})
    json_call(t)
    t.wait_spans(1)
    s = wait_for(lambda: (lambda p: p if p.get("tollgate_spans_rejected") == 1
                                        and p.get("tollgate_metrics_rejected") == 1 else None)(prometheus(t)), "rejected stats")
    assert s["tollgate_export_retries"] == 0
    traces = [r for r in get_json(t.collector.port, "/__requests") if r["path"] == "/v1/traces"]
    assert len(traces) == 1
    assert "collector rejected 1 spans" in t.envoy.log()


def test_documented_collector_example_matches_testenv():
    import yaml

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    doc = open(os.path.join(root, "docs", "operations.md"), encoding="utf-8").read()
    blocks = re.findall(r"```yaml\n(.*?)```", doc, re.S)
    examples = [yaml.safe_load(b) for b in blocks if "receivers:" in b and "otlp_http" in b]
    assert examples, "docs/operations.md has an OpenTelemetry Collector example"
    ex = examples[0]
    assert ex["receivers"]["otlp"]["protocols"]["http"]["endpoint"].endswith(":4318")
    assert "deltatocumulative" in ex["processors"]
    pipes = ex["service"]["pipelines"]
    assert pipes["traces"]["receivers"] == ["otlp"] and pipes["metrics"]["receivers"] == ["otlp"]
    assert "deltatocumulative" in pipes["metrics"]["processors"]
    # The collector's current component names (v0.144.0 renamed `otlp` and `otlphttp`).
    assert not any(name.split("/")[0] in {"otlp", "otlphttp"} for name in ex["exporters"])
    for p in pipes.values():
        assert set(p["exporters"]) <= set(ex["exporters"]) and set(p.get("processors", [])) <= set(ex["processors"])
    full = yaml.safe_load(open(os.path.join(root, "testenv", "otel-collector.yaml"), encoding="utf-8"))
    assert full["receivers"]["otlp"]["protocols"]["http"]["endpoint"].endswith(":4318")
    assert "deltatocumulative" in full["service"]["pipelines"]["metrics"]["processors"]
    assert json.dumps(ex["processors"]["deltatocumulative"]) == json.dumps(full["processors"]["deltatocumulative"])
