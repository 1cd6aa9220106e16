"""Budgets under faults, hot reload and worker counts, through real Envoy.

The remaining budget of a tenant is read from the `x-ratelimit-remaining-tokens` header of a *probe*: a fixed
small call whose usage is known exactly (the mock's `x-mock-usage: max` mode, with prompt tokens equal to
tollgate's input estimate), so `header + PROBE_COST` is what was left before the probe, and the probe itself
costs `PROBE_COST`. Every fault is sent for its own tenant; the commit for a faulted call is then
`remaining before − remaining after`, compared with what docs/budgets.md says is committed:
the provider's usage; missing input → the input estimate (a provider error without usage → 0); missing
output → estimated from the text seen (≈ 4 chars a token; input then from the prompt's characters), else 0.
"""

import json
import os
import socket
import sys
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "testenv"))
sys.path.insert(0, HERE)

import gateway  # noqa: E402
from gateway import default_plugin_config, request  # noqa: E402
from test_e2e_budgets import (  # noqa: E402
    complete_provider_requests, estimate, fire, make_requests, stat, usage_of)

pytestmark = pytest.mark.usefixtures("build")  # every test runs against both builds (conftest.py)

OPENAI = {"host": "api.openai.com"}
ANTHROPIC = {"host": "api.anthropic.com", "anthropic-version": "2023-06-01"}
CHAT = "/v1/chat/completions"
LIMIT = 100_000

PROBE = json.dumps({"model": "gpt-4o", "max_tokens": 1, "messages": []}).encode()
PROBE_COST = estimate(PROBE) + 1


def config(limit=LIMIT, window="30d", service_name="tollgate"):
    c = default_plugin_config()
    c["service_name"] = service_name
    c["tenant"] = {"header": "x-tenant-id", "default": "anonymous"}
    c["budgets"] = [{"tenant": "*", "window": window, "tokens": limit}]
    return c


def exact(raw, tenant, **extra):
    """Headers for a call whose usage is exactly estimate(raw) + its max tokens."""
    return {**OPENAI, "x-tenant-id": tenant, "x-mock-usage": "max", "x-mock-prompt-tokens": str(estimate(raw)),
            **extra}


def probe(port, tenant):
    """(remaining before the probe, limit, response headers); the probe itself spends PROBE_COST."""
    status, headers, body = request(port, CHAT, PROBE, exact(PROBE, tenant))
    assert status == 200, (status, body[:300])
    return int(headers["x-ratelimit-remaining-tokens"]) + PROBE_COST, int(headers["x-ratelimit-limit-tokens"]), \
        headers


def drain(s):
    """Read until the gateway closes or resets the connection."""
    got = b""
    try:
        while True:
            part = s.recv(65536)
            if not part:
                break
            got += part
    except OSError:
        pass
    s.close()
    return got


# --- 1. hot reload keeps the counters of unchanged rules ---------------------------------------------


def wait_probe(t, tenant, cond, what):
    """Probe until cond(remaining before the probe, limit) holds (a reload took effect).
    Returns (remaining, limit, how many probes ran before, on the old config)."""
    got = [0, 0, -1]

    def once():
        left, limit, _ = probe(t.port, tenant)
        got[:] = [left, limit, got[2] + 1]
        return cond(left, limit)

    gateway.wait_for(once, what)
    return tuple(got)


