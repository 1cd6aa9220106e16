"""The first slice through real Envoy: an OpenAI chat completion becomes one OTLP span with the semconv
attributes, and the client receives exactly the provider's bytes."""

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "testenv"))

import mock_provider  # noqa: E402

import pytest  # noqa: E402

pytestmark = pytest.mark.usefixtures("build")  # every test runs against both builds (conftest.py)

FIXTURE = "openai/chat-json"


def test_chat_completion_span_and_bytes(gw):
    gw.reset()
    fx = mock_provider.load_fixture(FIXTURE)
    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    status, headers, body = gw.call(
        "/v1/chat/completions", fx["request"],
        {"host": "api.openai.com", "x-mock-fixture": FIXTURE, "traceparent": tp, "x-conversation-id": "conv-42"})
    assert status == 200
    assert body == mock_provider.fixture_body(fx), "client must receive the provider's bytes unchanged"

    [span] = gw.wait_spans(1)
    a = span["attributes"]
    assert span["name"] == "chat gpt-4o"
    assert span["kind"] == 3  # SPAN_KIND_CLIENT
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.request.model"] == "gpt-4o"
    assert a["gen_ai.request.temperature"] == 0.7
    assert a["gen_ai.request.top_p"] == 0.9
    assert a["gen_ai.request.max_tokens"] == 100
    assert a["gen_ai.response.id"] == "chatcmpl-abc123"
    assert a["gen_ai.response.model"] == "gpt-4o-2024-08-06"
    assert a["gen_ai.response.finish_reasons"] == ["stop"]
    assert a["gen_ai.usage.input_tokens"] == 19
    assert a["gen_ai.usage.output_tokens"] == 10
    assert a["gen_ai.conversation.id"] == "conv-42"
    assert a["server.address"] == "api.openai.com"
    assert a["server.port"] == 443
    assert a["http.response.status_code"] == 200
    assert "error.type" not in a
    assert span["resource"]["service.name"] == "tollgate"
    assert span["resource"]["service.instance.id"]
    # Trace context: the gateway span continues the caller's trace, and the provider got a traceparent
    # naming the gateway span as its parent.
    assert span["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert span["parent_span_id"] == "00f067aa0ba902b7"
    [req] = gw.provider_requests()
    assert req["headers"]["traceparent"] == f"00-{span['trace_id']}-{span['span_id']}-01"
    assert json.loads(req["body"]) == fx["request"], "the request body reaches the provider unchanged"


def test_non_llm_traffic_is_ignored(gw):
    gw.reset()
    status, _, _ = gw.call("/healthz", None, {"host": "example.com"}, method="GET")
    assert status == 404  # the mock's answer, passed through
    status, _, _ = gw.call("/v1/chat/completions", {"model": "x"}, {"host": "api.openai.com"})
    assert status == 200
    spans = gw.wait_spans(1)
    assert len(spans) == 1, "only the LLM call produces a span"


def test_invalid_plugin_config_is_rejected(topology):
    import pytest

    with pytest.raises(RuntimeError) as err:
        topology({"otlp": {"cluster": "otel_collector", "timeout_ms": "soon"}})
    assert "otlp.timeout_ms" in str(err.value), "the log names the bad key"
