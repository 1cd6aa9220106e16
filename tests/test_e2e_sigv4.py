"""Signed requests through real Envoy: botocore (the official AWS SDK core) signs Bedrock calls with SigV4, and
a mock Bedrock Runtime that recomputes the signature as AWS does (testenv/sigv4_mock.py) answers 403
SignatureDoesNotMatch to any request the gateway broke.

For Converse, ConverseStream, InvokeModel and InvokeModelWithResponseStream, with each feature that rewrites
requests on (clamp_max_tokens, redaction.egress; include_usage is on by default and does not apply to Bedrock),
no signed request reaches the provider with an invalid signature: tollgate changes neither its body nor a
header it signs (not even a `traceparent` the app set and signed), refuses it in Bedrock's dialect when egress
redaction would have had to change it (`signed_requests: refuse`, the default), or forwards it unchanged,
flagged and counted (`forward`).

The re-signing deployment: Envoy's `aws_request_signing` after tollgate, with the gateway's own credentials;
tollgate (`signed_requests: resign`) rewrites freely, and the provider verifies the gateway's signature.

Apps reach the gateway as docs/wire.md says: `http://` endpoint URL with the provider's host, HTTP_PROXY
pointing at the gateway."""

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "testenv"))

import sigv4_mock  # noqa: E402
from gateway import Background, Topology, default_plugin_config, wait_for  # noqa: E402

botocore = pytest.importorskip("botocore")
import botocore.auth  # noqa: E402
import botocore.session  # noqa: E402
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

pytestmark = pytest.mark.usefixtures("build")  # every test runs against both builds (conftest.py)

APP_KEY, APP_SECRET = "AKIDAPPEXAMPLE0001", "app/secret/known/to/the/test/only/0001"
GW_KEY, GW_SECRET = "AKIDGATEWAYEXAMPLE1", "gateway/secret/known/to/the/test/0002"
ENDPOINT = "http://bedrock-runtime.us-east-1.amazonaws.com"
CLAUDE = "anthropic.claude-3-7-sonnet-20250219-v1:0"
EMAIL = "jane.roe@example.com"
OPS = ["converse", "converse_stream", "invoke_model", "invoke_model_with_response_stream"]


def client(gw, monkeypatch, key=APP_KEY, secret=APP_SECRET, unsigned=False, traceparent=None,
           sign_traceparent=False):
    """A bedrock-runtime client of the app. `traceparent`: the app's instrumentation sets one before the SDK
    signs; `sign_traceparent`: the SDK signs it (current botocore leaves `traceparent` out of SignedHeaders,
    some SDKs sign every header they send: modelled by taking it off botocore's list of unsigned headers)."""
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{gw.port}")
    monkeypatch.setenv("NO_PROXY", "")
    if sign_traceparent:
        monkeypatch.setattr(botocore.auth, "SIGNED_HEADERS_BLACKLIST",
                            [h for h in botocore.auth.SIGNED_HEADERS_BLACKLIST if h != "traceparent"])
    session = botocore.session.get_session()
    cfg = Config(retries={"max_attempts": 1, "mode": "standard"},
                 signature_version=botocore.UNSIGNED if unsigned else None)
    c = session.create_client("bedrock-runtime", region_name="us-east-1", endpoint_url=ENDPOINT,
                              aws_access_key_id=key, aws_secret_access_key=secret, config=cfg)
    if traceparent:
        # An instrumented app sets `traceparent` before the SDK signs: botocore then signs it too.
        def add(request, **_):
            request.headers["traceparent"] = traceparent
        c.meta.events.register_first("before-sign.bedrock-runtime.*", add)
    return c


def call(c, op, text="hi", max_tokens=None):
    """One Bedrock call; returns the text or event count it produced (the SDK parsed the answer)."""
    messages = [{"role": "user", "content": [{"text": text}]}]
    if op in ("converse", "converse_stream"):
        kw = {"modelId": CLAUDE, "messages": messages}
        if max_tokens:
            kw["inferenceConfig"] = {"maxTokens": max_tokens}
        r = getattr(c, op)(**kw)
        if op == "converse":
            return r["output"]["message"]["content"]
        return [e for e in r["stream"]]
    body = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": max_tokens or 300,
            "messages": [{"role": "user", "content": text}]}
    if op == "invoke_model":
        r = c.invoke_model(modelId=CLAUDE, body=json.dumps(body))
        return json.loads(r["body"].read())
    r = c.invoke_model_with_response_stream(modelId=CLAUDE, body=json.dumps(body))
    return [e for e in r["body"]]


