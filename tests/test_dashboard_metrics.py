"""The provisioned Grafana dashboard queries metrics tollgate really exports: every metric name and label in
its PromQL is derived from what real Envoy + tollgate sent to the OTLP receiver, translated the way the
OpenTelemetry Collector's Prometheus exporter names OTLP metrics (dots → underscores, unit suffix `_seconds`
for `s`, `{…}` annotation units dropped, `_total` for monotonic sums, `_bucket`/`_sum`/`_count` for
histograms; attribute keys with dots → underscores). A renamed metric or attribute fails here instead of
leaving an empty panel."""

import json
import os
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "testenv"))

import mock_provider  # noqa: E402
from gateway import default_plugin_config, get_json  # noqa: E402

DASHBOARD = Path(__file__).resolve().parent.parent / "testenv" / "grafana" / "dashboards" / "tollgate-genai.json"
PROMQL_WORDS = {"sum", "by", "rate", "increase", "histogram_quantile", "without", "on", "le"}


def prom_names(point):
    base = point["name"].replace(".", "_")
    unit = point.get("unit", "")
    if unit == "s":
        base += "_seconds"
    elif unit and not unit.startswith("{"):
        base += "_" + unit
    if point["kind"] == "histogram":
        return {base + s for s in ("_bucket", "_sum", "_count")}
    return {base + "_total"}


def dashboard_queries():
    d = json.loads(DASHBOARD.read_text())
    return [(p["title"], t["expr"]) for p in d["panels"] for t in p.get("targets", []) if "expr" in t]


def referenced(expr):
    """(metric names, label names) used in a PromQL expression."""
    metrics = {m for m in re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*[{\[]", expr) if m not in PROMQL_WORDS}
    labels = set()
    for group in re.findall(r"\bby\s*\(([^)]*)\)", expr):
        labels |= {x.strip() for x in group.split(",") if x.strip()}
    for sel in re.findall(r"\{([^}]*)\}", expr):
        labels |= set(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!=|!~|=)", sel))
    return metrics, labels - {"le", "__name__"}


def test_every_panel_queries_exported_metrics(topology):
    cfg = default_plugin_config()
    cfg["otlp"]["metrics_interval_ms"] = 300
    cfg["tenant"] = {"header": "x-tenant-id", "default": "anonymous"}
    cfg["pricing"] = {"gpt-4o*": {"input": 2.5, "output": 10, "cache_read": 1.25}}
    cfg["budgets"] = [{"tenant": "broke", "window": "1h", "tokens": 1}, {"tenant": "*", "window": "1h", "tokens": 10**9}]
    t = topology(cfg)
    json_fx = mock_provider.load_fixture("openai/chat-json")
    stream_fx = mock_provider.load_fixture("openai/chat-stream")
    err_fx = mock_provider.load_fixture("openai/chat-error-429")
    for fx, name, tenant, want in [(json_fx, "openai/chat-json", "team-a", 200),
                                   (stream_fx, "openai/chat-stream", "team-a", 200),
                                   (err_fx, "openai/chat-error-429", "team-b", 429),
                                   (json_fx, "openai/chat-json", "broke", 429)]:
        status, _, _ = t.call(fx["path"], fx["request"], {"host": fx["host"], "x-mock-fixture": name,
                                                          "x-tenant-id": tenant})
        assert status == want

    exported = {}  # prometheus metric name -> label names seen
    deadline = time.time() + 20
    needed = {"tollgate_budget_decisions_total", "tollgate_cost_usd_total",
              "gen_ai_client_operation_time_to_first_chunk_seconds_bucket"}
    while time.time() < deadline:
        exported.clear()
        for p in get_json(t.collector.port, "/__points"):
            for n in prom_names(p):
                exported.setdefault(n, set()).update(k.replace(".", "_") for k in p["attributes"])
        if needed <= set(exported):
            break
        time.sleep(0.1)

    problems = []
    for title, expr in dashboard_queries():
        metrics, labels = referenced(expr)
        assert metrics, f"{title}: no metric found in {expr!r}"
        for m in metrics:
            if m not in exported:
                problems.append(f"{title}: {m} is not exported (exported: {sorted(exported)})")
                continue
            for label in labels - exported[m]:
                problems.append(f"{title}: {m} has no label {label} (has {sorted(exported[m])})")
    assert not problems, "\n".join(problems)
