"""Compression through real Envoy: brotli-compressed responses for the whole fixture corpus, and
compressed REQUEST bodies (gzip, deflate, br) that tollgate decodes into a copy for inspection while the
provider receives the client's original bytes."""

import base64
import gzip
import json
import os
import sys
import zlib

import brotli
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "testenv"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import mock_provider  # noqa: E402
from test_e2e_providers import FIXTURES, check_span, send  # noqa: E402

pytestmark = pytest.mark.usefixtures("build")  # every test runs against both builds (conftest.py)

CODECS = {"gzip": gzip.compress, "deflate": zlib.compress, "br": brotli.compress}


@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_brotli_in_small_chunks(gw, name):
    gw.reset()
    fx, status, headers, got = send(gw, name, {"x-mock-encoding": "br", "x-mock-chunk": "7"})
    assert status == fx["response"].get("status", 200)
    assert headers.get("content-encoding") == "br"
    assert brotli.decompress(got) == mock_provider.fixture_body(fx), "the client gets the provider's br bytes"
    [span] = gw.wait_spans(1)
    check_span(span, fx)


@pytest.mark.parametrize("coding", sorted(CODECS))
def test_compressed_request_body_is_read_and_forwarded_unchanged(gw, coding):
    gw.reset()
    name = "openai/chat-json"
    fx = mock_provider.load_fixture(name)
    raw = CODECS[coding](json.dumps(fx["request"]).encode())
    status, _, body = gw.call(fx["path"], raw, {"host": fx["host"], "x-mock-fixture": name,
                                                "content-encoding": coding})
    assert status == 200 and body == mock_provider.fixture_body(fx)
    [req] = gw.provider_requests()
    assert base64.b64decode(req["body_base64"]) == raw, "the provider gets the original compressed bytes"
    assert req["headers"]["content-encoding"] == coding
    [span] = gw.wait_spans(1)
    check_span(span, fx)  # request attributes (model, temperature, ...) come from the decoded copy


def test_compressed_streaming_request_is_never_rewritten(gw):
    """include_usage injection needs a rewrite; a compressed body is only read, so the stream is left as is."""
    gw.reset()
    body = {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    raw = gzip.compress(json.dumps(body).encode())
    status, _, _ = gw.call("/v1/chat/completions", raw, {"host": "api.openai.com", "content-encoding": "gzip",
                                                         "x-mock-fixture": "openai/chat-stream"})
    assert status == 200
    [req] = gw.provider_requests()
    assert base64.b64decode(req["body_base64"]) == raw
    assert req["headers"].get("content-length") == str(len(raw))
    [span] = gw.wait_spans(1)
    assert span["attributes"]["gen_ai.request.model"] == "gpt-4o"
    assert span["attributes"]["gen_ai.request.stream"] is True


@pytest.mark.parametrize("coding", ["gzip", "zstd"])
def test_undecodable_request_body_passes_uninspected(gw, coding):
    gw.reset()
    before = gw.envoy.stats("tollgate.calls_uninspected")
    before = sum(before.values())
    raw = b"\x1f\x8b\x08\x00garbage-not-a-gzip-stream"
    status, _, _ = gw.call("/v1/chat/completions", raw, {"host": "api.openai.com", "content-encoding": coding,
                                                         "x-mock-fixture": "openai/chat-json"})
    assert status == 200
    [req] = gw.provider_requests()
    assert base64.b64decode(req["body_base64"]) == raw
    [span] = gw.wait_spans(1)
    assert "gen_ai.request.model" not in span["attributes"]
    assert span["attributes"]["gen_ai.usage.input_tokens"] == 19, "the response is still read"
    assert sum(gw.envoy.stats("tollgate.calls_uninspected").values()) == before + 1
