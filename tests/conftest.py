"""End-to-end test harness: real Envoy + tollgate + a mock provider + an OTLP receiver. Every process and server
is started here on 127.0.0.1 and stopped here; Envoy's log is printed on failure.

Every end-to-end test runs against both builds of tollgate: `build` is a session fixture with the params
"wasm" (tollgate.wasm in V8) and "native" (libtollgate.so, an Envoy dynamic module). The `gw` and `topology`
fixtures depend on it; a module whose tests start gateways themselves declares it with
`pytestmark = pytest.mark.usefixtures("build")`, and gateways started during a test run the test's build
(`gateway.set_build`). A module-scoped fixture that starts gateways takes `build` as an argument, so that it
is made once per build.

A test of something only one build has is marked `@pytest.mark.wasm_only("why")` and skipped for the
other, with the reason. A test that needs only the native host's own plumbing (configuration, stats, the
module's loading), not the per-request exchange, is marked `host_only` and runs on the native build already.

`TOLLGATE_E2E_BUILDS=wasm` (or `native`) runs one build only."""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "testenv"))

import gateway  # noqa: E402
from gateway import Topology  # noqa: E402

# The one switch for the native build's end-to-end runs: its host runs the core's per-request exchange, so
# every end-to-end test runs against it. False would run only `host_only` tests and tests/test_native_module.py
# on the native build (a host that passes streams through untouched).
NATIVE_RUNS_THE_EXCHANGE = True

_topologies = []


def _builds():
    wanted = [b for b in os.environ.get("TOLLGATE_E2E_BUILDS", ",".join(gateway.BUILDS)).split(",") if b]
    params = []
    for b in wanted:
        if b not in gateway.BUILDS:
            raise pytest.UsageError(f"TOLLGATE_E2E_BUILDS: unknown build {b!r}")
        params.append(pytest.param(b, id=b))
    return params


def pytest_configure(config):
    config.addinivalue_line("markers", "wasm_only(reason): the test checks something only the Wasm build has")
    config.addinivalue_line("markers", "host_only: the test needs the native host's plumbing, not the exchange")


@pytest.fixture(scope="session", params=_builds())
def build(request):
    """The tollgate build under test; gateways started while it is active run it."""
    gateway.set_build(request.param)
    yield request.param


@pytest.fixture(autouse=True)
def _only_for_its_build(request):
    if "build" not in request.fixturenames or request.getfixturevalue("build") == "wasm":
        return
    m = request.node.get_closest_marker("wasm_only")
    if m is not None:
        pytest.skip(f"Wasm build only: {m.args[0] if m.args else m.kwargs.get('reason', '')}")
    if not NATIVE_RUNS_THE_EXCHANGE and request.node.get_closest_marker("host_only") is None:
        pytest.skip("native build: the exchange does not run on it "
                    "(NATIVE_RUNS_THE_EXCHANGE in tests/conftest.py is off)")


@pytest.fixture(scope="session")
def gw(build):
    """A shared gateway with the default plugin config (2 workers). Tests call gw.reset() first."""
    t = Topology(build=build).start()
    _topologies.append(t)
    yield t
    t.stop()


@pytest.fixture
def topology(build):
    """Factory for a gateway with a custom plugin config; stopped at the end of the test."""
    made = []

    def make(plugin_config=None, **kw):
        kw.setdefault("build", build)
        t = Topology(plugin_config, **kw).start()
        made.append(t)
        _topologies.append(t)
        return t

    yield make
    for t in made:
        t.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" and rep.failed:
        for t in _topologies:
            if t.envoy.proc is not None:
                log = t.envoy.log()
                rep.sections.append(("envoy log (tail)", log[-6000:]))
