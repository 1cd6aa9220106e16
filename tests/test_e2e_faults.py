"""Faults through real Envoy: upstream resets, stalls, truncated and malformed bodies, huge headers,
bodies beyond tollgate's limits, client aborts at every phase, 1 and 4 workers, and plugin hot-reload while
traffic flows. For each fault the client gets what it would get without tollgate (the same request sent to
the mock provider directly), and tollgate's counters and spans say what happened: every call is counted
once and exported once, with `error.type` and the partial-usage flag when the exchange broke."""

import base64
import http.client
import json
import os
import socket
import sys
import threading
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "testenv"))

import gateway  # noqa: E402
import mock_provider  # noqa: E402

pytestmark = pytest.mark.usefixtures("build")  # every test runs against both builds (conftest.py)

STREAM = "anthropic/messages-stream-cache-tools"
JSON = "openai/chat-json"
ANTHROPIC = {"host": "api.anthropic.com", "anthropic-version": "2023-06-01"}
OPENAI = {"host": "api.openai.com"}


def fixture(name):
    return mock_provider.load_fixture(name)


def stats(t):
    """tollgate's Envoy counters, keyed by the short name (`calls`, `calls_failed`, ...)."""
    return {k.rsplit("tollgate.", 1)[-1]: v for k, v in t.envoy.stats("tollgate.").items()}


