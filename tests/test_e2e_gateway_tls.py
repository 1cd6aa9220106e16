"""envoy/gateway.yaml (and envoy/gateway-native.yaml, the same gateway with the native build) as shipped runs
end to end over real TLS.

The test starts the shipped file with only the substitutions it truly needs to run here:
- the CA bundle (`trusted_ca`): the per-run test CA instead of the system bundle;
- address resolution of the provider clusters: each provider host resolves to the local TLS mock
  (`socket_address` of its endpoint), while SNI, the certificate SAN matcher and host rewriting stay as
  shipped, so the gateway checks the real provider names;
and, because they are the environment rather than the gateway's behaviour, free ports for the listener and
the admin interface, the path of the built module (for the native build: the module directory, in Envoy's
environment), and the OTLP collector's address (the local receiver).
`test_only_environment_was_substituted` checks that nothing else differs from the shipped file.

The mock providers serve TLS with certificates for the real provider host names, issued by a test CA made for
the run (testenv/pki.py); Bedrock requests are checked for a valid SigV4 signature (testenv/sigv4_mock.py).
The official OpenAI and Anthropic Python SDKs and botocore reach the gateway the way docs/wire.md says (the
provider's host with `http://`, the gateway as HTTP proxy). The gateway sends the provider's host as SNI and
refuses a certificate whose SAN does not name it (counted in `cluster.<name>.ssl.fail_verify_san`), or one
from a CA it does not trust (`ssl.fail_verify_error`); spans reach the OTLP receiver; the bytes the SDKs send
and receive are unchanged."""

import copy
import json
import os
import subprocess
import sys
import tempfile
import time

import pytest
import yaml

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "testenv"))

import mock_provider  # noqa: E402
import otlp_receiver  # noqa: E402
import pki  # noqa: E402
import tls_mock  # noqa: E402
from gateway import ROOT, Background, envoy_bin, free_port, get_json, native_path, wait_for, wasm_path  # noqa: E402

openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")
botocore = pytest.importorskip("botocore")
import botocore.session  # noqa: E402
from botocore.config import Config  # noqa: E402
import httpx2 as httpx  # noqa: E402  (the HTTP client the OpenAI and Anthropic SDKs use)

pytestmark = pytest.mark.usefixtures("build")  # every test runs against both builds (conftest.py)

SHIPPED = {"wasm": os.path.join(ROOT, "envoy", "gateway.yaml"),
           "native": os.path.join(ROOT, "envoy", "gateway-native.yaml")}
AWS_KEY, AWS_SECRET = "AKIDAPPTLSEXAMPLE01", "app/tls/secret/known/to/the/test/only"


def walk(tree, path=()):
    """Every leaf of a YAML tree with its path."""
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from walk(v, path + (k,))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            yield from walk(v, path + (i,))
    else:
        yield path, tree


def substitute(tree, ca, mock_port, receiver_port, listen_port, admin_port, module):
    """The shipped config with the substitutions the module docstring lists, and nothing else."""
    t = copy.deepcopy(tree)
    t["admin"]["address"]["socket_address"]["port_value"] = admin_port
    listener = t["static_resources"]["listeners"][0]
    listener["address"]["socket_address"] = {"address": "127.0.0.1", "port_value": listen_port}
    for hcm in listener["filter_chains"][0]["filters"]:
        for f in hcm["typed_config"]["http_filters"]:
            if f["name"] == "envoy.filters.http.wasm":
                f["typed_config"]["config"]["vm_config"]["code"]["local"]["filename"] = module
    for c in t["static_resources"]["clusters"]:
        addr = c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
        if c["name"] == "otel_collector":
            addr.update(address="127.0.0.1", port_value=receiver_port)
            continue
        addr.update(address="127.0.0.1", port_value=mock_port)
        c["transport_socket"]["typed_config"]["common_tls_context"]["validation_context"]["trusted_ca"] = {
            "filename": ca}
    return t


ALLOWED = [
    ("admin", "address", "socket_address", "port_value"),
    ("static_resources", "listeners", 0, "address", "socket_address"),
    ("static_resources", "listeners", 0, "filter_chains", 0, "filters", 0, "typed_config", "http_filters", 0,
     "typed_config", "config", "vm_config", "code", "local", "filename"),
]


def allowed(path):
    if any(path[:len(a)] == a for a in ALLOWED):
        return True
    # Per cluster: its endpoint address, and the CA bundle of its TLS context.
    return (path[:2] == ("static_resources", "clusters") and
            (path[3:8] == ("load_assignment", "endpoints", 0, "lb_endpoints", 0) and "socket_address" in path
             or path[-3:] == ("validation_context", "trusted_ca", "filename")))


