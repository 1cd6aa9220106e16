"""MCP tool traffic through real Envoy: the official MCP Python SDK client (`mcp` on PyPI) against the SDK's
own Streamable HTTP server, in both protocol eras (2026-07-28 per-request, and the initialize/session era)
with JSON and SSE answers. The OTLP receiver decodes the spans and metrics tollgate sent; refused tool
calls are proven never to reach the server."""

import asyncio
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "testenv"))

from gateway import default_plugin_config, get_json, wait_for  # noqa: E402
from mcp_server import McpBackground  # noqa: E402

from mcp import Client  # noqa: E402
from mcp.shared.exceptions import MCPError  # noqa: E402

TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
MCP_BUCKETS = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60, 120, 300]


def config(mcp=None, **extra):
    cfg = default_plugin_config()
    cfg["otlp"].update({"metrics_interval_ms": 300, "metrics": True})
    cfg["tenant"] = {"header": "x-tenant-id", "default": "anonymous"}
    cfg["mcp"] = dict({"servers": [{"host": "127.0.0.1", "path_prefix": "/mcp"}]}, **(mcp or {}))
    cfg.update(extra)
    return cfg


@pytest.fixture(params=["json", "sse"])
def server(request):
    s = McpBackground(json_response=request.param == "json")
    yield s
    s.stop()


def run(coro):
    return asyncio.run(coro)


async def call(t, mode, tool, args, tenant="team-a", headers=None):
    """One client session through the gateway: the tool's result, or the MCPError it raised."""
    h = {"x-tenant-id": tenant}
    h.update(headers or {})
    import httpx2

    async with httpx2.AsyncClient(headers=h, timeout=20) as http:
        from mcp.client.streamable_http import streamable_http_client

        async with Client(streamable_http_client(f"http://127.0.0.1:{t.port}/mcp", http_client=http),
                          mode=mode) as c:
            try:
                return await c.call_tool(tool, args)
            except MCPError as e:
                return e


def stats(t):
    """tollgate's counters by their name after `tollgate.` (Envoy prefixes custom metrics)."""
    return {k.rsplit("tollgate.", 1)[-1]: v for k, v in t.envoy.stats("tollgate.").items()}


def tool_spans(t, n, name="tools/call get_weather"):
    return t.wait_spans(n, predicate=lambda s: s["name"] == name)


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_tool_calls_get_mcp_client_spans(topology, server, mode):
    t = topology(config(), provider=server)
    r = run(call(t, mode, "get_weather", {"location": "Paris"}, headers={"traceparent": TP}))
    assert not isinstance(r, MCPError), r
    assert r.content[0].text == "sunny in Paris" and not r.is_error
    r = run(call(t, mode, "flaky", {"x": 1}))
    assert r.is_error
    (s,) = tool_spans(t, 1)
    a = s["attributes"]
    assert s["kind"] == 3  # SPAN_KIND_CLIENT
    assert a["mcp.method.name"] == "tools/call"
    assert a["gen_ai.tool.name"] == "get_weather"
    assert a["gen_ai.operation.name"] == "execute_tool"
    assert a["jsonrpc.request.id"]
    assert a["server.address"] == "127.0.0.1"
    assert a["network.protocol.name"] == "http"
    assert a["tollgate.tenant"] == "team-a"
    assert "error.type" not in a and s["status"]["code"] == 0
    assert "gen_ai.tool.call.arguments" not in a, "content only with capture_content"
    version = a["mcp.protocol.version"]
    if mode == "legacy":
        assert version < "2026-07-28", version
        assert a["mcp.session.id"], "the session the initialize answer assigned"
        assert t.wait_spans(1, predicate=lambda s: s["name"] == "initialize")
    else:
        assert version >= "2026-07-28", version
        assert "mcp.session.id" not in a
    (f,) = tool_spans(t, 1, "tools/call flaky")
    assert f["attributes"]["error.type"] == "tool_error" and f["status"]["code"] == 2
    # The trace is the app's when the transport carried its traceparent.
    assert s["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"

    def duration_points():
        pts = get_json(t.collector.port, "/__points")
        return [p for p in pts if p["name"] == "mcp.client.operation.duration"
                and p["attributes"].get("gen_ai.tool.name") == "get_weather"]

    (p,) = wait_for(duration_points, "mcp.client.operation.duration")
    assert p["unit"] == "s" and p["count"] == 1 and p["explicit_bounds"] == MCP_BUCKETS
    assert p["attributes"]["mcp.method.name"] == "tools/call"
    assert "jsonrpc.request.id" not in p["attributes"] and "mcp.session.id" not in p["attributes"]
    assert stats(t).get("mcp.requests", 0) >= 2


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_a_denied_tool_gets_a_json_rpc_error_and_never_reaches_the_server(topology, server, mode):
    t = topology(config({"tools": {"deny": ["delete_*"]}, "tenants": {"ops": {"allow": ["*"]}}}), provider=server)
    r = run(call(t, mode, "delete_repo", {"name": "prod"}))
    assert isinstance(r, MCPError), r
    assert r.code == -31403 and r.error.data == {"reason": "tool_denied"}
    assert ("delete_repo", "prod") not in server.executed
    # Allowed tools, and another tenant's own policy, still work in the same configuration.
    r = run(call(t, mode, "get_weather", {"location": "Oslo"}))
    assert r.content[0].text == "sunny in Oslo"
    r = run(call(t, mode, "delete_repo", {"name": "scratch"}, tenant="ops"))
    assert r.content[0].text == "deleted scratch"
    spans = t.wait_spans(2, predicate=lambda s: s["name"] == "tools/call delete_repo")
    (s,) = [s for s in spans if s["attributes"]["tollgate.tenant"] == "team-a"]
    assert s["attributes"]["error.type"] == "-31403"
    assert s["attributes"]["tollgate.mcp.refusal"] == "tool_denied"
    assert s["status"]["code"] == 2
    assert stats(t).get("mcp.refused") == 1


def test_tool_call_budgets_refuse_past_the_limit(topology):
    server = McpBackground(json_response=False)
    try:
        t = topology(config({"tool_calls": [{"tenant": "*", "window": "1h", "calls": 2}]}), provider=server)
        results = [run(call(t, "auto", "get_weather", {"location": f"c{i}"})) for i in range(3)]
        assert [isinstance(r, MCPError) for r in results] == [False, False, True]
        assert results[2].code == -31429 and results[2].error.data == {"reason": "budget_exceeded"}
        assert [e for e in server.executed if e[0] == "get_weather"] == [("get_weather", "c0"), ("get_weather", "c1")]
        # Each tenant has its own counter.
        r = run(call(t, "auto", "get_weather", {"location": "x"}, tenant="team-b"))
        assert not isinstance(r, MCPError)
    finally:
        server.stop()


def test_captured_arguments_are_redacted_and_egress_redaction_rewrites_them(topology, server):
    t = topology(config(capture_content=True, redaction={"egress": True}), provider=server)
    r = run(call(t, "auto", "get_weather", {"location": "Paris, ask bob@example.com"}))
    assert not isinstance(r, MCPError), r
    assert server.executed[-1][0] == "get_weather" and "bob@example.com" not in server.executed[-1][1]
    (s,) = tool_spans(t, 1)
    args = s["attributes"]["gen_ai.tool.call.arguments"]
    assert "Paris" in args and "bob@example.com" not in args
    assert "sunny" in s["attributes"]["gen_ai.tool.call.result"]
