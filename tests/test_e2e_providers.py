"""Every fixture of the provider corpus through real Envoy: the span carries exactly the attributes the
fixture expects, and the client receives the provider's bytes unchanged — delivered whole, and gzip-compressed
in 5-byte chunks (chunk-boundary and compression safety end to end)."""

import glob
import gzip
import json
import math
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "testenv"))

import mock_provider  # noqa: E402

pytestmark = pytest.mark.usefixtures("build")  # every test runs against both builds (conftest.py)

FIXTURES = sorted(
    os.path.relpath(f, mock_provider.FIXTURES)[:-5]
    for f in glob.glob(os.path.join(mock_provider.FIXTURES, "*", "*.json"))
)
TEST_ONLY = {"tool_calls", "tool_names", "first_content_frame", "stream_finished"}
USAGE_KEYS = {"gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens"}
OPERATIONS = {"openai.chat": "chat", "openai.responses": "chat", "openai.embeddings": "embeddings",
              "openai.completions": "text_completion", "anthropic.messages": "chat", "gemini": "generate_content",
              "bedrock.converse": "chat", "bedrock.invoke": "chat", "cohere.chat": "chat", "ollama.chat": "chat",
              "ollama.generate": "text_completion"}


def same(a, b):
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(a, b, rel_tol=1e-9)
    return a == b


def check_span(span, fx):
    attrs = span["attributes"]
    problems = []
    for key, want in fx["expect"].items():
        if key in TEST_ONLY:
            continue
        if key == "gen_ai.request.choice.count" and want == 1:
            want = None  # semconv: only set when != 1
        if want is None and key in USAGE_KEYS and attrs.get("tollgate.usage.estimated") is True:
            # The provider reported no usage: tollgate estimates from the text and says so.
            if not isinstance(attrs.get(key), int) or attrs[key] <= 0:
                problems.append(f"{key}: estimated value {attrs.get(key)!r} is not a positive count")
            continue
        if want is None or want == []:
            if key in attrs:
                problems.append(f"{key}: expected absent, got {attrs[key]!r}")
        elif key not in attrs:
            problems.append(f"{key}: missing (want {want!r})")
        elif not same(attrs[key], want):
            problems.append(f"{key}: got {attrs[key]!r}, want {want!r}")
    exp = fx["expect"]
    if "tool_calls" in exp:
        got = [[e["attributes"].get("gen_ai.tool.call.id", ""), e["attributes"].get("gen_ai.tool.name", "")]
               for e in span["events"] if e["name"] == "gen_ai.tool.call"]
        if got != (exp["tool_calls"] or []):
            problems.append(f"tool calls: got {got}, want {exp['tool_calls']}")
    if exp.get("tool_names"):
        if attrs.get("tollgate.request.tools") != exp["tool_names"]:
            problems.append(f"tools: got {attrs.get('tollgate.request.tools')}, want {exp['tool_names']}")
    if "first_content_frame" in exp:
        # A streamed fixture: its first event is the first chunk, whatever it says; the first generated
        # content (if any) is the first token.
        if "gen_ai.response.time_to_first_chunk" not in attrs:
            problems.append("time_to_first_chunk missing on a stream")
        has_ttft = "tollgate.response.time_to_first_token" in attrs
        if has_ttft != (exp["first_content_frame"] is not None):
            problems.append(f"time_to_first_token present={has_ttft}, fixture first_content_frame="
                            f"{exp['first_content_frame']}")
    if exp.get("stream_finished") is True and attrs.get("tollgate.usage.partial"):
        problems.append("stream finished but usage marked partial")
    op = OPERATIONS[fx["api"]]
    want_name = f"{op} {exp['gen_ai.request.model']}" if exp.get("gen_ai.request.model") else None
    if want_name and span["name"] != want_name:
        problems.append(f"span name {span['name']!r}, want {want_name!r}")
    assert not problems, fx["name"] + ":\n  " + "\n  ".join(problems)


def send(gw, name, extra=None):
    fx = mock_provider.load_fixture(name)
    req = fx["request"]
    body = req.encode() if isinstance(req, str) else json.dumps(req).encode()
    headers = {"host": fx["host"], "x-mock-fixture": name}
    headers.update(fx.get("request_headers", {}))
    headers.update(extra or {})
    status, resp_headers, got = gw.call(fx["path"], body, headers, method=fx.get("method", "POST"))
    return fx, status, resp_headers, got


@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_whole(gw, name):
    gw.reset()
    fx, status, _, got = send(gw, name)
    assert status == fx["response"].get("status", 200)
    assert got == mock_provider.fixture_body(fx), "client must receive the provider's bytes unchanged"
    [span] = gw.wait_spans(1)
    check_span(span, fx)


@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_gzip_in_small_chunks(gw, name):
    gw.reset()
    fx, status, headers, got = send(gw, name, {"x-mock-gzip": "1", "x-mock-chunk": "5"})
    assert status == fx["response"].get("status", 200)
    assert headers.get("content-encoding") == "gzip"
    assert gzip.decompress(got) == mock_provider.fixture_body(fx)
    [span] = gw.wait_spans(1)
    check_span(span, fx)
