"""Tenants from the caller's mTLS workload identity, through real Envoy.

The gateway's listener requires a client certificate from a CA made for this run (as an Istio gateway server
with `tls.mode: ISTIO_MUTUAL` requires one from the mesh CA). Client certificates carry SPIFFE URI SANs
(`spiffe://cluster.local/ns/<namespace>/sa/<account>`); tollgate reads the first one through Envoy's
`connection.uri_san_peer_certificate` attribute and maps it to a tenant. A header claiming another tenant
changes nothing, and a certificate the gateway does not trust never gets a request through."""

import json
import os
import ssl
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "testenv"))

from gateway import default_plugin_config, mtls_topology, tls_request  # noqa: E402
from pki import TestCA  # noqa: E402

pytestmark = pytest.mark.usefixtures("build")  # every test runs against both builds (conftest.py)

CHAT = "/v1/chat/completions"
SPIFFE = "spiffe://cluster.local/ns/{}/sa/{}"


def estimate(body: bytes) -> int:
    """tollgate's input-token estimate for a body (filter/src/budget/mod.rs)."""
    return len(body) + 16


@pytest.fixture
def pki(tmp_path):
    (tmp_path / "ca").mkdir()
    (tmp_path / "rogue").mkdir()
    ca = TestCA(str(tmp_path / "ca"))
    certs = {
        "server": ca.issue(ip_addresses=["127.0.0.1"]),
        "team-a": ca.issue(uri_sans=[SPIFFE.format("team-a", "checkout")], client=True, server=False),
        "team-b": ca.issue(uri_sans=[SPIFFE.format("team-b", "default")], client=True, server=False),
        "payments": ca.issue(uri_sans=[SPIFFE.format("payments-eu", "api")], client=True, server=False),
        "foreign": ca.issue(uri_sans=["spiffe://other.domain/ns/team-a/sa/checkout"], client=True,
                            server=False),
        "no-uri": ca.issue(dns_names=["client.test"], client=True, server=False),
    }
    rogue = TestCA(str(tmp_path / "rogue"), name="not the mesh CA")
    certs["rogue"] = rogue.issue(uri_sans=[SPIFFE.format("team-b", "default")], client=True, server=False)
    return ca, certs


def test_budgets_follow_the_certificate_not_the_header(pki):
    ca, certs = pki
    cfg = default_plugin_config()
    cfg["tenant"] = {
        "peer_identity": [
            {"match": "spiffe://cluster.local/ns/payments-*", "tenant": "payments"},
            {"match": "spiffe://cluster.local/*", "tenant": "{namespace}"},
        ],
        "default": "anonymous",
    }
    cfg["budgets"] = [{"tenant": "team-a", "window": "1d", "tokens": 400},
                      {"tenant": "*", "window": "1d", "tokens": 1_000_000}]
    t = mtls_topology(cfg, certs["server"], ca.cert).start()
    try:
        body = {"model": "gpt-4o", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}
        raw = json.dumps(body).encode()
        exact = {"host": "api.openai.com", "x-mock-usage": "max", "x-mock-prompt-tokens": str(estimate(raw))}

        def call(who, claim=None):
            h = dict(exact)
            if claim:
                h["x-tenant-id"] = claim
            return tls_request(t.port, CHAT, raw, h, client=certs[who], ca=ca.cert)[0]

        # team-a claims to be team-b in a header; its own budget (400 tokens, ~132 per call) runs out.
        statuses = [call("team-a", claim="team-b") for _ in range(4)]
        assert statuses[0] == 200 and statuses[-1] == 429, statuses
        # team-b's budget is untouched by what team-a claimed.
        assert call("team-b") == 200
        # A rule maps several namespaces to one tenant; an identity no rule maps, and a certificate without a
        # URI SAN, are the default tenant (the first is counted as invalid).
        assert call("payments") == 200
        assert call("foreign", claim="team-b") == 200
        assert call("no-uri", claim="team-b") == 200
        spans = t.wait_spans(len(statuses) + 4)
        tenants = sorted(s["attributes"]["tollgate.tenant"] for s in spans)
        admitted = statuses.count(200)
        assert tenants == sorted(["team-a"] * len(statuses) + ["team-b", "payments", "anonymous", "anonymous"]), (
            tenants, admitted)
        invalid = t.envoy.stat("tollgate.budget_tenant_invalid")
        assert invalid == 1
        # What the provider saw: team-a's refused calls never arrived whole.
        assert len([r for r in t.provider_requests() if _json(r.get("body"))]) == admitted + 4

        # No certificate, or one from a CA the gateway does not trust: no request gets through at all.
        before = len(t.provider_requests())
        for who in (None, "rogue"):
            with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
                tls_request(t.port, CHAT, raw, exact, client=certs[who] if who else None, ca=ca.cert)
        assert len(t.provider_requests()) == before
    finally:
        t.stop()


def _json(body):
    try:
        json.loads(body)
        return True
    except (TypeError, ValueError):
        return False