def test_hot_reload_preserves_budgets_of_unchanged_rules():
    t = gateway.lds_topology(config()).start()
    try:
        # Spend part of tenant a's budget.
        spend = json.dumps({"model": "gpt-4o", "max_tokens": 700,
                            "messages": [{"role": "user", "content": "s" * 200}]}).encode()
        for _ in range(3):
            assert request(t.port, CHAT, spend, exact(spend, "a"))[0] == 200
        spent_a = 3 * (estimate(spend) + 700)
        left, limit, _ = probe(t.port, "a")
        assert (left, limit) == (LIMIT - spent_a, LIMIT)
        spent_a += PROBE_COST
        # All of tenant a's spans are in before the reload, so the next one seen is the next probe's.
        t.wait_spans(4, predicate=lambda s: s["attributes"].get("tollgate.tenant") == "a")

        # Traffic for another tenant flows through every reload; its budget never refuses it.
        bg = json.dumps({"model": "gpt-4o", "max_tokens": 20, "messages": [{"role": "user", "content": "b"}]})
        bg = bg.encode()
        bg_cost = estimate(bg) + 20
        stop, failures, done, lock = threading.Event(), [], [0], threading.Lock()

        def traffic():
            while not stop.is_set():
                status, _, body = request(t.port, CHAT, bg, exact(bg, "bg"))
                with lock:
                    done[0] += 1
                    if status != 200:
                        failures.append((status, body[:200]))

        ths = [threading.Thread(target=traffic) for _ in range(3)]
        for th in ths:
            th.start()
        try:
            time.sleep(0.5)
            # Reload 1: an unrelated change. The rule's fingerprint is unchanged: the counter is kept.
            gateway.write_lds(t, config(service_name="tollgate-v2"))
            gateway.wait_for(lambda: any(s["resource"]["service.name"] == "tollgate-v2" for s in t.spans()),
                       "the v2 plugin config to serve")
            t.reset()
            left, limit, _ = probe(t.port, "a")
            assert (left, limit) == (LIMIT - spent_a, LIMIT), "an unrelated reload keeps the spent budget"
            spent_a += PROBE_COST
            probe_span = t.wait_spans(1, predicate=lambda s: s["attributes"].get("tollgate.tenant") == "a")[0]
            assert probe_span["resource"]["service.name"] == "tollgate-v2", "the probe ran on the new config"

            # Reload 2: the same rule with a new limit. Documented: the counter is kept, the new limit applies.
            new_limit = LIMIT - 30_000
            gateway.write_lds(t, config(limit=new_limit, service_name="tollgate-v3"))
            left, _, old = wait_probe(t, "a", lambda left, limit: limit == new_limit, "the new limit to apply")
            # The probes that ran on the old config while waiting are charged to the same counter.
            assert left == new_limit - spent_a - old * PROBE_COST, "the spending is carried over to the new limit"
            spent_a += (old + 1) * PROBE_COST
            time.sleep(0.5)
        finally:
            stop.set()
            for th in ths:
                th.join()
        assert failures == [], f"{len(failures)} of {done[0]} requests failed during reloads: {failures[:3]}"
        assert done[0] > 10
        # Every background call was committed exactly once, across two reloads and a limit change.
        left_bg, limit_bg, _ = probe(t.port, "bg")
        assert limit_bg == new_limit
        assert left_bg == new_limit - done[0] * bg_cost, "background calls lost or double-counted in a reload"

        # Reload 3: the rule's window changes. A new fingerprint is a new, empty counter.
        gateway.write_lds(t, config(limit=new_limit, window="7d", service_name="tollgate-v4"))
        _, _, old = wait_probe(t, "a", lambda left, limit: left == new_limit,
                               "the changed rule to start a fresh counter")
        spent_a += old * PROBE_COST  # the probes before the reload took effect ran on the 30d rule
        # Going back to the 30d rule finds its counter where it was (the 7d rule did not wipe it); the probes
        # while waiting ran on the 7d rule and were charged there.
        gateway.write_lds(t, config(limit=new_limit, service_name="tollgate-v5"))
        left, _, _ = wait_probe(t, "a", lambda left, limit: left <= new_limit - spent_a,
                                "the 30d rule to serve again")
        assert left == new_limit - spent_a
        assert envoy_stat(t, "listener_manager.lds.update_rejected") == 0
    finally:
        t.stop()


def envoy_stat(t, name):
    return t.envoy.stats(name).get(name, 0)


# --- 2. accounting under faults -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def bgw(build):
    t = gateway.Topology(config()).start()
    yield t
    t.stop()


def stream_body(max_tokens, content):
    return json.dumps({"model": "gpt-4o", "max_tokens": max_tokens, "stream": True,
                       "stream_options": {"include_usage": True},
                       "messages": [{"role": "user", "content": content}]}).encode()


