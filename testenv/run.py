"""`make run`: a local gateway — real Envoy with tollgate, the mock provider and an OTLP receiver — that
sends a few requests, prints what the gateway recorded, and stays up until Ctrl-C."""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from gateway import Topology  # noqa: E402

PORT = int(os.environ.get("TOLLGATE_PORT", "10000"))


def show(span):
    a = span["attributes"]
    keys = ["gen_ai.provider.name", "gen_ai.request.model", "gen_ai.response.model", "gen_ai.usage.input_tokens",
            "gen_ai.usage.output_tokens", "gen_ai.response.finish_reasons", "http.response.status_code"]
    fields = ", ".join(f"{k.split('.', 1)[1]}={a[k]}" for k in keys if k in a)
    print(f"  span '{span['name']}' trace={span['trace_id'][:8]}… {fields}")


def rls_setup():
    """TOLLGATE_RLS=1: Redis + the test rate-limit service, and budgets with `backend: "rls"` (100k tokens per
    day for each tenant of the `x-tenant-id` header)."""
    from gateway import default_plugin_config
    from ratelimit_env import RateLimitService, Redis, cluster_yaml

    redis = Redis().start()
    rls = RateLimitService(redis).start()
    cfg = default_plugin_config()
    cfg["tenant"] = {"header": "x-tenant-id"}
    cfg["budgets"] = {"backend": "rls", "rules": [{"tenant": "*", "window": "1d", "tokens": 100000}],
                      "rls": {"cluster": "ratelimit", "timeout_ms": 200}}
    print(f"Redis on 127.0.0.1:{redis.port}, rate-limit service on 127.0.0.1:{rls.port} (budgets.backend=rls)")
    return [rls, redis], {"plugin_config": cfg, "extra_clusters": cluster_yaml(rls.port)}


def main():
    extras, kw = rls_setup() if os.environ.get("TOLLGATE_RLS") == "1" else ([], {})
    topo = Topology(listen_port=PORT, **kw).start()
    try:
        print(f"tollgate gateway on http://127.0.0.1:{PORT} (Envoy admin http://127.0.0.1:{topo.envoy.admin_port})")
        print(f"mock provider on 127.0.0.1:{topo.provider.port}, OTLP receiver on 127.0.0.1:{topo.collector.port}\n")
        for fixture in ["openai/chat-json"]:
            print(f"sending {fixture} …")
            import mock_provider
            fx = mock_provider.load_fixture(fixture)
            status, _, body = topo.call(fx["path"], fx["request"], {"host": fx["host"], "x-mock-fixture": fixture})
            print(f"  client got {status}: {body[:100].decode(errors='replace')}…")
        status, _, _ = topo.call("/v1/chat/completions",
                                 {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
                                 {"host": "api.openai.com"})
        print(f"sending a plain chat completion … {status}")
        print("\nwhat the gateway recorded (OTLP spans received by the local collector):")
        for span in topo.wait_spans(2):
            show(span)
        stats = topo.envoy.stats()
        print("\nEnvoy stats:", json.dumps({k: v for k, v in stats.items() if v}, indent=None))
        print(f"""
Point an OpenAI client at the gateway (requests reach the mock provider here):
  export HTTP_PROXY=http://127.0.0.1:{PORT} OPENAI_BASE_URL=http://api.openai.com/v1 OPENAI_API_KEY=sk-test
  curl -s -x http://127.0.0.1:{PORT} http://api.openai.com/v1/chat/completions \\
       -H 'content-type: application/json' -d '{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"hi"}}]}}'
Spans: curl -s http://127.0.0.1:{topo.collector.port}/__spans | python3 -m json.tool
Stats: curl -s http://127.0.0.1:{topo.envoy.admin_port}/stats/prometheus | grep tollgate
Ctrl-C to stop.""", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("\nstopping")
    finally:
        topo.stop()
        for p in extras:
            p.stop()


if __name__ == "__main__":
    main()
