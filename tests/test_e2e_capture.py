"""Content capture through real Envoy: semconv-shaped input/output/system attributes, reconstructed from
streams, redacted before export (a planted secret appears in no exported byte), size-capped with a marker."""

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "testenv"))

import mock_provider  # noqa: E402
from gateway import default_plugin_config, get_json  # noqa: E402

import pytest  # noqa: E402

pytestmark = pytest.mark.usefixtures("build")  # every test runs against both builds (conftest.py)

HERE = os.path.dirname(os.path.abspath(__file__))
FX = os.path.relpath(os.path.join(HERE, "fixtures", "redaction"), mock_provider.FIXTURES)
AWS = "AKIAIOSFODNN7EXAMPLE"
EMAIL = "planted.person@example.net"


def capture_config(**extra):
    cfg = default_plugin_config()
    cfg["capture_content"] = True
    cfg.update(extra)
    return cfg


def raw_exports(t):
    return b"".join(bytes.fromhex(h) for h in get_json(t.collector.port, "/__raw"))


def test_streamed_call_is_captured_and_redacted(topology):
    t = topology(capture_config())
    name = "openai-stream-pii"
    fx = mock_provider.load_fixture(os.path.join(FX, name))
    req = dict(fx["request"])
    req["messages"] = [{"role": "system", "content": "You are a helpful assistant."},
                       {"role": "user", "content": f"My key is {AWS}, mail me at {EMAIL}"}]
    status, _, got = t.call(fx["path"], req, {"host": fx["host"], "x-mock-fixture": os.path.join(FX, name),
                                              "x-mock-chunk": "7", "x-conversation-id": EMAIL})
    assert status == 200
    assert got == mock_provider.fixture_body(fx), "capture never changes what the client receives"
    [span] = t.wait_spans(1)
    a = span["attributes"]
    inp = json.loads(a["gen_ai.input.messages"])
    assert inp[0] == {"role": "system", "parts": [{"type": "text", "content": "You are a helpful assistant."}]}
    assert inp[1]["role"] == "user"
    assert inp[1]["parts"][0]["content"] == "My key is [REDACTED:AWS_ACCESS_KEY], mail me at [REDACTED:EMAIL]"
    out = json.loads(a["gen_ai.output.messages"])
    assert len(out) == 1 and out[0]["role"] == "assistant" and out[0]["finish_reason"] == "stop"
    text = out[0]["parts"][0]["content"]
    assert text == ("Sure. The address on file is [REDACTED:EMAIL] and the key is [REDACTED:OPENAI_KEY]"
                    " — rotate it."), "reassembled from the stream's deltas, then redacted"
    assert a["gen_ai.conversation.id"] == "[REDACTED:EMAIL]", "other user-text attributes are scrubbed too"
    assert a["tollgate.redaction.count"] == 4
    assert a["tollgate.redaction.types"] == ["aws_access_key", "email", "openai_key"]
    raw = raw_exports(t)
    assert raw, "the receiver kept the exported bytes"
    for secret in [AWS, EMAIL] + fx["secrets"]:
        assert secret.encode() not in raw, f"{secret} in the exported protobuf"
    stats = t.envoy.stats("tollgate.redaction.detected")
    assert any(k.endswith("detected.email") and v == 2 for k, v in stats.items()), stats


def test_system_instructions_and_tool_calls(topology):
    t = topology(capture_config())
    fx = mock_provider.load_fixture("anthropic/messages-json")
    req = dict(fx["request"])
    req["system"] = [{"type": "text", "text": "Only answer about billing."}]
    status, _, _ = t.call(fx["path"], req, {"host": fx["host"], "x-mock-fixture": "anthropic/messages-json"})
    assert status == 200
    [span] = t.wait_spans(1)
    a = span["attributes"]
    assert json.loads(a["gen_ai.system_instructions"]) == [{"type": "text", "content": "Only answer about billing."}]
    assert json.loads(a["gen_ai.input.messages"]) == [{"role": "user", "parts": [{"type": "text", "content": "Say hi"}]}]
    assert json.loads(a["gen_ai.output.messages"]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": "Hi!"}], "finish_reason": "end_turn"}]
    assert a["tollgate.redaction.count"] == 0


def test_size_cap_marks_truncation(topology):
    t = topology(capture_config(max_content_bytes=200))
    long = "lorem ipsum " * 100
    status, _, _ = t.call("/v1/chat/completions",
                          {"model": "gpt-4o", "messages": [{"role": "user", "content": long},
                                                           {"role": "user", "content": "second"}]},
                          {"host": "api.openai.com"})
    assert status == 200
    [span] = t.wait_spans(1)
    a = span["attributes"]
    inp = json.loads(a["gen_ai.input.messages"])
    content = inp[0]["parts"][0]["content"]
    assert content.endswith("…[truncated]") and len(content.encode()) < 200 + 20
    assert len(inp) == 1, "messages after the cap are dropped"
    assert a["tollgate.content.truncated"] is True


def test_capture_off_exports_no_content(topology):
    t = topology(default_plugin_config())
    t.call("/v1/chat/completions", {"model": "gpt-4o", "messages": [{"role": "user", "content": f"hi {EMAIL}"}]},
           {"host": "api.openai.com"})
    [span] = t.wait_spans(1)
    a = span["attributes"]
    assert not any(k.startswith("gen_ai.input") or k.startswith("gen_ai.output.messages") for k in a)
    assert "tollgate.redaction.count" not in a, "no redaction work unless configured or capturing"
