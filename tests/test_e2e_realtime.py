"""Realtime WebSocket sessions through real Envoy (upgrade_configs websocket): the official `openai` SDK's
realtime client against a mock OpenAI Realtime server with real RFC 6455 framing, frames written in pieces
of 1 to 7 bytes in both directions; the OTLP receiver decodes the session span and one span per response;
a spent budget is answered in-band with the API's own error event and the socket stays open."""

import asyncio
import base64
import json
import os
import random
import socket
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "testenv"))

from gateway import default_plugin_config, get_json, wait_for  # noqa: E402
from realtime_server import MODEL, RealtimeServer, masked  # noqa: E402

from openai import AsyncOpenAI  # noqa: E402

TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def config(**extra):
    cfg = default_plugin_config()
    cfg["tenant"] = {"header": "x-tenant-id", "default": "anonymous"}
    cfg["otlp"]["metrics_interval_ms"] = 300
    cfg.update(extra)
    return cfg


def stats(t):
    return {k.rsplit("tollgate.", 1)[-1]: v for k, v in t.envoy.stats("tollgate.").items()}


async def session(t, responses=1, headers=None, after=None):
    """One SDK session: `responses` response.create round trips; the events the client received."""
    client = AsyncOpenAI(api_key="sk-test", base_url=f"http://127.0.0.1:{t.port}/v1", max_retries=0)
    got = []
    h = {"x-tenant-id": "team-a"}
    h.update(headers or {})
    async with client.realtime.connect(model="gpt-realtime", extra_headers=h) as conn:
        for _ in range(responses):
            await conn.conversation.item.create(item={"type": "message", "role": "user",
                                                      "content": [{"type": "input_text", "text": "hi"}]})
            await conn.response.create()
            async for event in conn:
                got.append(event)
                if event.type in ("response.done", "error"):
                    break
        if after:
            await after(conn, got)
    return got