class Gateway:
    def __init__(self, build="wasm"):
        self.pki = pki.TestCA()
        self.names = {"api.openai.com", "api.anthropic.com", "bedrock-runtime.us-east-1.amazonaws.com",
                      "generativelanguage.googleapis.com", "my-resource.openai.azure.com", "api.mistral.ai",
                      "api.cohere.com"}
        self.certs = {n: self.pki.issue(dns_names=[n]) for n in sorted(self.names)}
        self.mock = Background(tls_mock.make_server({AWS_KEY: AWS_SECRET}))
        for n, leaf in self.certs.items():
            self.mock.server.serve(n, leaf)
        self.receiver = Background(otlp_receiver.make_server(0))
        self.port, self.admin_port = free_port(), free_port()
        with open(SHIPPED[build], encoding="utf-8") as f:
            self.shipped = yaml.safe_load(f)
        self.config = substitute(self.shipped, self.pki.cert, self.mock.port, self.receiver.port, self.port,
                                 self.admin_port, wasm_path())
        self.dir = tempfile.mkdtemp(prefix="tollgate-gateway-tls-")
        self.path = os.path.join(self.dir, "gateway.yaml")
        with open(self.path, "w", encoding="utf-8") as f:
            yaml.safe_dump(self.config, f)
        self.log_path = os.path.join(self.dir, "envoy.log")
        self.logf = open(self.log_path, "wb")
        env = dict(os.environ)
        if build == "native":
            env["ENVOY_DYNAMIC_MODULES_SEARCH_PATH"] = os.path.dirname(os.path.abspath(native_path()))
        self.proc = subprocess.Popen([envoy_bin(), "-c", self.path, "--concurrency", "2", "-l", "info",
                                      "--base-id", str(self.admin_port), "--disable-hot-restart"],
                                     stdout=self.logf, stderr=subprocess.STDOUT, env=env)
        wait_for(self.ready, "the shipped gateway ready", timeout=60)

    def ready(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"Envoy exited:\n{self.log()[-4000:]}")
        try:
            import http.client
            c = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=2)
            c.request("GET", "/ready")
            return c.getresponse().status == 200
        except OSError:
            return False

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stats(self, prefix):
        import http.client
        c = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=5)
        c.request("GET", "/stats?format=json&filter=" + prefix)
        body = json.loads(c.getresponse().read())
        return {s["name"]: s["value"] for s in body.get("stats", []) if "value" in s}

    def spans(self):
        return get_json(self.receiver.port, "/__spans")

    def provider_requests(self):
        """What the mock recorded, asked over its own TLS (the control requests need no verification)."""
        import http.client
        import ssl
        c = http.client.HTTPSConnection("127.0.0.1", self.mock.port, timeout=10,
                                        context=ssl._create_unverified_context())
        try:
            c.request("GET", "/__requests")
            return json.loads(c.getresponse().read())
        finally:
            c.close()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.logf.close()
        self.mock.stop()
        self.receiver.stop()


@pytest.fixture(scope="module")
def gw(build):
    g = Gateway(build)
    yield g
    g.stop()


@pytest.fixture
def proxied(gw, monkeypatch):
    """The environment the documentation gives an app in front of the gateway (docs/wire.md)."""
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{gw.port}")
    monkeypatch.setenv("NO_PROXY", "")
    return gw


def test_only_environment_was_substituted(gw):
    shipped = dict(walk(gw.shipped))
    running = dict(walk(gw.config))
    changed = {p for p in set(shipped) | set(running) if shipped.get(p) != running.get(p)}
    assert changed and all(allowed(p) for p in changed), sorted(p for p in changed if not allowed(p))
    # What TLS origination rests on is exactly as shipped.
    for c in gw.config["static_resources"]["clusters"]:
        if c["name"] == "otel_collector":
            continue
        tls = c["transport_socket"]["typed_config"]
        host = c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
        assert tls["sni"] in gw.names and host["socket_address"]["address"] == "127.0.0.1"
        assert tls["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"] == [
            {"san_type": "DNS", "matcher": {"exact": tls["sni"]}}]


def recording_client():
    """An httpx client that keeps every request body it sends (the SDKs' own bytes)."""
    sent = []
    return httpx.Client(event_hooks={"request": [lambda r: sent.append(r.read())]}), sent


def test_openai_sdk_over_tls_bytes_unchanged(proxied):
    gw = proxied
    http_client, sent = recording_client()
    client = openai.OpenAI(base_url="http://api.openai.com/v1", api_key="sk-test", max_retries=0,
                           http_client=http_client, default_headers={"x-mock-fixture": "openai/chat-json"})
    fx = mock_provider.load_fixture("openai/chat-json")
    before = len(gw.provider_requests())
    raw = client.chat.completions.with_raw_response.create(**fx["request"])
    assert raw.http_response.content == mock_provider.fixture_body(fx), "the response bytes are the provider's"
    assert raw.parse().usage.completion_tokens == 10
    seen = gw.provider_requests()[before]
    import base64
    assert base64.b64decode(seen["body_base64"]) == sent[-1], "the request bytes are the app's"
    assert seen["headers"]["host"] == "api.openai.com"
    assert "api.openai.com" in gw.mock.server.sni_names()
    wait_for(lambda: [s for s in gw.spans() if s["attributes"].get("server.address") == "api.openai.com"],
             "the span at the collector")


