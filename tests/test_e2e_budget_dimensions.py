"""Budgets in several dimensions at once, calendar windows and threshold alerts, through real Envoy (2 workers).

A call carries a team (a header) and a user (a JWT claim Envoy's jwt_authn verified); a team rule and a user
rule both apply, and each must admit the call. The mock provider's `x-mock-usage: max` mode answers with exactly
the request's max tokens and the prompt tokens the test names, so every admitted call's usage is known.
Threshold alerts arrive as OTLP log records at the receiver (decoded with the official protobuf types) and as
webhook POSTs at a receiver the test runs; a webhook receiver that is down or slow costs traffic nothing.
"""

import http.server
import json
import os
import random
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "testenv"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from gateway import (  # noqa: E402
    Background,
    Topology,
    current_build,
    default_plugin_config,
    free_port,
    get_json,
    request,
    wait_for,
)
from test_e2e_budgets import (  # noqa: E402
    CHAT,
    JWT_FILTER,
    OPENAI,
    SECRET,
    b64url,
    complete_provider_requests,
    estimate,
    sign,
    stat,
    usage_of,
)

TEAM_BUDGET = 25_000
USER_BUDGET = 8_000
USERS = ["u0", "u1", "u2", "u3"]


# The native build cannot read jwt_authn's payload (Envoy 1.40's dynamic-modules ABI reads a dynamic metadata
# value only as a scalar or a list element; the payload is a Struct: docs/native-module.md, "JWT claims"). There the user
# comes from the header jwt_authn's `claim_to_headers` sets from the verified token, the documented way.
CLAIM_HEADER = "x-jwt-sub"


def user_dimension():
    if current_build() == "native":
        return {"header": CLAIM_HEADER, "default": "nobody"}
    return {"jwt_claim": "sub", "metadata_key": "jwt_payload", "default": "nobody"}


def plugin(rules, webhook=None, inspect=None):
    c = default_plugin_config()
    c["otlp"]["metrics_interval_ms"] = 1000
    c["tenant"] = {"header": "x-tenant-id", "default": "anonymous"}
    c["budgets"] = {
        "dimensions": {"team": {"header": "x-team", "default": "no-team"}, "user": user_dimension()},
        "rules": rules,
    }
    if webhook:
        c["budgets"]["webhook"] = webhook
    if inspect:
        c["budgets"]["inspect"] = inspect
    return c


def hooks_cluster(port):
    return f"""  - name: alert_hooks
    type: STATIC
    connect_timeout: 0.25s
    load_assignment:
      cluster_name: alert_hooks
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}}}}}]}}]
"""


def with_jwt(t):
    """Put Envoy's jwt_authn (HS256, payload to dynamic metadata) in front of tollgate, then start."""
    jwks = json.dumps({"keys": [{"kty": "oct", "alg": "HS256", "k": b64url(SECRET)}]})
    with open(t.envoy.config_path, encoding="utf-8") as f:
        yaml = f.read()
    marker = t.envoy.filter_marker
    assert marker in yaml
    jwt = JWT_FILTER % jwks
    if current_build() == "native":
        forward = "                  forward: true\n"
        jwt = jwt.replace(forward, forward + "                  claim_to_headers: "
                          f"[{{header_name: {CLAIM_HEADER}, claim_name: sub}}]\n")
        assert "claim_to_headers" in jwt
    with open(t.envoy.config_path, "w", encoding="utf-8") as f:
        f.write(yaml.replace(marker, jwt + marker))
    return t.start()


def token(user):
    return sign({"iss": "tollgate-test", "sub": user, "exp": int(time.time()) + 3600})


class Hooks(http.server.BaseHTTPRequestHandler):
    """A webhook receiver: keeps every POST body; `delay_s` makes it slow."""

    protocol_version = "HTTP/1.1"
    received = None
    delay_s = 0.0

    def log_message(self, fmt, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0") or 0))
        if self.delay_s:
            time.sleep(self.delay_s)
        self.received.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(body)})
        self.send_response(204)
        self.send_header("content-length", "0")
        self.end_headers()


def hooks_server(delay_s=0.0):
    handler = type("BoundHooks", (Hooks,), {"received": [], "delay_s": delay_s})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    return Background(server), handler.received


