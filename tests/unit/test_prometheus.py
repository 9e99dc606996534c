"""Prometheus configuration and rules: valid for promtool, unit-tested with `promtool test rules`,
and naming only metrics the services really export."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

# imported for their metrics: the runtime's (the registry imports the domains') and history's
import services.runtime.metrics
import services.tools.history  # noqa: F401
from services.engine.metrics import gauge_name
from services.registry import DOMAINS

PROM = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


def _promtool(*args: str, cwd: Path = PROM) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not found: apt-get install -y prometheus (.ci/run does)")
    return subprocess.run([promtool, *args], cwd=cwd, capture_output=True, text=True, check=False)


def test_configuration_is_valid() -> None:
    done = _promtool("check", "config", "prometheus.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_rules_pass_their_unit_tests() -> None:
    done = _promtool("test", "rules", "tradepulse_test.yml", cwd=PROM / "tests")
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_a_unit_test() -> None:
    rules = (PROM / "rules" / "tradepulse.yml").read_text()
    tests = (PROM / "tests" / "tradepulse_test.yml").read_text()
    alerts = set(re.findall(r"- alert: (\w+)", rules))
    tested = set(re.findall(r"alertname: (\w+)", tests))
    assert alerts
    assert alerts <= tested


def test_rules_name_only_metrics_the_services_export() -> None:
    def base(name: str) -> str:
        return re.sub(r"_(bucket|sum|count|total)$", "", name)

    exported = {base(family.name) for family in REGISTRY.collect()}
    exported |= {gauge_name(spec) for d in DOMAINS.values() for spec in d.indicators}  # made on first use
    rules = (PROM / "rules" / "tradepulse.yml").read_text()
    used = {base(n) for n in re.findall(r"\b(tradepulse_[a-z0-9_]+)", rules)}
    assert used
    assert sorted(used - exported) == []
