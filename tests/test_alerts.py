"""testenv/prometheus-alerts.yml: valid for Prometheus (`promtool check rules`), and each alert fires on the
series that should raise it and not on healthy ones (`promtool test rules`, cases in
tests/fixtures/alerts/). That the metric names and labels are ones tollgate exports is checked against a
real export in tests/test_dashboard_metrics.py. promtool comes from Debian's prometheus package
(scripts/setup.sh)."""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
RULES = REPO / "testenv" / "prometheus-alerts.yml"
CASES = REPO / "tests" / "fixtures" / "alerts" / "tollgate-alerts.test.yml"


@pytest.fixture(scope="module")
def promtool():
    path = shutil.which("promtool")
    if not path:
        pytest.skip("promtool not installed (scripts/setup.sh installs Debian's prometheus package)")
    return path


def test_rules_pass_promtool_check(promtool):
    res = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS: 6 rules found" in res.stdout


def test_rules_fire_when_they_should(promtool):
    res = subprocess.run([promtool, "test", "rules", CASES.name], cwd=CASES.parent, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_every_alert_has_a_test_case():
    alerts = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    cases = yaml.safe_load(CASES.read_text())
    tested = {c["alertname"] for t in cases["tests"] for c in t["alert_rule_test"] if c["exp_alerts"]}
    assert alerts == tested, alerts ^ tested
    assert {"TollgateBudgetNearlyExhausted", "TollgateSpansDropped", "TollgateUninspectedCallsRising"} <= alerts


def test_compose_prometheus_loads_the_rules():
    compose = yaml.safe_load((REPO / "testenv" / "docker-compose.yaml").read_text())
    mounts = compose["services"]["prometheus"]["volumes"]
    target = next(m.split(":")[1] for m in mounts if m.split(":")[0] == "./prometheus-alerts.yml")
    assert yaml.safe_load((REPO / "testenv" / "prometheus.yml").read_text())["rule_files"] == [target]
