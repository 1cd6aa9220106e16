"""Guarantees that hold on the wire, through real Envoy: a refused call never reaches the provider, a request
of any size Envoy alone would forward is forwarded with tollgate in the path, and a body too large to read
still counts against its budget.

Refusals: tollgate holds a request's headers while the decisions on its body are made
(`allow_on_headers_stop_iteration`, set by every shipped config and by the test template), so for every
refusal path the mock provider must accept no TCP connection and answer no request, under 50 concurrent
refused calls. The same refusal with Envoy's default for that setting shows what the setting buys (the
provider does see those requests start), which is also what keeps these assertions able to fail.

Sizes: Envoy answers 413 when a paused filter's buffered body passes the listener's buffer limit (1 MiB by
default). tollgate holds a body only when its declared length fits `max_request_body`, and never holds one of
undeclared length past its first chunk; 1–8 MiB chat requests, with a content-length or chunked, must pass
byte for byte under Envoy's default limit and under the shipped 8 MiB one."""

import base64
import gzip
import http.client
import json
import os
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "testenv"))

import mock_provider  # noqa: E402
from gateway import Background, Topology, default_plugin_config, wait_for  # noqa: E402
from ratelimit_env import RateLimitService, Redis, cluster_yaml, redis_available  # noqa: E402

pytestmark = pytest.mark.usefixtures("build")  # every test runs against both builds (conftest.py)

OPENAI = {"host": "api.openai.com"}
CHAT = "/v1/chat/completions"
EMAIL = "jane.roe@example.com"
CONCURRENT = 50
MIB = 1024 * 1024


def chat(content="hi", max_tokens=100, **extra):
    return {"model": "gpt-4o", "max_tokens": max_tokens, "messages": [{"role": "user", "content": content}],
            **extra}


def config(**extra):
    c = default_plugin_config()
    c.update(extra)
    return c


def budget_config(tokens, budgets=None, **extra):
    """A 30-day token budget for every tenant (`x-tenant-id`); `budgets`: more keys of `budgets`, `extra`:
    more top-level keys."""
    return config(tenant={"header": "x-tenant-id", "default": "anonymous"},
                  budgets={"rules": [{"tenant": "*", "window": "30d", "tokens": tokens}], **(budgets or {})},
                  **extra)


def stat(t, name):
    """A tollgate counter by its name without `tollgate.`, in either build."""
    return t.envoy.stat("tollgate." + name)


def call_many(t, body, headers, n=CONCURRENT):
    """`n` calls at once, each on its own connection; their statuses and bodies."""
    def one(_):
        status, _, raw = t.call(CHAT, body, {**OPENAI, **headers}, timeout=60)
        return status, raw
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def assert_never_reached(t, results, status):
    assert {s for s, _ in results} == {status}, [s for s, _ in results]
    # Connections are counted when accepted; give a late one time to show up before concluding.
    time.sleep(0.5)
    assert t.provider_connections() == {"connections": 0, "requests": 0}
    assert stat(t, "refusals_after_forward") == 0


def gz(obj):
    return gzip.compress(json.dumps(obj).encode())


# Each local refusal path: (plugin config, request body, extra request headers, expected status, error code).
LOCAL_REFUSALS = {
    "local_budget": (budget_config(10), chat(max_tokens=100), {}, 429, "token_budget_exceeded"),
    "redaction_block": (config(redaction={"block": ["email"]}), chat(f"mail {EMAIL}"), {}, 400,
                        "content_blocked"),
    "compressed_egress": (config(redaction={"egress": True}), gz(chat(f"mail {EMAIL}")),
                          {"content-encoding": "gzip"}, 400, "content_blocked"),
}


@pytest.mark.parametrize("path", sorted(LOCAL_REFUSALS))
def test_local_refusals_never_reach_the_provider(topology, path):
    cfg, body, headers, status, code = LOCAL_REFUSALS[path]
    t = topology(cfg)
    t.reset()
    results = call_many(t, body, headers)
    assert_never_reached(t, results, status)
    assert all(json.loads(raw)["error"]["code"] == code for _, raw in results)
    wait_for(lambda: stat(t, "hold.requests") >= CONCURRENT, "held requests counted")
    assert stat(t, "hold.unavailable") == 0