def make_requests(n, seed):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        body = {"model": "gpt-4o", "max_tokens": rng.randint(20, 300),
                "messages": [{"role": "user", "content": "x" * rng.randint(10, 300)}]}
        if i % 2 == 0:
            body.update(stream=True, stream_options={"include_usage": True})
        # Half the calls are u0's, so u0's budget binds; the others' and the team's bind too.
        user = "u0" if i % 2 else rng.choice(USERS[1:])
        out.append((json.dumps(body).encode(), body["max_tokens"], user))
    return out


def fire(port, reqs, team, tokens):
    barrier = threading.Barrier(len(reqs))

    def one(item):
        raw, _, user = item
        h = dict(OPENAI, **{"x-team": team, "authorization": f"Bearer {tokens[user]}", "x-mock-usage": "max",
                            "x-mock-prompt-tokens": str(estimate(raw))})
        barrier.wait()
        return request(port, CHAT, raw, h, timeout=60)

    with ThreadPoolExecutor(max_workers=len(reqs)) as pool:
        return list(pool.map(one, reqs))


def logs(gw):
    return get_json(gw.collector.port, "/__logs")


def test_concurrent_team_and_user_budgets_never_overshoot_and_alert_once(topology):
    hooks, received = hooks_server()
    rules = [{"team": "*", "window": "month", "tokens": TEAM_BUDGET, "thresholds": [0.25, 0.5, 0.75]},
             {"user": "*", "window": "week", "utc_offset": "+02:00", "tokens": USER_BUDGET}]
    t = Topology(plugin(rules, {"cluster": "alert_hooks", "path": "/hooks/tollgate",
                                "headers": {"authorization": "Bearer hook-secret"}}),
                 extra_clusters=hooks_cluster(hooks.port))
    gw = with_jwt(t)
    try:
        tokens = {u: token(u) for u in USERS}
        reqs = make_requests(200, seed=7)
        results = fire(gw.port, reqs, "red", tokens)
        used_by = {u: 0 for u in USERS}
        refused_by = {"team": 0, "user": 0}
        admitted = 0
        for (raw, max_tokens, user), (status, headers, body) in zip(reqs, results):
            if status == 200:
                prompt, completion = usage_of(status, headers, body)
                assert completion == max_tokens
                used_by[user] += prompt + completion
                admitted += 1
            else:
                assert status == 429, (status, body[:200])
                err = json.loads(body)["error"]
                assert err["code"] == "token_budget_exceeded"
                assert int(headers["retry-after"]) >= 1
                refused_by["team" if "team 'red'" in err["message"] else "user"] += 1
        team_used = sum(used_by.values())
        worst = max(estimate(raw) + mt for raw, mt, _ in reqs)
        print(f"admitted {admitted}, refused {refused_by}, team used {team_used} of {TEAM_BUDGET}, "
              f"users {used_by} of {USER_BUDGET} each, worst case {worst}")
        assert team_used <= TEAM_BUDGET, "the team's budget was overshot"
        for u, used in used_by.items():
            assert used <= USER_BUDGET, f"{u}'s budget was overshot"
        assert used_by["u0"] > USER_BUDGET - worst, "u0's budget binds"
        assert refused_by["user"] > 0 and refused_by["team"] > 0, "both dimensions refused calls"
        # Only admitted requests reached the provider.
        assert len(complete_provider_requests(gw)) == admitted
        assert stat(gw, "tollgate.budget_denied") == 200 - admitted

        # Spans carry every dimension.
        spans = gw.wait_spans(200)
        assert {s["attributes"].get("tollgate.dimension.team") for s in spans} == {"red"}
        assert {s["attributes"].get("tollgate.dimension.user") for s in spans} == set(USERS)
        # So do the GenAI metrics.
        points = wait_for(lambda: [p for p in get_json(gw.collector.port, "/__points")
                                   if p["name"] == "tollgate.budget.decisions"], "budget decision points")
        assert {p["attributes"].get("tollgate.dimension.team") for p in points} == {"red"}
        assert {p["attributes"].get("tollgate.dimension.user") for p in points} <= set(USERS)

        # Thresholds: each fired exactly once across both workers, as OTLP log records and webhooks.
        records = wait_for(lambda: len(logs(gw)) >= 3 and logs(gw), "3 threshold log records")
        time.sleep(1.0)  # anything duplicated would arrive by now
        records = logs(gw)
        fired = sorted(r["attributes"]["tollgate.budget.threshold"] for r in records)
        assert fired == [0.25, 0.5, 0.75], records
        for r in records:
            a = r["attributes"]
            assert r["event_name"] == "tollgate.budget.threshold"
            assert (a["tollgate.budget.dimension"], a["tollgate.budget.subject"]) == ("team", "red")
            assert a["tollgate.budget.rule"] == "rules[0]" and a["tollgate.budget.measure"] == "tokens"
            assert a["tollgate.budget.limit"] == TEAM_BUDGET
            assert a["tollgate.budget.usage"] >= a["tollgate.budget.threshold"] * TEAM_BUDGET
            assert a["tollgate.budget.window.id"] == time.strftime("%Y-%m", time.gmtime())
            assert r["severity_number"] == 9 and r["severity_text"] == "INFO"
            assert r["resource"]["service.name"] == "tollgate"
        assert stat(gw, "tollgate.budget_thresholds") == 3
        wait_for(lambda: len(received) >= 3, "3 webhook posts")
        time.sleep(0.5)
        assert sorted(p["body"]["threshold"] for p in received) == [0.25, 0.5, 0.75]
        assert all(p["path"] == "/hooks/tollgate" for p in received)
        assert all(p["headers"].get("authorization") == "Bearer hook-secret" for p in received)
        assert all(p["body"]["subject"] == "red" and p["body"]["dimension"] == "team" for p in received)
        assert stat(gw, "tollgate.budget_webhook_delivered") == 3
    finally:
        gw.stop()
        hooks.stop()


