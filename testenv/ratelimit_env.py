"""Redis and the test rate-limit service (testenv/ratelimit) for `budgets.backend = "rls"`: built on first use
(release build cached in target/ratelimit), started on free ports on 127.0.0.1, stopped by their owner."""

import os
import shutil
import subprocess
import tempfile
import time

from gateway import ROOT, free_port

CRATE = os.path.join(ROOT, "testenv", "ratelimit")
TARGET = os.path.join(ROOT, "target", "ratelimit")
BINARY = os.path.join(TARGET, "release", "tollgate-ratelimit")


def build():
    """`cargo build --release` of the service (a no-op when up to date). Returns the binary path."""
    env = dict(os.environ, CARGO_TARGET_DIR=TARGET)
    subprocess.run(["cargo", "build", "--release", "--locked", "-q"], cwd=CRATE, env=env, check=True)
    return BINARY


def redis_available():
    return shutil.which("redis-server") is not None


class Redis:
    """A private redis-server (no persistence) on a free port; `restart` keeps the port and loses the data."""

    def __init__(self, port=None):
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="tollgate-redis-")
        self.proc = None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}"

    def start(self, timeout=10):
        self.log = open(os.path.join(self.dir, "redis.log"), "wb")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.dir],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
            if self.cli("PING") == "PONG":
                return self
            time.sleep(0.05)
        raise RuntimeError("redis-server not ready")

    def cli(self, *args):
        r = subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True, text=True)
        return r.stdout.strip() if r.returncode == 0 else None

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        if getattr(self, "log", None):
            self.log.close()

    def restart(self):
        self.stop()
        return self.start()


class RateLimitService:
    """testenv/ratelimit listening on a free port (HTTP/2 cleartext), counting in `redis`."""

    def __init__(self, redis, port=None):
        self.redis = redis
        self.port = port or free_port()
        self.proc = None

    def start(self, timeout=20):
        binary = build()
        self.proc = subprocess.Popen([binary, str(self.port), self.redis.url], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        deadline = time.time() + timeout
        line = self.proc.stdout.readline()
        if not line.startswith("ready") or time.time() > deadline:
            self.stop()
            raise RuntimeError(f"rate-limit service did not start: {line!r}")
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        if self.proc and self.proc.stdout:
            self.proc.stdout.close()

    def restart(self):
        self.stop()
        return self.start()


def cluster_yaml(port, name="ratelimit"):
    """An HTTP/2 Envoy cluster for the service (appended to the gateway's `clusters`)."""
    return f"""
  - name: {name}
    type: STATIC
    connect_timeout: 0.5s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{http2_protocol_options: {{}}}}
    load_assignment:
      cluster_name: {name}
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}}}}}]}}]
"""