@pytest.mark.wasm_only("allow_on_headers_stop_iteration is a setting of the Wasm filter; the dynamic-modules "
                       "filter holds headers without one (docs/dynamic-modules-abi.md §5)")
def test_without_the_envoy_setting_refusals_reach_the_provider_and_are_counted(topology):
    """Envoy's default (no allow_on_headers_stop_iteration): tollgate learns it from the first held request,
    says so in Envoy's log, counts it, and decides after the headers left, as the issue describes."""
    t = topology(budget_config(10), hold_headers=False)
    t.reset()
    # 10 tokens is less than any request's estimate, so every call is refused; the first ones are held until
    # the tick finds Envoy never delivered their body.
    results = call_many(t, chat(max_tokens=100), {}, n=10)
    assert {s for s, _ in results} == {429}
    # The headers left before the refusal: Envoy connected to the provider for them (and reset the stream,
    # usually before the request itself went out).
    assert t.provider_connections()["connections"] > 0, "refused requests reached the provider"
    wait_for(lambda: stat(t, "hold.unavailable") >= 10, "requests that could not be held counted")
    assert stat(t, "refusals_after_forward") == 10
    assert "allow_on_headers_stop_iteration" in t.envoy.log()
    # Nothing hangs: a request within budget still goes through.
    t2 = topology(budget_config(10 ** 9), hold_headers=False)
    status, _, _ = t2.call(CHAT, chat(), {**OPENAI, "x-mock-fixture": "openai/chat-json"})
    assert status == 200
    wait_for(lambda: stat(t2, "hold.unavailable") >= 1, "the held request released and counted")


def test_requests_no_refusal_can_touch_are_not_held(topology):
    t = topology(config())  # telemetry only
    status, _, _ = t.call(CHAT, chat(), {**OPENAI, "x-mock-fixture": "openai/chat-json"})
    assert status == 200
    t.wait_spans(1)
    time.sleep(0.3)  # the per-call counter reaches Envoy on the next tick
    assert stat(t, "hold.requests") == 0
    b = topology(budget_config(10 ** 9))
    status, _, _ = b.call(CHAT, chat(), {**OPENAI, "x-mock-fixture": "openai/chat-json"})
    assert status == 200
    wait_for(lambda: stat(b, "hold.requests") == 1, "a budgeted request held")
    # A request without a body (headers end the stream) is never held: nothing could decide on it.
    c = http.client.HTTPConnection("127.0.0.1", b.port, timeout=10)
    c.request("POST", CHAT, headers={**OPENAI, "content-length": "0", "x-mock-fixture": "openai/chat-json"})
    assert c.getresponse().status == 200
    c.close()
    time.sleep(0.3)
    assert stat(b, "hold.requests") == 1


class RlsEnv:
    """Redis, the test rate-limit service, and gateways for an OVER_LIMIT and a failing service."""

    def __init__(self):
        self.redis = Redis().start()
        self.rls = RateLimitService(self.redis).start()

    def gateway(self, failure_mode, port, tokens):
        cfg = config(tenant={"header": "x-tenant-id"}, budgets={
            "backend": "rls", "rules": [{"tenant": "*", "window": "30d", "tokens": tokens}],
            "rls": {"cluster": "ratelimit", "authority": "ratelimit", "domain": "tollgate-wire",
                    "timeout_ms": 500, "failure_mode": failure_mode}})
        return Topology(cfg, extra_clusters=cluster_yaml(port)).start()

    def stop(self):
        self.rls.stop()
        self.redis.stop()


@pytest.fixture(scope="module")
def rls_env(build):
    if not redis_available() or shutil.which("cargo") is None:
        pytest.skip("needs redis-server (scripts/setup.sh) and cargo")
    e = RlsEnv()
    yield e
    e.stop()