@pytest.fixture
def provider():
    p = Background(sigv4_mock.make_server({APP_KEY: APP_SECRET, GW_KEY: GW_SECRET}))
    yield p
    p.stop()


def gateway(provider, extra, **kw):
    cfg = default_plugin_config()
    cfg.update(extra)
    return Topology(cfg, provider=provider, **kw)


def signatures(t):
    return [r["signature"] for r in t.provider_requests()]


def stat(t, name):
    return t.envoy.stat("tollgate." + name)


CLAMP = {"tenant": {"header": "x-tenant-id", "default": "apps"},
         "budgets": {"rules": [{"tenant": "*", "window": "30d", "tokens": 10 ** 9}],
                     "default_max_output_tokens": 256, "clamp_max_tokens": {"min": 16}}}


APP_TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("signed_traceparent", [False, True], ids=["traceparent-unsigned", "traceparent-signed"])
def test_clamp_never_touches_a_signed_request(provider, monkeypatch, op, signed_traceparent):
    """clamp_max_tokens writes the assumed maximum into a request that declares none: never into a signed
    one. tollgate replaces the app's `traceparent` (the provider's spans become children of the gateway's)
    only when the signature does not cover it."""
    t = gateway(provider, CLAMP).start()
    try:
        c = client(t, monkeypatch, traceparent=APP_TRACEPARENT, sign_traceparent=signed_traceparent)
        assert call(c, op)
        assert signatures(t) == ["valid"]
        [seen] = t.provider_requests()
        assert ("traceparent" in seen["headers"]["authorization"]) == signed_traceparent
        [span] = t.wait_spans(1)
        a = span["attributes"]
        assert a["tollgate.request.signed"] is True
        assert a["tollgate.budget.decision"] == "allowed"
        # The gateway span continues the app's trace either way.
        assert span["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
        if signed_traceparent:
            assert seen["headers"]["traceparent"] == APP_TRACEPARENT
        else:
            assert seen["headers"]["traceparent"] == f"00-{span['trace_id']}-{span['span_id']}-01"
    finally:
        t.stop()


def test_a_signed_request_the_budget_would_clamp_is_refused_not_clamped(provider, monkeypatch):
    cfg = json.loads(json.dumps(CLAMP))
    cfg["budgets"]["rules"][0]["tokens"] = 100_000
    t = gateway(provider, cfg).start()
    try:
        c = client(t, monkeypatch)
        # Declares 500,000 output tokens against a 100,000-token budget: an unsigned request would be clamped;
        # a signed one is reserved at its declared max, so refused.
        with pytest.raises(ClientError) as e:
            call(c, "converse", max_tokens=500_000)
        assert e.value.response["Error"]["Code"] == "ThrottlingException"
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
        assert t.provider_connections() == {"connections": 0, "requests": 0}
    finally:
        t.stop()


@pytest.mark.parametrize("op", OPS)
def test_egress_redaction_refuses_a_signed_request_it_would_change(provider, monkeypatch, op):
    t = gateway(provider, {"redaction": {"egress": True}}).start()
    try:
        c = client(t, monkeypatch)
        with pytest.raises(ClientError) as e:
            call(c, op, text=f"mail {EMAIL}")
        err = e.value.response
        assert err["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert err["Error"]["Code"] == "ValidationException"
        assert "signed" in err["Error"]["Message"] and EMAIL not in err["Error"]["Message"]
        assert t.provider_connections() == {"connections": 0, "requests": 0}
        wait_for(lambda: stat(t, "signed.refused") == 1, "the refusal counted")
        # Nothing to redact: forwarded untouched, the signature holds.
        assert call(c, op, text="what is the capital of France?")
        assert signatures(t) == ["valid"]
    finally:
        t.stop()


@pytest.mark.parametrize("op", OPS)
def test_signed_requests_forward_leaves_them_unchanged_and_flags_them(provider, monkeypatch, op):
    t = gateway(provider, {"redaction": {"egress": True}, "signed_requests": "forward"}).start()
    try:
        c = client(t, monkeypatch)
        assert call(c, op, text=f"mail {EMAIL}")
        [seen] = t.provider_requests()
        assert seen["signature"] == "valid" and EMAIL in seen["body"]
        [span] = t.wait_spans(1)
        a = span["attributes"]
        assert a["tollgate.request.signed"] is True and a["tollgate.request.unmodified"] == "signed"
        assert a["tollgate.redaction.types"] == ["email"]
        assert stat(t, "signed.unmodified") == 1
    finally:
        t.stop()


SIGNING_FILTER = """          - name: envoy.filters.http.aws_request_signing
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.aws_request_signing.v3.AwsRequestSigning
              service_name: bedrock
              region: us-east-1
              use_unsigned_payload: false
              credential_provider:
                inline_credential: {access_key_id: %s, secret_access_key: %s}
""" % (GW_KEY, GW_SECRET)


def resigning_gateway(provider):
    """tollgate, then Envoy's aws_request_signing with the gateway's credentials, then the router."""
    cfg = {**CLAMP, "redaction": {"egress": True}, "signed_requests": "resign"}
    t = gateway(provider, cfg)
    with open(t.envoy.config_path, encoding="utf-8") as f:
        yaml = f.read()
    router = "          - name: envoy.filters.http.router\n"
    assert yaml.count(router) == 1
    with open(t.envoy.config_path, "w", encoding="utf-8") as f:
        f.write(yaml.replace(router, SIGNING_FILTER + router))
    return t.start()


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("app", ["unsigned", "signed-by-app"])
def test_resigning_gateway_rewrites_and_the_provider_verifies_its_signature(provider, monkeypatch, op, app):
    t = resigning_gateway(provider)
    try:
        c = client(t, monkeypatch, unsigned=app == "unsigned")
        assert call(c, op, text=f"mail {EMAIL}")
        [seen] = t.provider_requests()
        assert seen["signature"] == "valid", seen["reason"]
        assert GW_KEY in seen["headers"]["authorization"]
        body = json.loads(seen["body"])
        assert EMAIL not in seen["body"] and "[REDACTED:EMAIL]" in seen["body"]
        if op in ("converse", "converse_stream"):
            # No maximum declared: tollgate wrote the reserved default, and the gateway signed that body.
            assert body["inferenceConfig"]["maxTokens"] == 256
        [span] = t.wait_spans(1)
        assert "tollgate.request.signed" not in span["attributes"]
    finally:
        t.stop()


def test_the_verifier_refuses_what_the_gateway_would_break(provider, monkeypatch):
    """The mock is not a mock that accepts anything: the same call made through a gateway that rewrites signed
    requests (`signed_requests: resign` without a signing filter) is answered 403 SignatureDoesNotMatch."""
    t = gateway(provider, {**CLAMP, "signed_requests": "resign"}).start()
    try:
        c = client(t, monkeypatch)
        with pytest.raises(ClientError) as e:
            call(c, "converse")
        assert e.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        assert signatures(t) == ["invalid"]
    finally:
        t.stop()


def test_verifier_matches_aws_documented_example():
    """AWS's published SigV4 example (IAM ListUsers, AKIDEXAMPLE, 20150830T123600Z), independently of botocore."""
    headers = {"content-type": ["application/x-www-form-urlencoded; charset=utf-8"],
               "host": ["iam.amazonaws.com"], "x-amz-date": ["20150830T123600Z"],
               "authorization": ["AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, "
                                 "SignedHeaders=content-type;host;x-amz-date, "
                                 "Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"]}
    secrets = {"AKIDEXAMPLE": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"}
    assert sigv4_mock.verify("GET", "/?Action=ListUsers&Version=2010-05-08", headers, b"", secrets) == (True, "")
    assert not sigv4_mock.verify("GET", "/?Action=ListUsers&Version=2010-05-09", headers, b"", secrets)[0]
    assert not sigv4_mock.verify("GET", "/?Action=ListUsers&Version=2010-05-08", headers, b"x", secrets)[0]
