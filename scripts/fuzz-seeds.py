#!/usr/bin/env python3
"""Seed corpora for the fuzz targets, from the fixture corpus (testenv/fixtures), the recorded exchanges
(tests/corpus) and the documentation's config examples (README.md, docs/): fuzz/corpus/<target>/<name>.
Each target's input layout is documented in its source file."""

import gzip
import hashlib
import json
import os
import re
import struct
import sys
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "testenv"))

import mock_provider  # noqa: E402

API = ["openai.chat", "openai.responses", "openai.embeddings", "openai.completions", "anthropic.messages",
       "gemini", "bedrock.converse", "bedrock.invoke", "bedrock.embeddings", "cohere.chat", "ollama.chat",
       "ollama.generate"]
FRAMING = {"text/event-stream": 1, "application/x-ndjson": 2, "application/vnd.amazon.eventstream": 4}
MAX = 4000  # keep seeds under libFuzzer's -max_len


def put(target, data):
    d = os.path.join(ROOT, "fuzz", "corpus", target)
    os.makedirs(d, exist_ok=True)
    data = data[:MAX]
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()[:16]), "wb") as f:
        f.write(data)


def corpus_seeds():
    """Seeds from the recorded exchanges (tests/corpus): real bodies of every API, uncompressed ones only."""
    sys.path.insert(0, os.path.join(ROOT, "tests", "corpus"))
    import import_cassettes
    import reader

    framings = {"whole": 0, "sse": 1, "ndjson": 2, "json_array": 3, "eventstream": 4}
    for source in sorted(os.listdir(os.path.join(ROOT, "tests", "corpus"))):
        path = os.path.join(ROOT, "tests", "corpus", source, "exchanges.jsonl.gz")
        if not os.path.exists(path):
            continue
        for n, x in enumerate(import_cassettes.load(path)):
            e = x["expect"]
            if n % 4 or x["response"]["headers"].get("content-encoding") or e["api"] not in API:
                continue
            api = API.index(e["api"])
            body = reader.body_bytes(x["response"])
            put("providers", bytes([api, framings[e["framing"]]]) + body)
            put("providers", bytes([api, 0]) + reader.body_bytes(x["request"]))
            put("lenient", bytes([api, 0 if e["framing"] == "whole" else 1]) + body)
            if e["framing"] == "sse":
                for event, data in reader.sse_events(body.decode("utf-8", "replace"))[:6]:
                    put("skim", bytes([api]) + data.encode())


def main():
    corpus_seeds()
    for root, _, files in os.walk(mock_provider.FIXTURES):
        for fn in sorted(files):
            if not fn.endswith(".json"):
                continue
            name = os.path.relpath(os.path.join(root, fn), mock_provider.FIXTURES)[:-5]
            fx = mock_provider.load_fixture(name)
            body = mock_provider.fixture_body(fx)
            req = fx["request"]
            req = req.encode() if isinstance(req, str) else json.dumps(req).encode()
            api = API.index(fx["api"]) if fx["api"] in API else 0
            ct = fx["response"].get("headers", {}).get("content-type", "").split(";")[0]
            framing = FRAMING.get(ct, 3 if "stream" in name and fx["api"] == "gemini" else 0)
            put("providers", bytes([api, framing]) + body)
            put("providers", bytes([api, 0]) + req)
            put("lenient", bytes([api, framing]) + body)
            put("lenient", bytes([api, 0]) + req)
            # The request skimmer, through the same target (each text is also read as a request body).
            put("skim", bytes([api]) + req)
            if framing == 1:
                for line in body.split(b"\n"):
                    if line.startswith(b"data:"):
                        put("lenient", bytes([api, 0]) + line[5:].strip())
            target = {1: "sse", 2: "ndjson", 3: "json_array", 4: "eventstream"}.get(framing)
            if target:
                put(target, bytes([7]) + body)
            if framing == 1:
                put("sse_edit", bytes([5]) + body)
                # One seed per event for the fast-path target: byte 0 is the API (+0x80: capture on).
                datas = [line[5:].strip() for line in body.split(b"\n") if line.startswith(b"data:")]
                for d in datas:
                    put("skim", bytes([api]) + d)
                # Runs of three consecutive events (0xFF between them): repeated shapes replay a template.
                for i in range(len(datas) - 2):
                    put("skim", bytes([api]) + b"\xff".join(datas[i : i + 3]))
            # Gemini JSON-array elements and Bedrock InvokeModel model events, for the same target.
            if framing == 3:
                for item in json.loads(body):
                    put("skim", bytes([api]) + json.dumps(item).encode())
            for ev in fx["response"].get("eventstream", []):
                if "payload_anthropic_event" in ev:
                    put("skim", bytes([api]) + json.dumps(ev["payload_anthropic_event"]).encode())
            put("redaction", req)
            import brotli

            for sel, packed in [(0, gzip.compress(body)), (1, zlib.compress(body)), (2, brotli.compress(body))]:
                put("inflate", bytes([sel]) + packed)
    for tp in ["00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\ncongo=t61rcWkgMzE,rojo=00f067aa0ba902b7",
               "00-00000000000000000000000000000000-00f067aa0ba902b7-00\n", "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"]:
        put("traceparent", tp.encode())
    # Header maps as proxy-wasm serializes them (count, sizes, NUL-terminated keys and values), and the
    # name=value lines the target also round-trips.
    def header_map(pairs):
        out = struct.pack("<I", len(pairs)) + b"".join(struct.pack("<II", len(k), len(v)) for k, v in pairs)
        return out + b"".join(k + b"\0" + v + b"\0" for k, v in pairs)

    put("headers", header_map([(b":method", b"POST"), (b":authority", b"api.openai.com"),
                               (b":path", b"/v1/chat/completions"), (b"content-type", b"application/json")]))
    put("headers", header_map([(b":status", b"200"), (b"content-encoding", b"br"), (b"x-empty", b"")]))
    put("headers", b":method=POST\ntraceparent=00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\n")
    # Before forwarding: authorization, x-amz-content-sha256 and :path lines (see fuzz/fuzz_targets/wire.rs).
    put("wire", b"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/bedrock/aws4_request, "
                b"SignedHeaders=content-length;content-type;host;x-amz-date, Signature=ab\n\n/model/m/converse")
    put("wire", b"\nUNSIGNED-PAYLOAD\n/model/m/invoke?X-Amz-SignedHeaders=host%3Bx-amz-date&X-Amz-Signature=ab")
    put("wire", b"1048576\n\n/v1/chat/completions")
    docs = [os.path.join(ROOT, "README.md")] + sorted(
        os.path.join(ROOT, "docs", n) for n in os.listdir(os.path.join(ROOT, "docs")) if n.endswith(".md"))
    for path in docs:
        text = open(path, encoding="utf-8").read()
        for block in re.findall(r"```json(?: config)?\n(.*?)```", text, re.S):
            put("config", block.encode())
    import gateway

    put("config", json.dumps(gateway.default_plugin_config()).encode())


if __name__ == "__main__":
    main()
