"""Budgets across gateway replicas (`budgets.backend = "rls"`): Redis, the test rate-limit service and TWO Envoy
processes with tollgate sharing one tenant budget; outages of the service and of Redis.

Gateway A fails open, gateway B fails closed; otherwise they are configured alike. Every test uses its own
tenant, so counters never interact. The mock provider's canned completion uses 12 + 7 = 19 tokens."""

import concurrent.futures
import json
import shutil
import uuid

import pytest

import mock_provider
from gateway import Background, Topology, default_plugin_config, wait_for
from ratelimit_env import RateLimitService, Redis, cluster_yaml, redis_available

pytestmark = [pytest.mark.skipif(not redis_available() or shutil.which("cargo") is None,
                                 reason="needs redis-server (scripts/setup.sh) and cargo"),
              pytest.mark.usefixtures("build")]

USAGE = 19
BUDGET = 190
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 7}


def plugin_config(failure_mode):
    cfg = default_plugin_config()
    cfg["tenant"] = {"header": "x-tenant-id"}
    cfg["budgets"] = {
        "backend": "rls",
        # 30d windows are aligned to multiples of 30 days since the epoch: no rollover during a test run.
        "rules": [{"tenant": "*", "window": "30d", "tokens": BUDGET}],
        "rls": {"cluster": "ratelimit", "authority": "ratelimit", "domain": "tollgate-e2e", "timeout_ms": 200,
                "failure_mode": failure_mode},
    }
    return cfg


class Env:
    def __init__(self):
        self.redis = Redis().start()
        self.rls = RateLimitService(self.redis).start()
        self.provider = Background(mock_provider.make_server(0))
        clusters = cluster_yaml(self.rls.port)
        self.a = Topology(plugin_config("open"), extra_clusters=clusters, provider=self.provider).start()
        self.b = Topology(plugin_config("closed"), extra_clusters=clusters, provider=self.provider).start()

    def stop(self):
        for t in (self.a, self.b):
            t.stop()
        self.provider.stop()
        self.rls.stop()
        self.redis.stop()


@pytest.fixture(scope="module")
def env(build):
    e = Env()
    yield e
    e.stop()


def tenant():
    return "t-" + uuid.uuid4().hex[:12]


def chat(gw, who):
    return gw.call("/v1/chat/completions", CHAT, {"host": "api.openai.com", "x-tenant-id": who})


def counter(env, who, kind="tokens"):
    """The tenant's token counter in Redis (the test service's key layout), 0 when absent."""
    keys = [k for k in (env.redis.cli("--scan", "--pattern", f"tollgate-rls:*{who}*") or "").split() if k]
    keys = [k for k in keys if f"={len(kind)}:{kind}" in k]
    return sum(int(env.redis.cli("GET", k) or 0) for k in keys)


def stat(gw, name):
    """An Envoy counter by its tollgate name (Envoy prefixes `wasmcustom.` or `dynamicmodulescustom.`)."""
    return sum(v for k, v in gw.envoy.stats("budget_rls").items() if k.endswith(name))


def test_two_replicas_share_one_budget_exactly_when_sequential(env):
    who = tenant()
    admitted = denied = 0
    for i in range(40):
        gw = env.a if i % 2 == 0 else env.b
        status, headers, body = chat(gw, who)
        if status == 200:
            admitted += 1
            # Wait until this request's usage is debited (fire-and-forget after the response), so the next
            # admission sees it: then the sequence is deterministic.
            wait_for(lambda: counter(env, who) == admitted * USAGE, "the usage debit")
            continue
        assert status == 429, body
        err = json.loads(body)["error"]
        assert err["code"] == "token_budget_exceeded" and err["type"] == "rate_limit_error"
        assert int(headers["retry-after"]) >= 1
        denied += 1
        break
    # Admitted while at least one token was left: 10 × 19 = 190 = the budget, split over both replicas.
    assert admitted == BUDGET // USAGE
    assert admitted * USAGE <= BUDGET + USAGE - 1
    assert denied == 1
    # The refused request never reached the provider with a body (its headers may have left: tollgate decides
    # on the complete body and Envoy resets that upstream stream).
    bodies = [r for r in env.provider.server.recorder.snapshot()
              if r["headers"].get("x-tenant-id") == who and r["body"]]
    assert len(bodies) == admitted


def test_concurrent_load_across_replicas_within_the_documented_bound(env):
    who = tenant()
    n = 40
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda i: chat(env.a if i % 2 else env.b, who)[0], range(n)))
    admitted = results.count(200)
    denied = results.count(429)
    assert admitted + denied == n, results
    assert admitted >= BUDGET // USAGE  # the budget is not left unused
    # Overshoot bound: each request admitted while others were in flight can use its worst case beyond the
    # counter; at most the 16 concurrent requests (each ≤ 19 tokens) were undebited at any admission.
    assert admitted * USAGE <= BUDGET + 16 * (USAGE - 1)
    # Every hit reached the service: each admitted request debited its exact usage (1 at admission + 18
    # after), each refused one its admission hit.
    wait_for(lambda: counter(env, who) == admitted * USAGE + denied, "all debits")


def test_service_outage_fail_open_counts_and_fail_closed_refuses(env):
    who = tenant()
    open_before = stat(env.a, "tollgate.budget_rls_failed_open")
    closed_before = stat(env.b, "tollgate.budget_rls_failed_closed")
    env.rls.stop()
    try:
        status, _, _ = chat(env.a, who)
        assert status == 200
        status, headers, body = chat(env.b, who)
        assert status == 429, body
        assert json.loads(body)["error"]["code"] == "token_budget_exceeded"
        assert "retry-after" in headers
    finally:
        env.rls.start()
    assert stat(env.a, "tollgate.budget_rls_failed_open") == open_before + 1
    assert stat(env.b, "tollgate.budget_rls_failed_closed") == closed_before + 1
    # Back to normal on both replicas once the service is up again.
    wait_for(lambda: chat(env.b, who)[0] == 200, "gateway B admitting again")
    assert chat(env.a, who)[0] == 200


def test_redis_restart(env):
    who = tenant()
    assert chat(env.a, who)[0] == 200
    wait_for(lambda: counter(env, who) == USAGE, "the first debit")
    env.redis.stop()
    try:
        # Redis down: the service answers UNAVAILABLE, each replica applies its failure mode.
        assert chat(env.a, who)[0] == 200
        assert chat(env.b, who)[0] == 429
    finally:
        env.redis.start()
    # A restarted Redis without persistence lost the counters (documented); the service reconnects.
    wait_for(lambda: chat(env.b, who)[0] == 200, "the service reconnecting to Redis")
    wait_for(lambda: counter(env, who) >= USAGE, "counting again after the restart")