def committed_by(t, tenant, send):
    """Run `send()` (one faulted call for `tenant`), wait for its span, and return (commit, span).
    Spans are picked by tenant (other tests' spans may still be in flight: each worker flushes on its own)."""
    before, _, _ = probe(t.port, tenant)
    before -= PROBE_COST
    send()
    # The faulted call's span (the only call of this tenant with more than the probe's 1 max token) is
    # queued after its commit.
    [span] = t.wait_spans(1, predicate=lambda s: s["attributes"].get("tollgate.tenant") == tenant
                          and s["attributes"].get("gen_ai.request.max_tokens") != 1)
    after, limit, headers = probe(t.port, tenant)
    assert 0 <= after <= limit
    return before - after, span


def faulted(t, tenant, max_tokens, content, headers):
    raw = stream_body(max_tokens, content)

    def send():
        try:
            request(t.port, CHAT, raw, exact(raw, tenant, **headers))
        except (ConnectionError, OSError, Exception):  # noqa: BLE001 - the fault surfaces as a client error
            pass

    return raw, committed_by(t, tenant, send)


def check_span(span, reserved_worst):
    a = span["attributes"]
    assert a["tollgate.budget.decision"] == "allowed"
    left = a["tollgate.budget.remaining_tokens"]
    assert 0 <= left <= LIMIT - reserved_worst, "the span shows the remaining budget after the reservation"


def test_upstream_reset_before_any_content_commits_the_input_estimate(bgw):
    # 40 bytes: the response headers and a fragment of the first event, then a TCP reset.
    raw, (commit, span) = faulted(bgw, "reset-early", 500, "r" * 300, {"x-mock-reset": "40"})
    worst = estimate(raw) + 500
    check_span(span, worst)
    assert span["attributes"]["error.type"] == "stream_interrupted"
    assert commit == estimate(raw), "input estimate charged, the reserved output given back"


def test_upstream_reset_after_content_commits_what_was_generated(bgw):
    n, content = 400, "q" * 300
    raw = stream_body(n, content)
    # Cut right after the content event, before the finish and usage events.
    _, full = __import__("mock_provider").usage_max_response(raw, estimate(raw))
    cut = full.index(b"\n\n", full.index(b"tok ")) + 2
    _, (commit, span) = faulted(bgw, "reset-late", n, content, {"x-mock-reset": str(cut)})
    worst = estimate(raw) + n
    check_span(span, worst)
    a = span["attributes"]
    assert a["error.type"] == "stream_interrupted"
    # Output from the text seen ("tok " × n = 4n chars), input from the prompt's characters.
    assert a["gen_ai.usage.output_tokens"] == n
    assert commit == a["gen_ai.usage.input_tokens"] + n
    assert n < commit < worst, "what was generated is charged, never the full worst case"


def test_client_abort_mid_stream_commits_what_was_seen(bgw):
    n, content = 600, "c" * 250
    raw = stream_body(n, content)
    h = exact(raw, "abort", **{"x-mock-chunk": "60", "x-mock-stall-ms": "3000"})

    def send():
        s = socket.create_connection(("127.0.0.1", bgw.port), timeout=10)
        head = f"POST {CHAT} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items())
        head += f"content-type: application/json\r\ncontent-length: {len(raw)}\r\n\r\n"
        s.sendall(head.encode() + raw)
        got = b""
        while b"\r\n\r\n" not in got or b"data: " not in got:  # headers and the first (partial) event
            got += s.recv(4096)
        assert b" 200 " in got.split(b"\r\n", 1)[0]
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()

    commit, span = committed_by(bgw, "abort", send)
    check_span(span, estimate(raw) + n)
    assert span["attributes"]["error.type"] == "stream_interrupted"
    assert commit == estimate(raw), "nothing generated was seen: the input estimate only"