def test_rls_over_limit_never_reaches_the_provider(rls_env):
    t = rls_env.gateway("closed", rls_env.rls.port, 1)
    try:
        # Spend the tenant's single token: one call reaches the provider and its usage is debited.
        status, _, _ = t.call(CHAT, chat(), {**OPENAI, "x-tenant-id": "wire-over"})
        assert status == 200
        wait_for(lambda: stat(t, "budget_rls_debits") >= 1, "the usage debit")
        t.reset()
        results = call_many(t, chat(), {"x-tenant-id": "wire-over"})
        assert_never_reached(t, results, 429)
        assert stat(t, "budget_rls_denied") >= CONCURRENT
    finally:
        t.stop()


def test_rls_failure_closed_never_reaches_the_provider(rls_env):
    from gateway import free_port
    t = rls_env.gateway("closed", free_port(), 10 ** 9)  # nothing listens there
    try:
        t.reset()
        results = call_many(t, chat(), {"x-tenant-id": "wire-closed"})
        assert_never_reached(t, results, 429)
        assert stat(t, "budget_rls_failed_closed") >= CONCURRENT
    finally:
        t.stop()


# ---------------------------------------------------------------------------------------------------------
# Buffer limits


def big_chat(size):
    """An OpenAI chat request of exactly `size` bytes (a long document in one message)."""
    head = json.dumps(chat("")).encode()
    pad = size - len(head)
    body = json.dumps(chat("d" * pad)).encode()
    assert len(body) == size
    return body


def send(port, body, chunked, headers=None):
    """POST `body` to the gateway with a content-length, or chunked in 64 KiB pieces."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    h = {**OPENAI, "content-type": "application/json", "x-mock-fixture": "openai/chat-json", **(headers or {})}
    try:
        if chunked:
            pieces = (body[i:i + 65536] for i in range(0, len(body), 65536))
            c.request("POST", CHAT, body=pieces, headers=h, encode_chunked=True)
        else:
            c.request("POST", CHAT, body=body, headers=h)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def send_raw(port, body):
    """POST `body` with its content-length and read the status while still sending: Envoy answers 413 before
    it has read the whole body, then closes the connection."""
    import socket
    import threading

    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = (f"POST {CHAT} HTTP/1.1\r\nhost: api.openai.com\r\ncontent-type: application/json\r\n"
            f"x-mock-fixture: openai/chat-json\r\ncontent-length: {len(body)}\r\n\r\n").encode()

    def write():
        try:
            s.sendall(head + body)
        except OSError:
            pass  # the gateway closed the connection after answering

    w = threading.Thread(target=write, daemon=True)
    w.start()
    try:
        status_line = s.makefile("rb").readline()
    finally:
        w.join(5)
        s.close()
    return int(status_line.split()[1])


SIZES = [MIB - 200, MIB + 4096, 3 * MIB, 8 * MIB - 4096]


@pytest.mark.parametrize("limit,max_request_body", [(None, None), (8 * MIB, 8 * MIB)],
                         ids=["envoy-default-limit", "shipped-8MiB"])
@pytest.mark.parametrize("policy", ["telemetry", "budgets"])
def test_any_size_envoy_forwards_is_forwarded(topology, limit, max_request_body, policy):
    """Whatever the size and framing, the provider gets the body byte for byte: a body that fits is held and
    read, a larger one passes uninspected (counted) and never makes Envoy answer 413."""
    cfg = budget_config(10 ** 12) if policy == "budgets" else config()
    if max_request_body:
        cfg["max_request_body"] = max_request_body
    t = topology(cfg, buffer_limit=limit)
    bound = max_request_body or MIB
    expect_uninspected = 0
    for size in SIZES:
        body = big_chat(size)
        for chunked in (False, True):
            t.reset()
            status, _ = send(t.port, body, chunked)
            assert status == 200, (size, chunked, status)
            [seen] = t.provider_requests()
            assert base64.b64decode(seen["body_base64"]) == body, (size, chunked)
            # Read when its declared length fits; a chunked body only if it arrived whole at once.
            if size > bound or chunked:
                expect_uninspected += 1
    assert stat(t, "request.buffer_overflow") == 0
    # A chunked body of several pieces may still have arrived in one read: at least every too-large one
    # passed uninspected, at most every chunked one too.
    too_large = sum(2 for s in SIZES if s > bound)
    assert too_large <= stat(t, "request.oversized") <= expect_uninspected


def test_envoy_413_to_a_held_body_is_reported(topology):
    """max_request_body above Envoy's buffer limit is a configuration error tollgate cannot see at configure
    time: Envoy's 413 to a body it held is counted and logged, naming the key."""
    t = topology(config(max_request_body=8 * MIB), buffer_limit=None)
    assert send_raw(t.port, big_chat(2 * MIB)) == 413
    wait_for(lambda: stat(t, "request.buffer_overflow") == 1, "the 413 counted")
    assert "max_request_body" in t.envoy.log()