def test_anthropic_sdk_over_tls_stream(proxied):
    gw = proxied
    client = anthropic.Anthropic(base_url="http://api.anthropic.com", api_key="sk-ant-test", max_retries=0)
    fx = mock_provider.load_fixture("anthropic/messages-stream-cache-tools")
    req = {k: fx["request"][k] for k in ("model", "max_tokens", "messages", "system") if k in fx["request"]}
    with client.messages.stream(**req, extra_headers={"x-mock-fixture": "anthropic/messages-stream-cache-tools"}) \
            as s:
        final = s.get_final_message()
    assert final.usage.output_tokens > 0
    assert "api.anthropic.com" in gw.mock.server.sni_names()
    spans = wait_for(lambda: [s for s in gw.spans() if s["attributes"].get("server.address") == "api.anthropic.com"],
                     "the span at the collector")
    assert spans[0]["attributes"]["gen_ai.usage.output_tokens"] == final.usage.output_tokens


def test_botocore_over_tls_signature_holds(proxied):
    gw = proxied
    c = botocore.session.get_session().create_client(
        "bedrock-runtime", region_name="us-east-1", endpoint_url="http://bedrock-runtime.us-east-1.amazonaws.com",
        aws_access_key_id=AWS_KEY, aws_secret_access_key=AWS_SECRET, config=Config(retries={"max_attempts": 1}))
    r = c.converse(modelId="anthropic.claude-3-7-sonnet-20250219-v1:0",
                   messages=[{"role": "user", "content": [{"text": "hi"}]}])
    assert r["output"]["message"]["content"]
    seen = [x for x in gw.provider_requests() if x["headers"].get("host", "").startswith("bedrock-runtime.")]
    assert seen and all(x["signature"] == "valid" for x in seen)
    assert "bedrock-runtime.us-east-1.amazonaws.com" in gw.mock.server.sni_names()
    wait_for(lambda: [s for s in gw.spans() if s["attributes"].get("gen_ai.provider.name") == "aws.bedrock"],
             "the span at the collector")


def post(gw, host, path, fixture=None):
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30)
    headers = {"host": host, "content-type": "application/json"}
    if fixture:
        headers["x-mock-fixture"] = fixture
    try:
        c.request("POST", path, body=json.dumps({"model": "m", "messages": []}), headers=headers)
        return c.getresponse().status
    finally:
        c.close()


# (what is wrong, the Envoy stat counting it, the cluster, its host, a path and fixture of its API). Each case
# uses a cluster no other test has connected to: a pooled connection would skip the handshake.
BAD_CERTS = [("wrong-name", "fail_verify_san", "mistral", "api.mistral.ai", "/v1/chat/completions",
              "mistral/chat-json"),
             ("untrusted-ca", "fail_verify_error", "cohere", "api.cohere.com", "/v2/chat", "cohere/chat-json")]


@pytest.mark.parametrize("bad,stat,cluster,name,path,fixture", BAD_CERTS, ids=[b[0] for b in BAD_CERTS])
def test_a_certificate_the_gateway_must_not_trust_is_refused_and_counted(gw, bad, stat, cluster, name, path,
                                                                         fixture):
    """The provider's mock presents a certificate for another name (its SAN does not match the SNI), or one for
    the right name from a CA the gateway does not trust: the handshake fails, the app gets 503, nothing is
    sent, and Envoy counts it in `cluster.<name>.ssl.<stat>`."""
    if bad == "wrong-name":
        leaf = gw.pki.issue(dns_names=["evil.example.com"])
    else:
        leaf = pki.TestCA(name="another test CA").issue(dns_names=[name])
    gw.mock.server.serve(name, leaf)
    key = f"cluster.{cluster}.ssl.{stat}"
    try:
        before = gw.stats(f"cluster.{cluster}.ssl").get(key, 0)
        requests_before = len(gw.provider_requests())
        assert post(gw, name, path) == 503
        wait_for(lambda: gw.stats(f"cluster.{cluster}.ssl").get(key, 0) > before, f"{key} counted")
        assert len(gw.provider_requests()) == requests_before, "nothing reached the impostor"
        assert name in gw.mock.server.sni_names(), "the gateway sent the provider's name as SNI"
    finally:
        gw.mock.server.serve(name, gw.certs[name])
    # With its own certificate back, the same request goes through.
    assert post(gw, name, path, fixture) == 200
