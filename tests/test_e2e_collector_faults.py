"""Telemetry never touches traffic: with the collector down, slow (10 s), answering 503 + Retry-After or
400, or with the span queue full, every client gets the provider's status and body unchanged and without
delay, the losses are counted in Envoy stats, and export resumes when the collector comes back."""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "testenv"))

import mock_provider  # noqa: E402
from gateway import default_plugin_config, get_json, send_json, wait_for  # noqa: E402

import pytest  # noqa: E402

pytestmark = pytest.mark.usefixtures("build")  # every test runs against both builds (conftest.py)

FIXTURE = "openai/chat-stream"
COLLECTOR_DELAY_S = 10


def config(**otlp):
    cfg = default_plugin_config()
    cfg["otlp"].update({"metrics_interval_ms": 300}, **otlp)
    return cfg


def call_unchanged(t):
    """One streamed call; the client must get exactly the provider's answer. Returns the seconds it took."""
    fx = mock_provider.load_fixture(FIXTURE)
    start = time.monotonic()
    status, _, body = t.call(fx["path"], fx["request"], {"host": fx["host"], "x-mock-fixture": FIXTURE})
    elapsed = time.monotonic() - start
    assert status == 200
    assert body == mock_provider.fixture_body(fx), "the client receives the provider's bytes unchanged"
    return elapsed


def stats(t):
    """tollgate's Envoy stats by short name (wasmcustom.tollgate.calls or dynamicmodulescustom.tollgate.calls
    → calls)."""
    return {k.split("tollgate.", 1)[1]: v for k, v in t.envoy.stats("tollgate").items() if "tollgate." in k}


def requests(t, path="/v1/traces"):
    return [r for r in get_json(t.collector.port, "/__requests") if r["path"] == path]


def test_collector_down(topology):
    t = topology(config())
    t.collector.stop()  # the cluster now points at a closed port
    for _ in range(3):
        call_unchanged(t)
    # `calls` reaches Envoy on the tick after each call, like the export counters.
    s = wait_for(lambda: (lambda s: s if s.get("export_retries", 0) >= 1 and s.get("calls", 0) >= 3
                                        and s.get("metrics_export_retries", 0) >= 1 else None)(stats(t)), "export retries")
    assert s["calls"] == 3 and s["spans_exported"] == 0
    assert s["queue_depth"] <= 3, "nothing beyond the calls made is held"
    # Retries end: after the attempts the batch is dropped and counted, nothing accumulates.
    s = wait_for(lambda: (lambda s: s if s.get("spans_dropped_failed", 0) >= 1 else None)(stats(t)), "drop after attempts",
             timeout=60)
    assert s["spans_dropped_failed"] + s["queue_depth"] + s["spans_exported"] <= 3


def test_slow_collector_does_not_delay_traffic(topology):
    t = topology(config(timeout_ms=30_000))
    send_json(t.collector.port, "/__mode", {"delay_ms": COLLECTOR_DELAY_S * 1000})
    call_unchanged(t)
    wait_for(lambda: requests(t), "an export hanging in the collector")
    # While the collector holds the export for 10 s, calls complete as fast as ever: far below the delay.
    took = [call_unchanged(t) for _ in range(5)]
    assert max(took) < COLLECTOR_DELAY_S / 2, took
    send_json(t.collector.port, "/__mode", {"delay_ms": 0})
    t.wait_spans(6, timeout=60)


def test_backlog_drains_back_to_back_not_one_batch_per_tick(topology):
    """A worker that makes spans faster than one batch per tick (200 ms) must not fall behind a healthy
    collector: once an export is answered, the next full batch goes at once."""
    t = topology(config(max_batch=2, max_queue=100, flush_interval_ms=60_000, timeout_ms=30_000), concurrency=1)
    # Hold the first export for 5 s so the other spans queue behind it.
    send_json(t.collector.port, "/__mode", {"delay_ms": 5000})
    for _ in range(10):
        call_unchanged(t)
    send_json(t.collector.port, "/__mode", {"delay_ms": 0})
    t.wait_spans(10, timeout=30)
    traces = requests(t)
    assert len(traces) == 5, traces
    # After the held one, the backlog's four batches follow each other within a round trip, far below
    # the 200 ms a tick-paced exporter would need between them.
    gaps = [b["t"] - a["t"] for a, b in zip(traces[1:], traces[2:])]
    assert max(gaps) < 0.15, gaps
    s = wait_for(lambda: (lambda s: s if s.get("spans_exported") == 10 else None)(stats(t)), "stats")
    assert s["spans_dropped_queue_full"] == 0


def test_503_retry_after_then_recovery(topology):
    t = topology(config(), concurrency=1)
    send_json(t.collector.port, "/__mode", {"status": 503, "retry_after": 2})
    call_unchanged(t)
    tries = wait_for(lambda: (lambda r: r if len(r) >= 2 else None)(requests(t)), "a retried export")
    # Retry-After: 2 is honoured (a lower bound, so this cannot flake).
    assert tries[1]["t"] - tries[0]["t"] >= 1.9, tries
    assert t.spans() == []
    send_json(t.collector.port, "/__mode", {"status": 200, "retry_after": None})
    [span] = t.wait_spans(1, timeout=30)
    assert span["attributes"]["gen_ai.usage.output_tokens"] == 10
    s = wait_for(lambda: (lambda s: s if s.get("spans_exported") == 1 else None)(stats(t)), "stats")
    assert s["export_retries"] >= 1 and s["spans_dropped_failed"] == 0


def test_non_retryable_answer_drops_at_once(topology):
    t = topology(config(), concurrency=1)
    send_json(t.collector.port, "/__mode", {"status": 400})
    call_unchanged(t)
    s = wait_for(lambda: (lambda s: s if s.get("spans_dropped_failed") == 1 else None)(stats(t)), "dropped")
    assert s["export_retries"] == 0, "400 is not retried"
    assert len(requests(t)) == 1
    m = wait_for(lambda: (lambda s: s if s.get("metrics_dropped", 0) > 0 else None)(stats(t)), "metrics dropped")
    assert m["metrics_export_retries"] == 0


def test_queue_bound_respected_and_drops_counted(topology):
    t = topology(config(max_batch=1, max_queue=2), concurrency=1)
    send_json(t.collector.port, "/__mode", {"status": 503, "retry_after": 120})
    for _ in range(8):
        call_unchanged(t)
    s = wait_for(lambda: (lambda s: s if s.get("spans_dropped_queue_full") == 6
                               and s.get("queue_depth") == 2 else None)(stats(t)), "drops")
    assert s["spans_enqueued"] == 2 and s["calls"] == 8