# ---------------------------------------------------------------------------------------------------------
# Oversized bodies and budgets


def test_oversized_bodies_are_reserved_by_their_size(topology):
    """A body over max_request_body passes uninspected but not free: it is reserved by its size + 16 and the
    default output cap, so a tenant cannot slip past its budget by padding, and the usage the response
    reports is committed."""
    size = 200_000
    body = big_chat(size)
    headers = {"x-tenant-id": "padder", "x-mock-usage": "max", "x-mock-prompt-tokens": "50"}
    # The reservation (size + 16 + 64 default output) does not fit a 150,000-token budget: refused at the
    # headers, before anything leaves.
    out_cap = {"default_max_output_tokens": 64}
    small = topology(budget_config(150_000, out_cap, max_request_body=4096))
    small.reset()
    status, raw = send(small.port, body, chunked=False, headers=headers)
    assert status == 429, raw
    assert small.provider_connections() == {"connections": 0, "requests": 0}
    assert stat(small, "refusals_after_forward") == 0
    # With room for it, it goes through uninspected and the provider's usage (50 in + 100 out: the mock
    # generates max_tokens) is what the budget is charged.
    t = topology(budget_config(1_000_000, out_cap, max_request_body=4096))
    status, raw = send(t.port, body, chunked=False, headers=headers)
    assert status == 200, raw
    [span] = t.wait_spans(1)
    a = span["attributes"]
    assert a["tollgate.request.uninspected"] == "too_large"
    assert a["tollgate.budget.decision"] == "allowed"
    # The next call sees what was committed: 1,000,000 − 150 (and its own reservation in flight).
    status, headers_out, _ = t.call(CHAT, chat(max_tokens=1), {**OPENAI, "x-tenant-id": "padder",
                                                               "x-mock-fixture": "openai/chat-json"})
    assert status == 200
    small_estimate = len(json.dumps(chat(max_tokens=1)).encode()) + 16 + 1
    assert int(headers_out["x-ratelimit-remaining-tokens"]) == 1_000_000 - 150 - small_estimate
    assert stat(t, "request.oversized") == 1


def test_oversized_requests_refuse(topology):
    t = topology(budget_config(10 ** 9, max_request_body=4096, oversized_requests="refuse"))
    t.reset()
    status, raw = send(t.port, big_chat(100_000), chunked=False, headers={"x-tenant-id": "strict"})
    assert status == 413
    err = json.loads(raw)["error"]
    assert err["code"] == "request_too_large" and "max_request_body" in err["message"]
    # Undeclared length, not whole in its first chunk: refused before the rest of it is read.
    status, raw = send(t.port, big_chat(100_000), chunked=True, headers={"x-tenant-id": "strict"})
    assert status == 413
    assert t.provider_connections() == {"connections": 0, "requests": 0}
    assert stat(t, "request.oversized_refused") == 2
    assert stat(t, "refusals_after_forward") == 0, "decided before anything left"
    # A body that fits is read as usual.
    status, _ = send(t.port, big_chat(2000), chunked=False, headers={"x-tenant-id": "strict"})
    assert status == 200
