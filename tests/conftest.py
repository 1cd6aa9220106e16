"""End-to-end test harness: real Envoy + the built tollgate.wasm + a mock provider + an OTLP receiver.
Every process and server is started here on 127.0.0.1 and stopped here; Envoy's log is printed on failure."""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "testenv"))

from gateway import Topology  # noqa: E402

_topologies = []


@pytest.fixture(scope="session")
def gw():
    """A shared gateway with the default plugin config (2 workers). Tests call gw.reset() first."""
    t = Topology().start()
    _topologies.append(t)
    yield t
    t.stop()


@pytest.fixture
def topology():
    """Factory for a gateway with a custom plugin config; stopped at the end of the test."""
    made = []

    def make(plugin_config=None, **kw):
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