def wait_stat(t, name, want, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if stats(t).get(name, 0) >= want:
            return stats(t)
        time.sleep(0.05)
    raise AssertionError(f"tollgate.{name} never reached {want}: {stats(t)}")


def fetch(port, path, body, headers):
    """One request; returns (status or None, bytes received, complete?). Never raises on a broken stream."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    h = {"content-type": "application/json"}
    h.update(headers)
    try:
        c.request("POST", path, body=data, headers=h)
        r = c.getresponse()
    except (ConnectionError, http.client.HTTPException):
        c.close()
        return None, b"", False
    got = b""
    complete = True
    try:
        while True:
            part = r.read1(65536) if hasattr(r, "read1") else r.read(65536)
            if not part:
                break
            got += part
    except http.client.IncompleteRead as e:
        got += e.partial
        complete = False
    except (ConnectionError, http.client.HTTPException):
        complete = False
    if r.length not in (None, 0) or (r.chunked and r.chunk_left not in (None, 0)):
        complete = False
    c.close()
    return r.status, got, complete


def both(t, name_or_body, headers, path=None):
    """The same request through the gateway and straight to the mock: (via tollgate, direct)."""
    if isinstance(name_or_body, str):
        fx = fixture(name_or_body)
        body, path = fx["request"], path or fx["path"]
        headers = {"x-mock-fixture": name_or_body, **headers}
    else:
        body = name_or_body
    via = fetch(t.port, path, body, headers)
    direct = fetch(t.provider.port, path, body, headers)
    return via, direct


def one_span(t, before_calls):
    """Exactly one new call counted and exported."""
    s = wait_stat(t, "calls", before_calls + 1)
    [span] = t.wait_spans(1)
    time.sleep(0.3)  # a duplicate export would arrive with the next flush (200 ms)
    assert len(t.spans()) == 1, "the call was exported twice"
    assert s["calls"] == before_calls + 1
    return span, s


# --- upstream faults -----------------------------------------------------------------------------------


def test_upstream_reset_mid_stream_keeps_usage_so_far(gw):
    gw.reset()
    before = stats(gw)
    via, direct = both(gw, STREAM, {**ANTHROPIC, "x-mock-reset": "600"})
    assert via[0] == direct[0] == 200
    assert not via[2] and not direct[2], "the client sees the stream cut, as without tollgate"
    assert via[1] == direct[1][: len(via[1])] and len(via[1]) <= 600
    span, s = one_span(gw, before.get("calls", 0))
    a = span["attributes"]
    assert a["error.type"] == "stream_interrupted"
    assert a["tollgate.usage.partial"] is True
    assert a["gen_ai.usage.input_tokens"] == 2095, "usage known before the cut is kept"
    assert a["gen_ai.response.id"] == "msg_01S"
    assert s["calls_failed"] == before.get("calls_failed", 0) + 1


def test_truncated_json_body(gw):
    gw.reset()
    before = stats(gw)
    fx = fixture(JSON)
    n = len(mock_provider.fixture_body(fx)) // 2
    via = fetch(gw.port, fx["path"], fx["request"], {**OPENAI, "x-mock-fixture": JSON, "x-mock-close": str(n)})
    direct = fetch(gw.provider.port, fx["path"], fx["request"],
                   {**OPENAI, "x-mock-fixture": JSON, "x-mock-close": str(n)})
    assert not direct[2] and not via[2]
    assert via[1] == direct[1][: len(via[1])]
    s = wait_stat(gw, "calls", before.get("calls", 0) + 1)
    spans = gw.wait_spans(1)
    a = spans[0]["attributes"]
    assert a["error.type"] == "stream_interrupted"
    assert "gen_ai.usage.input_tokens" not in a, "no usage claimed from half a document"
    assert s["calls_failed"] == before.get("calls_failed", 0) + 1


def test_reset_before_headers(gw):
    gw.reset()
    before = stats(gw)
    fx = fixture(JSON)
    status, _, _ = fetch(gw.port, fx["path"], fx["request"], {**OPENAI, "x-mock-fixture": JSON, "x-mock-reset": "0"})
    assert status == 503, "Envoy's own answer to an upstream reset, as without tollgate"
    [span] = gw.wait_spans(1)
    # Envoy's local 503 passes through the filter's response path like any answer.
    assert span["attributes"]["error.type"] == "503"
    assert wait_stat(gw, "calls", before.get("calls", 0) + 1)["calls"] == before.get("calls", 0) + 1


def test_stalled_stream_completes_unchanged(gw):
    gw.reset()
    fx = fixture(STREAM)
    h = {**ANTHROPIC, "x-mock-fixture": STREAM, "x-mock-chunk": "100", "x-mock-stall-ms": "1500"}
    status, got, complete = fetch(gw.port, fx["path"], fx["request"], h)
    assert (status, complete) == (200, True)
    assert got == mock_provider.fixture_body(fx)
    [span] = gw.wait_spans(1)
    a = span["attributes"]
    assert "error.type" not in a and "tollgate.usage.partial" not in a
    assert a["gen_ai.usage.output_tokens"] == 503


@pytest.mark.parametrize("case", ["wrong-content-type", "invalid-json", "binary-garbage", "garbage-as-sse"])
def test_malformed_responses_pass_through(gw, case):
    gw.reset()
    garbage = bytes((i * 7919 + 13) % 256 for i in range(70000))
    fx = fixture(JSON)
    h = {**OPENAI, "x-mock-fixture": JSON}
    if case == "wrong-content-type":
        h["x-mock-content-type"] = "text/html; charset=utf-8"
    elif case == "invalid-json":
        h["x-mock-body-b64"] = base64.b64encode(b'{"id":"chatcmpl-x","usage":{"prompt_tokens":3,').decode()
    elif case == "binary-garbage":
        h["x-mock-body-b64"] = base64.b64encode(garbage[:4000]).decode()
        h["x-mock-content-type"] = "application/octet-stream"
    else:
        h["x-mock-body-b64"] = base64.b64encode(garbage[:4000]).decode()
        h["x-mock-content-type"] = "text/event-stream"
        h["x-mock-chunk"] = "333"
    before = stats(gw)
    via, direct = both(gw, JSON, h)
    assert via == direct, "the client gets exactly what the provider sent"
    [span] = gw.wait_spans(1)
    a = span["attributes"]
    assert a["http.response.status_code"] == 200 and "error.type" not in a
    if case == "wrong-content-type":
        assert a["gen_ai.usage.input_tokens"] == 19, "a JSON body is read whatever its label"
    else:
        assert "gen_ai.usage.input_tokens" not in a
    assert wait_stat(gw, "calls", before.get("calls", 0) + 1)["calls"] == before.get("calls", 0) + 1


def test_huge_headers(gw):
    gw.reset()
    h = {**OPENAI, "x-mock-fixture": JSON, "x-big-request": "q" * 40000, "x-mock-header-bytes": "40000"}
    via, direct = both(gw, JSON, h)
    assert via[0] == direct[0] == 200 and via[1] == direct[1]
    [span] = gw.wait_spans(1)
    assert span["attributes"]["gen_ai.usage.input_tokens"] == 19
    # Beyond Envoy's own request header limit (60 KiB) Envoy answers 431 before any filter runs.
    status, _, _ = fetch(gw.port, "/v1/chat/completions", {"model": "m"}, {**OPENAI, "x-huge": "q" * 70000})
    assert status == 431


def test_bodies_beyond_limits(topology):
    cfg = gateway.default_plugin_config()
    cfg.update({"max_request_body": 1024, "max_response_body": 2048, "max_event": 512})
    t = topology(cfg)
    # Request body over max_request_body: forwarded byte for byte, counted uninspected, still one span.
    big = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x" * 8000}]}
    status, _, _ = fetch(t.port, "/v1/chat/completions", big, {**OPENAI, "x-mock-fixture": JSON})
    assert status == 200
    [req] = t.provider_requests()
    assert json.loads(req["body"]) == big
    # `calls` reaches Envoy on the next tick (counted per call, published per tick).
    s = wait_stat(t, "calls", 1)
    assert s["calls_uninspected"] == 1 and s["calls"] == 1
    # Response body over max_response_body: passed through, no usage claimed.
    filler = {"id": "chatcmpl-big", "pad": "p" * 5000, "usage": {"prompt_tokens": 5, "completion_tokens": 6}}
    raw = json.dumps(filler).encode()
    h = {**OPENAI, "x-mock-fixture": JSON, "x-mock-body-b64": base64.b64encode(raw).decode()}
    via = fetch(t.port, "/v1/chat/completions", {"model": "gpt-4o"}, h)
    assert via == (200, raw, True)
    # One streamed event over max_event: skipped, the rest of the stream (with its usage) still read.
    events = [
        {"id": "c1", "object": "chat.completion.chunk", "model": "gpt-4o",
         "choices": [{"index": 0, "delta": {"content": "y" * 2000}, "finish_reason": None}]},
        {"id": "c1", "object": "chat.completion.chunk", "model": "gpt-4o",
         "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {"id": "c1", "object": "chat.completion.chunk", "model": "gpt-4o", "choices": [],
         "usage": {"prompt_tokens": 8, "completion_tokens": 500, "total_tokens": 508}},
    ]
    sse = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"
    h = {**OPENAI, "x-mock-fixture": JSON, "x-mock-body-b64": base64.b64encode(sse).decode(),
         "x-mock-content-type": "text/event-stream", "x-mock-chunk": "100"}
    body = {"model": "gpt-4o", "stream": True, "stream_options": {"include_usage": True}}
    via = fetch(t.port, "/v1/chat/completions", body, h)
    assert via == (200, sse, True)
    spans = t.wait_spans(3)
    stream_span = [a for a in (s["attributes"] for s in spans) if a.get("gen_ai.request.stream")][0]
    assert stream_span["gen_ai.usage.output_tokens"] == 500
    assert stream_span["gen_ai.response.finish_reasons"] == ["stop"]
    skipped_req = [a for a in (s["attributes"] for s in spans) if a.get("gen_ai.response.id") == "chatcmpl-abc123"]
    assert skipped_req and "gen_ai.request.model" not in skipped_req[0], "the big request body was not parsed"
    assert skipped_req[0]["gen_ai.usage.input_tokens"] == 19, "its (small) response still was"
    big_resp = [a for a in (s["attributes"] for s in spans)
                if "gen_ai.response.id" not in a and not a.get("gen_ai.request.stream")]
    assert big_resp and "gen_ai.usage.input_tokens" not in big_resp[0], "an oversize body reports no usage"
    assert wait_stat(t, "calls", 3)["calls"] == 3


# --- client aborts -------------------------------------------------------------------------------------


def raw_request(port, path, body, headers, send_bytes):
    """Open a socket, send the request head and the first `send_bytes` of the body; return the socket."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    head = f"POST {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    head += f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    s.sendall(head.encode() + body[:send_bytes])
    return s


def abort(s):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.close()


@pytest.mark.parametrize("phase", ["request-body", "awaiting-headers", "mid-stream"])
def test_client_abort(gw, phase):
    gw.reset()
    before = stats(gw)
    fx = fixture(STREAM)
    body = json.dumps(fx["request"]).encode()
    h = {**ANTHROPIC, "x-mock-fixture": STREAM}
    if phase == "request-body":
        s = raw_request(gw.port, fx["path"], body, h, len(body) // 2)
        time.sleep(0.3)
        abort(s)
    elif phase == "awaiting-headers":
        s = raw_request(gw.port, fx["path"], body, {**h, "x-mock-wait-ms": "1500"}, len(body))
        deadline = time.time() + 10
        while not gw.provider_requests() and time.time() < deadline:
            time.sleep(0.02)
        abort(s)
    else:
        s = raw_request(gw.port, fx["path"], body, {**h, "x-mock-chunk": "400", "x-mock-stall-ms": "3000"}, len(body))
        got = b""
        while b"message_start" not in got or b"content_block_start" not in got:
            got += s.recv(4096)
        abort(s)
    span, s2 = one_span(gw, before.get("calls", 0))
    a = span["attributes"]
    assert s2["calls_failed"] == before.get("calls_failed", 0) + 1
    if phase == "request-body":
        # Headers go upstream at once (as without tollgate); the body never completes there.
        assert all(len(base64.b64decode(r["body_base64"])) < len(body) for r in gw.provider_requests())
        assert a["error.type"] == "no_response"
    elif phase == "awaiting-headers":
        assert a["error.type"] == "no_response"
        assert "gen_ai.usage.input_tokens" not in a
    else:
        assert a["error.type"] == "stream_interrupted"
        assert a["tollgate.usage.partial"] is True
        assert a["gen_ai.usage.input_tokens"] == 2095


# --- workers and load ----------------------------------------------------------------------------------


def mixed_requests(n):
    """(path, body, headers, expected bytes) for n requests mixing JSON and streams, plain and compressed."""
    names = [JSON, STREAM, "openai/chat-stream", "gemini/stream-sse-thoughts", "bedrock/converse-stream",
             "ollama/chat-stream-tool-call"]
    out = []
    for i in range(n):
        name = names[i % len(names)]
        fx = fixture(name)
        h = {"host": fx["host"], "x-mock-fixture": name}
        if name == STREAM:
            h["anthropic-version"] = "2023-06-01"
        if i % 3 == 1:
            h["x-mock-chunk"] = "37"
        out.append((fx["path"], fx["request"], h, mock_provider.fixture_body(fx)))
    return out


def run_concurrently(t, reqs, threads=8):
    results = [None] * len(reqs)

    def work(k):
        for i in range(k, len(reqs), threads):
            path, body, h, _ = reqs[i]
            results[i] = fetch(t.port, path, body, h)

    ts = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for th in ts:
        th.start()
    for th in ts:
        th.join()
    return results


@pytest.mark.parametrize("workers", [1, 4])
def test_worker_counts_account_every_call_once(topology, workers):
    t = topology(concurrency=workers)
    reqs = mixed_requests(60)
    results = run_concurrently(t, reqs)
    for (path, body, h, want), got in zip(reqs, results):
        assert got == (200, want, True), path
    s = wait_stat(t, "calls", 60)
    spans = t.wait_spans(60)
    time.sleep(0.5)
    assert len(t.spans()) == 60 and s["calls"] == 60
    assert len({sp["span_id"] for sp in spans}) == 60
    assert gateway.get_json(t.provider.port, "/__count") == 60
    assert s.get("calls_failed", 0) == 0
    # One VM per worker, each with its own service.instance.id.
    instances = {sp["resource"]["service.instance.id"] for sp in spans}
    assert 1 <= len(instances) <= workers


# --- hot reload ----------------------------------------------------------------------------------------


def envoy_stat(t, name):
    return t.envoy.stats(name).get(name, 0)


def test_hot_reload_while_traffic_flows():
    t = gateway.lds_topology(gateway.default_plugin_config()).start()
    try:
        stop = threading.Event()
        failures, done = [], [0]
        fx = fixture(JSON)
        want = mock_provider.fixture_body(fx)

        def traffic():
            while not stop.is_set():
                r = fetch(t.port, fx["path"], fx["request"], {**OPENAI, "x-mock-fixture": JSON})
                if r != (200, want, True):
                    failures.append(r)
                done[0] += 1

        ths = [threading.Thread(target=traffic) for _ in range(4)]
        for th in ths:
            th.start()
        time.sleep(1)
        v2 = gateway.default_plugin_config()
        v2["service_name"] = "tollgate-v2"
        ok_before = envoy_stat(t, "listener_manager.lds.update_success")
        gateway.write_lds(t, v2)
        deadline = time.time() + 20
        while time.time() < deadline and not any(
                s["resource"]["service.name"] == "tollgate-v2" for s in t.spans()):
            time.sleep(0.1)
        assert any(s["resource"]["service.name"] == "tollgate-v2" for s in t.spans()), "new config in effect"
        assert envoy_stat(t, "listener_manager.lds.update_success") > ok_before
        # An invalid plugin JSON is rejected: the update fails, the running config keeps serving.
        rejected = envoy_stat(t, "listener_manager.lds.update_rejected")
        bad = gateway.default_plugin_config()
        bad["otlp"]["timeout_ms"] = "soon"
        gateway.write_lds(t, bad)
        deadline = time.time() + 20
        while time.time() < deadline and envoy_stat(t, "listener_manager.lds.update_rejected") == rejected:
            time.sleep(0.1)
        assert envoy_stat(t, "listener_manager.lds.update_rejected") == rejected + 1
        assert "otlp.timeout_ms" in t.envoy.log()
        time.sleep(1)
        stop.set()
        for th in ths:
            th.join()
        assert failures == [], f"{len(failures)} of {done[0]} requests broke during reloads"
        assert done[0] > 20
        total = wait_stat(t, "calls", done[0])["calls"]
        assert total == done[0], "every call counted once across the reload"
        assert gateway.get_json(t.provider.port, "/__count") == done[0]
    finally:
        t.stop()
