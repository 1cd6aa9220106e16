"""include_usage: tollgate asks OpenAI-shaped streams for usage on the client's behalf, then hides the extra
usage-only chunk, so the client sees exactly the stream it asked for and the span still has exact usage."""

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "testenv"))

import mock_provider  # noqa: E402

import pytest  # noqa: E402

pytestmark = pytest.mark.usefixtures("build")  # every test runs against both builds (conftest.py)

FIXTURE = "openai/chat-stream"  # a real stream that includes the usage-only chunk before [DONE]


def events(body: bytes):
    return [e for e in body.split(b"\n\n") if e.strip()]


def test_injected_and_hidden(gw):
    gw.reset()
    fx = mock_provider.load_fixture(FIXTURE)
    request = dict(fx["request"])
    del request["stream_options"]  # the client did not ask for usage
    status, headers, got = gw.call(fx["path"], request,
                                   {"host": fx["host"], "x-mock-fixture": FIXTURE, "x-mock-chunk": "7"})
    assert status == 200
    [seen] = gw.provider_requests()
    sent = json.loads(seen["body"])
    assert sent["stream_options"] == {"include_usage": True}, "tollgate asked the provider for usage"
    assert {k: v for k, v in sent.items() if k != "stream_options"} == request, "nothing else changed"
    h = seen["headers"]
    assert "content-length" not in h or h["content-length"] == str(len(seen["body"])), \
        "the upstream framing tells the rewritten size"

    full = mock_provider.fixture_body(fx)
    expected = [e for e in events(full) if b'"choices":[]' not in e]
    assert len(expected) == len(events(full)) - 1
    assert events(got) == expected, "the client sees its stream without the usage-only chunk"
    assert got.endswith(b"data: [DONE]\n\n")

    [span] = gw.wait_spans(1)
    a = span["attributes"]
    assert a["gen_ai.usage.input_tokens"] == 19 and a["gen_ai.usage.output_tokens"] == 10
    assert "tollgate.usage.estimated" not in a


def test_client_that_asked_for_usage_keeps_it(gw):
    gw.reset()
    fx = mock_provider.load_fixture(FIXTURE)
    status, _, got = gw.call(fx["path"], fx["request"], {"host": fx["host"], "x-mock-fixture": FIXTURE})
    assert status == 200 and got == mock_provider.fixture_body(fx)
    [seen] = gw.provider_requests()
    assert json.loads(seen["body"]) == fx["request"]


def test_disabled_by_config(topology):
    from gateway import default_plugin_config

    cfg = default_plugin_config()
    cfg["include_usage"] = False
    t = topology(cfg)
    fx = mock_provider.load_fixture(FIXTURE)
    request = dict(fx["request"])
    del request["stream_options"]
    t.call(fx["path"], request, {"host": fx["host"], "x-mock-fixture": FIXTURE})
    [seen] = t.provider_requests()
    assert json.loads(seen["body"]) == request