def test_truncated_body_commits_the_input_estimate(bgw):
    raw = json.dumps({"model": "gpt-4o", "max_tokens": 300, "messages": [{"role": "user", "content": "t" * 99}]})
    raw = raw.encode()

    def send():
        # A JSON body announced with its full content-length, cut in the middle (FIN).
        try:
            request(bgw.port, CHAT, raw, exact(raw, "truncated", **{"x-mock-close": "120"}))
        except Exception:  # noqa: BLE001
            pass

    commit, span = committed_by(bgw, "truncated", send)
    check_span(span, estimate(raw) + 300)
    assert span["attributes"]["error.type"] == "stream_interrupted"
    assert commit == estimate(raw)


@pytest.mark.parametrize("fault", ["provider-529", "reset-before-headers"])
def test_upstream_5xx_commits_nothing(bgw, fault):
    tenant = "err-" + fault
    if fault == "provider-529":
        body = json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 800,
                           "messages": [{"role": "user", "content": "hi"}]}).encode()
        path, h, want = "/v1/messages", {**ANTHROPIC, "x-mock-fixture": "anthropic/error-529"}, 529
    else:
        body = json.dumps({"model": "gpt-4o", "max_tokens": 800, "messages": []}).encode()
        path, h, want = CHAT, {**OPENAI, "x-mock-reset": "0"}, 503
    got = []

    def send():
        got.append(request(bgw.port, path, body, {**h, "x-tenant-id": tenant})[0])

    commit, span = committed_by(bgw, tenant, send)
    assert got == [want], "the client gets the provider's (or Envoy's) error as without tollgate"
    check_span(span, estimate(body) + 800)
    assert commit == 0, "a provider error without usage costs nothing and releases the reservation"


def test_usage_beyond_the_reservation_saturates_at_zero(bgw):
    # The provider reports more than was reserved (and more than the whole budget): the counter saturates,
    # remaining never goes negative or wraps, and the tenant is refused until the window resets.
    raw = json.dumps({"model": "gpt-4o", "max_tokens": 5, "messages": []}).encode()
    h = {**OPENAI, "x-tenant-id": "over", "x-mock-usage": "max", "x-mock-prompt-tokens": str(3 * LIMIT)}
    status, _, body = request(bgw.port, CHAT, raw, h)
    assert status == 200 and usage_of(status, {"content-type": "application/json"}, body) == (3 * LIMIT, 5)
    status, headers, body = request(bgw.port, CHAT, PROBE, exact(PROBE, "over"))
    assert status == 429
    assert headers["x-ratelimit-remaining-tokens"] == "0"
    assert headers["x-ratelimit-limit-tokens"] == str(LIMIT)
    [span] = bgw.wait_spans(1, predicate=lambda s: s["attributes"].get("tollgate.tenant") == "over"
                            and s["attributes"].get("tollgate.budget.decision") == "denied")
    assert span["attributes"]["tollgate.budget.remaining_tokens"] == 0


# --- 3. the budget guarantee with 1 and 4 workers ------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 4])
def test_budget_guarantee_with_worker_count(topology, workers):
    budget = 8_000
    c = config(limit=budget)
    gw = topology(c, concurrency=workers)
    reqs = make_requests(60, seed=workers)
    results = fire(gw.port, reqs, f"w{workers}")
    admitted = [(r, res) for r, res in zip(reqs, results) if res[0] == 200]
    denied = [res for res in results if res[0] == 429]
    assert len(admitted) + len(denied) == 60, {res[0] for res in results}
    used = 0
    for (raw, max_tokens), res in admitted:
        prompt, completion = usage_of(*res)
        assert completion == max_tokens
        used += prompt + completion
    worst = max(estimate(raw) + mt for raw, mt in reqs)
    print(f"{workers} workers: admitted {len(admitted)}, denied {len(denied)}, used {used} of {budget}")
    assert used <= budget, "admitted usage exceeds the budget"
    assert budget - used < worst, "budget left unused by more than one request's worst case"
    assert denied, "the load must exhaust the budget"
    assert stat(gw, "tollgate.budget_denied") == len(denied)
    assert stat(gw, "tollgate.budget_allowed") == len(admitted)
    assert len(complete_provider_requests(gw)) == len(admitted)
    # Every reservation was committed: what is left is exactly the budget minus the usage.
    if budget - used >= PROBE_COST:
        assert probe(gw.port, f"w{workers}")[0] == budget - used