@pytest.mark.parametrize("receiver", ["down", "slow"])
def test_a_webhook_receiver_that_is_down_or_slow_costs_traffic_nothing(topology, receiver):
    if receiver == "slow":
        hooks, received = hooks_server(delay_s=2.0)
        port = hooks.port
    else:
        hooks, received, port = None, [], free_port()  # nothing listens there
    rules = [{"team": "*", "window": "day", "tokens": 1_000, "thresholds": [0.01, 0.02, 0.03]}]
    gw = topology(plugin(rules, {"cluster": "alert_hooks", "timeout_ms": 300, "max_attempts": 2,
                                 "max_queue": 2}),
                  extra_clusters=hooks_cluster(port))
    try:
        body = {"model": "gpt-4o", "max_tokens": 10, "messages": []}
        statuses = [gw.call(CHAT, body, dict(OPENAI, **{"x-team": "blue"}))[0] for _ in range(3)]
        assert statuses == [200, 200, 200]
        # Canned usage 19 tokens a call: the first crosses 1%, the second 2% and 3%... each once.
        wait_for(lambda: stat(gw, "tollgate.budget_webhook_dropped") >= 1, "a dropped webhook")
        # The log records are not lost with the webhook.
        wait_for(lambda: len(logs(gw)) >= 3, "threshold log records")
        assert sorted(r["attributes"]["tollgate.budget.threshold"] for r in logs(gw)) == [0.01, 0.02, 0.03]
        assert stat(gw, "tollgate.budget_webhook_delivered") == 0
        assert received == [] or receiver == "slow"
    finally:
        if hooks:
            hooks.stop()


def test_a_calendar_month_budget_refuses_with_the_seconds_to_the_month_end(topology):
    gw = topology(plugin([{"team": "*", "window": "month", "utc_offset": "-08:00", "tokens": 5}]))
    status, headers, _ = gw.call(CHAT, {"model": "gpt-4o", "max_tokens": 10, "messages": []},
                                 dict(OPENAI, **{"x-team": "tiny"}))
    assert status == 429
    # The end of this month at UTC-08:00.
    now = time.time()
    local = time.gmtime(now - 8 * 3600)
    y, m = (local.tm_year + 1, 1) if local.tm_mon == 12 else (local.tm_year, local.tm_mon + 1)
    import calendar
    end = calendar.timegm((y, m, 1, 8, 0, 0))
    assert abs(int(headers["retry-after"]) - (end - now)) <= 2, (headers["retry-after"], end - now)
    assert headers["x-ratelimit-reset-tokens"] == headers["retry-after"] + "s"
    assert complete_provider_requests(gw) == []


def test_the_openai_sdk_sees_a_users_spent_budget_as_its_rate_limit_error(topology, monkeypatch):
    openai = pytest.importorskip("openai")
    rules = [{"user": "*", "window": "week", "tokens": 5}]
    gw = with_jwt(Topology(plugin(rules)))
    try:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{gw.port}")
        monkeypatch.setenv("NO_PROXY", "")
        client = openai.OpenAI(base_url="http://api.openai.com/v1", api_key=token("u9"), max_retries=0)
        with pytest.raises(openai.RateLimitError) as err:
            client.chat.completions.create(model="gpt-4o", max_tokens=10,
                                           messages=[{"role": "user", "content": "hi"}])
        assert err.value.status_code == 429
        assert err.value.code == "token_budget_exceeded"
        assert "user 'u9'" in err.value.message
        assert int(err.value.response.headers["retry-after"]) >= 1
        assert complete_provider_requests(gw) == []
    finally:
        gw.stop()


