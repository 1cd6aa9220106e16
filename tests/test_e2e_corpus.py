"""The corpus of real recorded exchanges (tests/corpus) through real Envoy with the built module: the replaying
provider (testenv/replay.py) answers each request with its recorded status, headers and body bytes, delivered
in pieces cut where careless readers break (inside multi-byte UTF-8, between CR and LF, inside AWS
event-stream preludes and headers), at random places, in tiny pieces, or whole, one delivery per exchange chosen
from its position. Every span the OTLP receiver decodes must say what the independent reader
(tests/corpus/reader.py) expects: provider, operation, models, exact usage (never estimated where the response
reports it), finish reasons, a complete stream not flagged partial, and a time to first chunk for every stream.
The client must receive the recorded bytes. (Every chunking of every exchange is checked natively by
providers::corpus_real_test; this checks the same through Envoy's own body delivery.)"""

import hashlib
import os
import random
import struct
import sys
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "testenv"))

import replay  # noqa: E402
from gateway import Background, Topology, request  # noqa: E402

import pytest  # noqa: E402

pytestmark = pytest.mark.usefixtures("build")  # every test runs against both builds (conftest.py)

USAGE = {"input": "gen_ai.usage.input_tokens", "output": "gen_ai.usage.output_tokens",
         "cache_read": "gen_ai.usage.cache_read.input_tokens",
         "cache_write": "gen_ai.usage.cache_write.input_tokens",
         "reasoning": "gen_ai.usage.reasoning.output_tokens"}
MAX_PIECES = 48


def hostile(body: bytes, framing: str):
    """Offsets where a reader that decodes per chunk breaks."""
    cuts = [i for i in range(1, len(body))
            if body[i] & 0xC0 == 0x80 or (body[i - 1] == 0x0D and body[i] == 0x0A)]
    if framing == "eventstream":
        at = 0
        while at + 12 <= len(body):
            total, headers = struct.unpack(">II", body[at:at + 8])
            cuts += [at + d for d in (1, 4, 8, 11, 12, 13, 12 + headers // 2, 12 + headers, total - 4)]
            at += max(total, 16)
    return sorted({c for c in cuts if 0 < c < len(body)})


def delivery(n: int, x):
    """How exchange n's body is cut (offsets), chosen from its position: whole, hostile, random or tiny."""
    body = replay.reader.body_bytes(x["response"])
    compressed = bool(x["response"]["headers"].get("content-encoding"))
    mode = n % 4
    rng = random.Random(n)
    if mode == 0 or len(body) < 2:
        return []
    if mode == 1 and not compressed:
        cuts = hostile(body, x["expect"]["framing"])
        if len(cuts) > MAX_PIECES:
            cuts = [cuts[i * len(cuts) // MAX_PIECES] for i in range(MAX_PIECES)]
        if cuts:
            return cuts
    if mode == 3:
        return list(range(1, min(len(body), MAX_PIECES + 1)))
    return sorted(rng.sample(range(1, len(body)), min(MAX_PIECES, len(body) - 1)))


def trace_id(xid: str) -> str:
    return hashlib.sha256(xid.encode()).hexdigest()[:32]


def problems(x, span):
    e, attrs = x["expect"], span["attributes"]
    out = []

    def want(key, value):
        got = attrs.get(key)
        if value is None or value == []:
            if key in attrs:
                out.append(f"{key}: expected absent, got {got!r}")
        elif got != value:
            out.append(f"{key}: got {got!r}, want {value!r}")

    want("gen_ai.provider.name", e["provider"])
    want("gen_ai.operation.name", e["operation"])
    want("gen_ai.request.model", e["request_model"])
    want("gen_ai.response.model", e["response_model"])
    want("http.response.status_code", e["status"])
    want("gen_ai.response.finish_reasons", e["finish_reasons"])
    u = e["usage"]
    reported = u["input"] is not None or u["output"] is not None
    estimated = attrs.get("tollgate.usage.estimated") is True
    if reported and estimated:
        out.append("usage estimated although the response reports it")
    for name, key in USAGE.items():
        if estimated and name in ("input", "output"):
            continue  # no usage reported: tollgate estimates and says so
        want(key, u[name])
    if e["framing"] != "whole":
        partial = attrs.get("tollgate.usage.partial") is True
        if partial == e["complete"]:
            out.append(f"tollgate.usage.partial={partial} for a stream complete={e['complete']}")
        if ("gen_ai.response.time_to_first_chunk" in attrs) != (e["frames"] > 0):
            out.append(f"time_to_first_chunk present={'gen_ai.response.time_to_first_chunk' in attrs}, "
                       f"frames={e['frames']}")
    return out


def test_every_recorded_exchange_through_envoy():
    exchanges = [(source, n, x) for source, xs in replay.corpus().items() for n, x in enumerate(xs)]
    assert len(exchanges) >= 3000
    topo = Topology(provider=Background(replay.make_server())).start()
    try:
        def send(item):
            source, n, x = item
            cuts = delivery(n, x)
            headers = {"host": x["host"], "x-replay": f"{source}:{n}",
                       "traceparent": f"00-{trace_id(x['id'])}-00f067aa0ba902b7-01",
                       "x-replay-cuts": ",".join(map(str, cuts)), "x-replay-pause-ms": "1"}
            status, resp_headers, got = request(topo.port, x["path"], replay.reader.body_bytes(x["request"]),
                                                headers, method=x["method"], timeout=60)
            return source, n, status, got

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(send, exchanges))
        sent = {r["headers"].get("x-replay"): r for r in topo.provider_requests()}
        by_trace = {}
        topo.wait_spans(len(exchanges), timeout=120)
        for s in topo.spans():
            by_trace[s["trace_id"]] = s
    finally:
        topo.stop()

    report = []
    for (source, n, x), (_, _, status, got) in zip(exchanges, answers):
        issues = []
        if status != x["expect"]["status"]:
            issues.append(f"status {status}")
        # The client gets the recorded bytes, unless tollgate asked the stream for usage (then it removes the
        # usage-only chunk it added).
        upstream = sent.get(f"{source}:{n}", {}).get("body")
        if upstream == replay.reader.body_bytes(x["request"]).decode("utf-8", "replace") \
                and got != replay.reader.body_bytes(x["response"]):
            issues.append("the client did not receive the recorded body")
        span = by_trace.get(trace_id(x["id"]))
        if span is None:
            issues.append("no span")
        else:
            issues += problems(x, span)
        if issues:
            report.append(f"{x['id']} ({len(delivery(n, x)) + 1} pieces): " + "; ".join(issues))
    assert not report, f"{len(report)} of {len(exchanges)} exchanges:\n" + "\n".join(report[:40])
