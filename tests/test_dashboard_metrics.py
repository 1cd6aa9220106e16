"""The Grafana dashboard and the Prometheus alert rules query metrics tollgate really exports. Every metric
name and label in their PromQL is one of:
- what real Envoy + tollgate sent to the OTLP receiver, translated the way the OpenTelemetry Collector's
  Prometheus exporter names OTLP metrics (dots → underscores, unit suffix `_seconds` for `s`, `{…}`
  annotation units dropped, `_total` for monotonic sums, `_bucket`/`_sum`/`_count` for histograms; attribute
  keys with dots → underscores);
- what the same Envoy serves at /stats/prometheus (tollgate's counters and Envoy's Wasm stats), with only
  the labels Prometheus adds to a scrape (`job`, `instance`).
A renamed metric or attribute fails here instead of leaving an empty panel or an alert that never fires."""

import json
import os
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "testenv"))

import mock_provider  # noqa: E402
from gateway import default_plugin_config, get_json  # noqa: E402

import pytest  # noqa: E402

pytestmark = pytest.mark.usefixtures("build")  # every test runs against both builds (conftest.py)

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "testenv" / "grafana" / "dashboards" / "tollgate-genai.json"
ALERTS = ROOT / "testenv" / "prometheus-alerts.yml"
SCRAPE_LABELS = {"job", "instance"}
PROMQL_WORDS = {"sum", "by", "rate", "increase", "histogram_quantile", "without", "on", "le", "and", "or",
                "unless", "bool", "offset"}


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
    out = [(p["title"], t["expr"]) for p in d["panels"] for t in p.get("targets", []) if "expr" in t]
    for v in d["templating"]["list"]:
        m = re.fullmatch(r"label_values\((\w+), *(\w+)\)", v.get("definition", ""))
        if v["type"] == "query":
            assert m, v
            out.append((f"variable {v['name']}", f"sum by ({m.group(2)}) ({m.group(1)}{{}})"))
    return out


def alert_queries():
    import yaml

    return [(r["alert"], r["expr"]) for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]


def envoy_prometheus_names(envoy):
    """Metric names at Envoy's /stats/prometheus."""
    _, body = envoy.admin("/stats/prometheus")
    return {re.split(r"[{ ]", ln, maxsplit=1)[0] for ln in body.splitlines() if ln and not ln.startswith("#")}


def referenced(expr):
    """(metric names, label names) used in a PromQL expression; `{__name__=~"re"}` selectors as `~re`."""
    labels = set()
    for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
        labels |= {x.strip() for x in group.split(",") if x.strip()}
    for sel in re.findall(r"\{([^}]*)\}", expr):
        labels |= set(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!=|!~|=)", sel))
    # Metric names: identifiers left once strings, label groups, selectors and ranges are gone, that are not
    # functions (followed by a parenthesis) or keywords.
    bare = re.sub(r'"[^"]*"', '""', expr)
    bare = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", bare)
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", bare)
    metrics = {m for m in re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", bare) if m not in PROMQL_WORDS}
    metrics |= {"~" + r for r in re.findall(r'__name__=~"([^"]+)"', expr)}
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

    exported = {k: v | SCRAPE_LABELS for k, v in exported.items()}
    for name in envoy_prometheus_names(t.envoy):
        exported.setdefault(name, set(SCRAPE_LABELS))
    assert {"tollgate_spans_dropped_queue_full", "tollgate_queue_depth", "tollgate_calls_uninspected"} <= set(exported)
    # The dashboard's "VM failures" panel reads Envoy's Wasm runtime stats: the native build has no VM (its
    # faults are tollgate_native_panics; docs/native-module.md, "Stats").
    wasm_runtime = re.compile(r"envoy_wasm_")
    if t.envoy.build == "wasm":
        assert "envoy_wasm_envoy_wasm_runtime_v8_created" in exported
    else:
        assert "tollgate_native_panics" in exported

    problems = []
    queries = [(f"dashboard: {t}", e) for t, e in dashboard_queries()] + [(f"alert {a}", e) for a, e in alert_queries()]
    for title, expr in queries:
        metrics, labels = referenced(expr)
        assert metrics, f"{title}: no metric found in {expr!r}"
        for m in metrics:
            if t.envoy.build == "native" and wasm_runtime.match(m.lstrip("~")):
                continue
            if m.startswith("~"):
                names = [n for n in exported if re.fullmatch(m[1:], n)]
                if not names:
                    problems.append(f"{title}: no exported metric matches {m[1:]}")
                continue
            if m not in exported:
                problems.append(f"{title}: {m} is not exported (exported: {sorted(exported)})")
                continue
            for label in labels - exported[m]:
                problems.append(f"{title}: {m} has no label {label} (has {sorted(exported[m])})")
    assert not problems, "\n".join(problems)


def test_dashboard_is_importable_anywhere():
    """No hard-coded datasource: every query uses the dashboard's datasource variable, which Grafana fills
    with the Prometheus datasource of the instance it is imported into (or provisioned in)."""
    d = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert variables["datasource"].get("current") in ({}, None)
    assert variables["tenant"]["definition"] == "label_values(gen_ai_client_token_usage_sum, tollgate_tenant)"
    for p in d["panels"]:
        if p["type"] == "row":
            continue
        for node in [p] + p["targets"]:
            assert node["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
    titles = " ".join(p["title"] for p in d["panels"])
    for health in ("Spans dropped", "queue depth", "Uninspected", "Budget denials", "VM failures"):
        assert health in titles, health
    tenant_panels = [p for p in d["panels"] if p["type"] != "row" and "tollgate_tenant" in json.dumps(p["targets"])]
    assert any("cost" in p["title"].lower() for p in tenant_panels)
    assert any("tokens" in p["title"].lower() for p in tenant_panels)