def test_sdk_session_spans_each_response_under_the_session(topology):
    server = RealtimeServer(chunked=True)
    t = topology(config(), provider=server)
    got = asyncio.run(session(t, responses=2, headers={"traceparent": TP}))
    done = [e for e in got if e.type == "response.done"]
    assert len(done) == 2 and done[0].response.usage.total_tokens == 253
    assert len([e for e in got if e.type == "response.output_audio.delta"]) == 6, "every frame reached the client"
    # The deflate offer the SDK's websockets client makes was removed before the server saw it.
    assert "sec-websocket-extensions" not in server.handshakes[0]["headers"]
    spans = t.wait_spans(3)
    by_name = {}
    for s in spans:
        by_name.setdefault(s["name"], []).append(s)
    sess = by_name[f"realtime_session {MODEL}"][0]
    resp = by_name[f"realtime_inference {MODEL}"]
    assert len(resp) == 2
    for r in resp:
        a = r["attributes"]
        assert r["parent_span_id"] == sess["span_id"] and r["trace_id"] == sess["trace_id"]
        assert a["gen_ai.operation.name"] == "realtime_inference"
        assert a["gen_ai.provider.name"] == "openai"
        assert a["gen_ai.realtime_session.id"] == "sess_e2e"
        assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (140, 113)
        assert a["gen_ai.usage.audio.output_tokens"] == 88 and a["gen_ai.usage.text.input_tokens"] == 120
        assert a["gen_ai.usage.cache_read.input_tokens"] == 64
        assert a["gen_ai.response.finish_reasons"] == ["stop"]
        assert a["tollgate.tenant"] == "team-a"
    a = sess["attributes"]
    assert sess["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (280, 226)
    assert a["tollgate.realtime.responses"] == 2
    assert a["network.protocol.name"] == "websocket"
    assert "tollgate.usage.partial" not in a and "error.type" not in a
    assert stats(t).get("realtime.sessions") == 1 and stats(t).get("realtime.responses") == 2

    def usage_points():
        pts = get_json(t.collector.port, "/__points")
        pts = [p for p in pts if p["name"] == "gen_ai.client.token.usage"
               and p["attributes"].get("gen_ai.operation.name") == "realtime_inference"]
        return pts if sum(p["count"] for p in pts) >= 4 else None

    pts = wait_for(usage_points, "realtime token usage metrics")
    by_type = {}
    for p in pts:
        by_type[p["attributes"]["gen_ai.token.type"]] = by_type.get(p["attributes"]["gen_ai.token.type"], 0) + p["sum"]
    assert by_type == {"input": 280, "output": 226}


def test_client_frames_cut_into_1_to_7_byte_pieces_are_read(topology):
    server = RealtimeServer(chunked=True)
    t = topology(config(), provider=server)
    s = socket.create_connection(("127.0.0.1", t.port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET /v1/realtime?model=gpt-realtime HTTP/1.1\r\nHost: api.openai.com\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
               f"x-tenant-id: team-b\r\n\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(4096)
    assert buf.startswith(b"HTTP/1.1 101")
    # A fragmented response.create (two frames), a ping in between, then a close.
    msg = json.dumps({"type": "response.create", "event_id": "c1"}).encode()
    data = masked(1, msg[:10], fin=False) + masked(9, b"p") + masked(0, msg[10:]) + masked(8, b"\x03\xe8")
    i = 0
    while i < len(data):
        n = random.randint(1, 7)
        s.sendall(data[i:i + n])
        i += n
        time.sleep(0.002)
    s.settimeout(10)
    try:
        while s.recv(65536):
            pass
    except OSError:
        pass
    s.close()
    assert [e["type"] for e in server.events()] == ["response.create"]
    spans = t.wait_spans(2)
    (sess,) = [x for x in spans if x["name"].startswith("realtime_session")]
    assert sess["attributes"]["tollgate.realtime.responses"] == 1
    assert sess["attributes"]["tollgate.tenant"] == "team-b"


def test_a_spent_budget_refuses_in_band_and_the_socket_stays_open(topology):
    server = RealtimeServer(chunked=False)
    t = topology(config(budgets={"rules": [{"tenant": "*", "window": "1h", "tokens": 200}]}), provider=server)

    async def after(conn, got):
        # The first response (253 tokens) spent the 200-token budget: the next one is refused in-band.
        await conn.response.create()
        async for event in conn:
            got.append(event)
            if event.type in ("response.done", "error"):
                break
        # The socket is still open: other events still reach the server.
        await conn.conversation.item.create(item={"type": "message", "role": "user",
                                                  "content": [{"type": "input_text", "text": "still here"}]})
        async for event in conn:
            got.append(event)
            if event.type == "conversation.item.added":
                break

    got = asyncio.run(session(t, responses=1, after=after))
    errors = [e for e in got if e.type == "error"]
    assert len(errors) == 1, [e.type for e in got]
    assert errors[0].error.code == "token_budget_exceeded" and errors[0].error.type == "rate_limit_error"
    assert got[-1].type == "conversation.item.added"
    assert len(server.events("response.create")) == 1, "the refused response.create never reached the server"
    assert len(server.events("conversation.item.create")) == 2
    assert stats(t).get("realtime.refused") == 1


GEMINI_PATH = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent?key=test"


async def gemini_turns(t, turns, tenant="team-g"):
    """A Gemini Live session driven by `websockets` (what the google-genai SDK uses): setup, then `turns`
    text turns; the messages received, and the close code when the server side closed."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    got, close = [], None
    async with connect(f"ws://127.0.0.1:{t.port}{GEMINI_PATH}", additional_headers={"x-tenant-id": tenant}) as ws:
        await ws.send(json.dumps({"setup": {"model": "models/gemini-live-2.5-flash-preview"}}))
        got.append(json.loads(await ws.recv()))
        try:
            for i in range(turns):
                await ws.send(json.dumps({"clientContent": {"turns": [{"role": "user", "parts": [{"text": f"hi {i}"}]}],
                                                            "turnComplete": True}}))
                while True:
                    m = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    got.append(m)
                    if m.get("serverContent", {}).get("turnComplete"):
                        break
        except ConnectionClosed as e:
            close = e.rcvd.code if e.rcvd else None
    return got, close


def test_gemini_live_turns_and_a_spent_budget_closing_with_1008(topology):
    server = RealtimeServer(chunked=True, gemini=True)
    t = topology(config(budgets={"rules": [{"tenant": "*", "window": "1h", "tokens": 100}]}), provider=server)
    got, close = asyncio.run(gemini_turns(t, 2))
    assert got[0] == {"setupComplete": {}}
    # 80 tokens a turn against 100: both turns of the first session are admitted (20 left before the
    # second), which spends the budget; the second session's first turn is refused.
    assert close is None and len([m for m in got if "usageMetadata" in m]) == 2
    got, close = asyncio.run(gemini_turns(t, 1))
    assert close == 1008, "a spent budget ends the session as the Live API ends one"
    assert not [m for m in got if "usageMetadata" in m]
    turns = [e for e in server.events() if "clientContent" in e]
    assert len(turns) == 2, "the refused turn never reached the server"
    spans = t.wait_spans(4)
    resp = [s for s in spans if s["name"] == "realtime_inference gemini-live-2.5-flash-preview"]
    assert len(resp) == 2
    a = resp[0]["attributes"]
    assert a["gen_ai.provider.name"] == "gcp.gemini"
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (30, 50)
    assert a["gen_ai.usage.audio.output_tokens"] == 50 and a["gen_ai.usage.text.input_tokens"] == 30
    assert stats(t).get("realtime.refused") == 1