def test_the_inspection_route_reads_the_counters_and_refuses_strangers(topology):
    import hashlib
    admin = "s3cr3t-admin-token"
    rules = [{"team": "*", "window": "month", "tokens": 10_000}, {"tenant": "*", "window": "1d", "tokens": 10_000}]
    gw = topology(plugin(rules, inspect={"path": "/tollgate/budgets",
                                         "token_sha256": [hashlib.sha256(admin.encode()).hexdigest()]}))
    assert gw.call(CHAT, {"model": "gpt-4o", "max_tokens": 10, "messages": []},
                   dict(OPENAI, **{"x-team": "red", "x-tenant-id": "acme"}))[0] == 200

    def get(path, auth=None):
        import http.client
        c = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
        c.request("GET", path, headers={"host": "gateway", **({"authorization": auth} if auth else {})})
        r = c.getresponse()
        body = r.read()
        c.close()
        return r.status, dict(r.getheaders()), body

    # Canned usage: 12 in, 7 out.
    status, headers, body = get("/tollgate/budgets?team=red&tenant=acme", f"Bearer {admin}")
    assert status == 200, body
    doc = json.loads(body)
    rows = {(r["dimension"], r["subject"]): r for r in doc["counters"]}
    assert rows[("team", "red")]["used"]["tokens"] == 19
    assert rows[("team", "red")]["remaining"]["tokens"] == 10_000 - 19
    assert rows[("team", "red")]["window"]["id"] == time.strftime("%Y-%m", time.gmtime())
    assert rows[("tenant", "acme")]["used"]["tokens"] == 19
    assert headers.get("cache-control") == "no-store"
    # Reading writes nothing: the same answer again.
    assert json.loads(get("/tollgate/budgets?team=red&tenant=acme", f"Bearer {admin}")[2])["counters"] == doc["counters"]
    assert get("/tollgate/budgets?team=red")[0] == 403
    assert get("/tollgate/budgets?team=red", "Bearer guess")[0] == 403
    assert get("/tollgate/budgets?squad=red", f"Bearer {admin}")[0] == 400
    assert stat(gw, "tollgate.budget_inspect_refused") == 2
    # Nothing but the one call reached the provider.
    assert len(gw.provider_requests()) == 1


def test_audio_tokens_are_priced_as_audio_in_cost_and_cost_budgets(topology):
    """gpt-audio's prices (text 2.50 / 10, audio 32 / 64 USD per million tokens) on OpenAI's own usage
    breakdown: 20 text + 80 audio tokens in, 10 text + 40 audio out."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "testenv"))
    import mock_provider
    fx = mock_provider.load_fixture("openai/chat-audio")
    c = default_plugin_config()
    c["tenant"] = {"header": "x-tenant-id"}
    c["pricing"] = {"gpt-audio*": {"input": 2.5, "output": 10, "audio_input": 32, "audio_output": 64}}
    c["budgets"] = [{"tenant": "*", "window": "month", "cost_usd": 0.03}]
    gw = topology(c)
    h = {"host": fx["host"], "x-mock-fixture": "openai/chat-audio", "x-tenant-id": "voice"}
    statuses = [gw.call(fx["path"], fx["request"], h)[0] for _ in range(4)]
    # Each call costs $0.00527 with audio priced as audio ($0.00075 as text) and reserves its worst case at
    # the audio prices: the fourth does not fit. Priced as text, it would.
    assert statuses == [200, 200, 200, 429], statuses
    spans = [s for s in gw.wait_spans(4) if s["attributes"].get("http.response.status_code") == 200]
    want = (20 * 2.5 + 80 * 32 + 10 * 10 + 40 * 64) / 1e6
    for s in spans:
        a = s["attributes"]
        assert a["tollgate.cost.usd"] == pytest.approx(want)
        assert (a["gen_ai.usage.audio.input_tokens"], a["gen_ai.usage.text.input_tokens"]) == (80, 20)
        assert (a["gen_ai.usage.audio.output_tokens"], a["gen_ai.usage.text.output_tokens"]) == (40, 10)
