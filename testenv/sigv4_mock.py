"""A mock Bedrock Runtime that checks AWS Signature Version 4 the way AWS does, so a test can tell whether a
request that crossed the gateway still carries a valid signature.

The verifier is written from AWS's public description of SigV4 ("Create a signed AWS API request", "Elements
of an AWS API request signature"), not from an SDK: the canonical request (method, the path URI-encoded once
more as non-S3 services require, the sorted query, the signed headers with trimmed values, the signed header
list, the SHA-256 of the body actually received), the string to sign (algorithm, `x-amz-date`, credential
scope, hash of the canonical request), the signing key derived by HMAC-SHA256 from `AWS4` + secret through
date, region, service and `aws4_request`, and the hex HMAC of the string to sign. A request whose signature
does not match, whose key is unknown, or whose declared `x-amz-content-sha256` is not its body's hash is
answered 403 `SignatureDoesNotMatch` (recorded with `"signature": "invalid"`), as AWS answers it.

Valid requests get the Bedrock fixture of their operation (Converse, ConverseStream, InvokeModel,
InvokeModelWithResponseStream), chosen by path."""

import hashlib
import hmac
import json
import os
import sys
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import mock_provider  # noqa: E402

ALGORITHM = "AWS4-HMAC-SHA256"

# Operation (last path segment) → fixture answering it.
FIXTURES = {
    "converse": "bedrock/converse-cache-tool",
    "converse-stream": "bedrock/converse-stream",
    "invoke": "bedrock/invoke-claude",
    "invoke-with-response-stream": "bedrock/invoke-stream-claude",
}


def _hmac(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def signing_key(secret, date, region, service):
    k = _hmac(("AWS4" + secret).encode(), date)
    k = _hmac(k, region)
    k = _hmac(k, service)
    return _hmac(k, "aws4_request")


def _encode(s, safe):
    # RFC 3986 unreserved characters stay; everything else is %XX with upper-case hex (what AWS specifies).
    return urllib.parse.quote(s, safe=safe)


def canonical_uri(raw_path):
    """The path as received (already URI-encoded once by the client), normalized and encoded once more:
    non-S3 services sign every path segment encoded twice."""
    path = raw_path or "/"
    segments = []
    for seg in path.split("/"):
        if seg == ".":
            continue
        if seg == "..":
            if segments:
                segments.pop()
            continue
        segments.append(seg)
    normalized = "/".join(segments)
    if not normalized.startswith("/"):
        normalized = "/" + normalized
    return _encode(normalized, safe="/~")


def canonical_query(raw_query):
    pairs = []
    for part in raw_query.split("&") if raw_query else []:
        if not part:
            continue
        k, _, v = part.partition("=")
        k = _encode(urllib.parse.unquote(k), safe="~")
        v = _encode(urllib.parse.unquote(v), safe="~")
        pairs.append((k, v))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def canonical_request(method, raw_target, headers, signed, payload_hash):
    """`headers`: lowercase name → list of values as received; `signed`: the SignedHeaders names."""
    path, _, query = raw_target.partition("?")
    lines = [method, canonical_uri(path), canonical_query(query)]
    for name in signed:
        values = [" ".join(v.split()) for v in headers.get(name, [])]
        lines.append(f"{name}:{','.join(values)}")
    lines += ["", ";".join(signed), payload_hash]
    return "\n".join(lines)


def parse_authorization(value):
    """`AWS4-HMAC-SHA256 Credential=AKID/date/region/service/aws4_request, SignedHeaders=..., Signature=...`."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme != ALGORITHM:
        return None
    params = {}
    for part in rest.split(","):
        k, _, v = part.strip().partition("=")
        params[k] = v
    try:
        akid, date, region, service, terminator = params["Credential"].split("/")
    except (KeyError, ValueError):
        return None
    if terminator != "aws4_request":
        return None
    return {"akid": akid, "date": date, "region": region, "service": service,
            "signed": params.get("SignedHeaders", "").split(";"), "signature": params.get("Signature", "")}


def verify(method, raw_target, headers, body, secrets):
    """Check a request's SigV4 signature; (True, "") or (False, why). `secrets`: access key id → secret."""
    auth = parse_authorization(";".join(headers.get("authorization", [])))
    if auth is None:
        return False, "missing or malformed AWS4-HMAC-SHA256 authorization"
    secret = secrets.get(auth["akid"])
    if secret is None:
        return False, f"unknown access key {auth['akid']}"
    signed = auth["signed"]
    if signed != sorted(signed) or "host" not in signed:
        return False, "SignedHeaders must be sorted and include host"
    amz_date = (headers.get("x-amz-date") or [""])[0]
    if not amz_date.startswith(auth["date"]) or "x-amz-date" not in signed:
        return False, "x-amz-date missing, unsigned, or not the credential's date"
    body_hash = hashlib.sha256(body).hexdigest()
    declared = (headers.get("x-amz-content-sha256") or [None])[0]
    if declared is not None and declared not in (body_hash, "UNSIGNED-PAYLOAD"):
        return False, "x-amz-content-sha256 is not the hash of the body received"
    payload_hash = declared if declared is not None else body_hash
    creq = canonical_request(method, raw_target, headers, signed, payload_hash)
    scope = f"{auth['date']}/{auth['region']}/{auth['service']}/aws4_request"
    to_sign = "\n".join([ALGORITHM, amz_date, scope, hashlib.sha256(creq.encode()).hexdigest()])
    key = signing_key(secret, auth["date"], auth["region"], auth["service"])
    expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, auth["signature"]):
        return False, "signature mismatch"
    return True, ""


class Handler(mock_provider.Handler):
    """mock_provider's handler, verifying the signature of every provider request first."""

    secrets: dict = {}

    def fixture_name(self):
        explicit = super().fixture_name()
        if explicit:
            return explicit
        op = self.path.split("?")[0].rstrip("/").rsplit("/", 1)[-1]
        return FIXTURES.get(op)

    def do_POST(self):
        body = self._read_body()
        headers = {}
        for k, v in self.headers.items():
            headers.setdefault(k.lower(), []).append(v)
        ok, why = verify("POST", self.path, headers, body, self.secrets)
        self.record(body, signature="valid" if ok else "invalid", reason=why)
        if not ok:
            msg = {"message": "The request signature we calculated does not match the signature you "
                              f"provided. ({why})"}
            self._send(403, {"content-type": "application/json", "x-amzn-errortype": "SignatureDoesNotMatch"},
                       json.dumps(msg).encode())
            return
        self.answer(body)


def make_server(secrets, port=0, host="127.0.0.1", server_class=mock_provider.CountingServer):
    """A verifying mock; `secrets`: access key id → secret access key."""
    handler = type("SigV4Handler", (Handler,), {"secrets": dict(secrets)})
    return mock_provider.make_server(port, host, handler_class=handler, server_class=server_class)
