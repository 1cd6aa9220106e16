"""The official SDKs, pointed at the gateway the way the documentation tells users to, get the provider's answers
parsed exactly as without tollgate (JSON and streams), and every call becomes a span.

Apps keep the provider's host in the base URL with `http://` and reach the gateway as an HTTP proxy (in an
Istio mesh the sidecar routes `http://api.openai.com` to the egress gateway the same way); the gateway
originates TLS. Here the gateway routes every host to the local mock provider."""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "testenv"))

import mock_provider  # noqa: E402

pytestmark = pytest.mark.usefixtures("build")  # every test runs against both builds (conftest.py)

openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")


@pytest.fixture
def proxied(gw, monkeypatch):
    """The environment an app in front of the gateway runs with."""
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{gw.port}")
    monkeypatch.setenv("NO_PROXY", "")
    gw.reset()
    return gw


def openai_client(fixture):
    return openai.OpenAI(base_url="http://api.openai.com/v1", api_key="sk-test", max_retries=0,
                         default_headers={"x-mock-fixture": fixture})


def test_openai_sdk_chat_json(proxied):
    fx = mock_provider.load_fixture("openai/chat-json")
    r = openai_client("openai/chat-json").chat.completions.create(**fx["request"])
    assert r.id == "chatcmpl-abc123"
    assert r.choices[0].message.content == "Hello! How can I assist you today?"
    assert r.usage.prompt_tokens == 19 and r.usage.completion_tokens == 10
    [span] = proxied.wait_spans(1)
    a = span["attributes"]
    assert a["server.address"] == "api.openai.com" and a["gen_ai.usage.output_tokens"] == 10


def test_openai_sdk_stream_without_usage(proxied):
    """The SDK streams without asking for usage: the stream it parses has no usage chunk (tollgate hid the
    one it asked for), the text is complete, and the span has the exact usage."""
    fx = mock_provider.load_fixture("openai/chat-stream")
    request = {k: v for k, v in fx["request"].items() if k != "stream_options"}
    chunks = list(openai_client("openai/chat-stream").chat.completions.create(**request))
    assert all(c.usage is None for c in chunks), "the client did not ask for usage and gets none"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    [span] = proxied.wait_spans(1)
    a = span["attributes"]
    assert a["gen_ai.usage.input_tokens"] == 19 and a["gen_ai.usage.output_tokens"] == 10


def test_openai_sdk_sees_provider_errors_as_its_own(proxied):
    fx = mock_provider.load_fixture("openai/chat-error-429")
    with pytest.raises(openai.RateLimitError):
        openai_client("openai/chat-error-429").chat.completions.create(**fx["request"])
    [span] = proxied.wait_spans(1)
    assert span["attributes"]["error.type"]


def core(request):
    """The arguments every SDK version accepts; the fixture's other fields are the mock's business."""
    return {k: request[k] for k in ("model", "max_tokens", "messages", "system") if k in request}


def test_anthropic_sdk_json_and_stream(proxied):
    client = anthropic.Anthropic(base_url="http://api.anthropic.com", api_key="sk-ant-test", max_retries=0)
    fx = mock_provider.load_fixture("anthropic/messages-json")
    m = client.messages.create(**core(fx["request"]), extra_headers={"x-mock-fixture": "anthropic/messages-json"})
    assert m.usage.output_tokens > 0
    fx = mock_provider.load_fixture("anthropic/messages-stream-cache-tools")
    with client.messages.stream(**core(fx["request"]),
                                extra_headers={"x-mock-fixture": "anthropic/messages-stream-cache-tools"}) as s:
        final = s.get_final_message()
    assert final.usage.output_tokens > 0
    spans = proxied.wait_spans(2)
    by_stream = {bool(s["attributes"].get("gen_ai.request.stream", False)): s["attributes"] for s in spans}
    assert set(by_stream) == {False, True}
    assert by_stream[False]["gen_ai.usage.output_tokens"] == m.usage.output_tokens
    assert by_stream[True]["gen_ai.usage.output_tokens"] == final.usage.output_tokens
