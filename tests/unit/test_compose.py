"""docker-compose.yml cannot run here; these tests keep it consistent with the code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from services.cli import long_running_commands
from services.registry import DOMAINS
from services.runtime.settings import Settings
from tests.unit.test_readme import _env_names

ROOT = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def _known(name: str) -> bool:
    names = _env_names()
    if name in names:
        return True
    service_field = name.split("_", 2)  # TRADEPULSE_<SERVICE>_<FIELD>
    return len(service_field) == 3 and f"TRADEPULSE_<SERVICE>_{service_field[2]}" in names


def test_every_domain_service_is_in_the_stack_with_the_infrastructure() -> None:
    assert set(DOMAINS) | {"kafka", "postgres", "prometheus", "grafana"} <= set(SERVICES)


def test_every_long_running_command_of_the_cli_runs_in_the_stack() -> None:
    """Derived from the CLI, so that the next long-running command cannot be forgotten here."""
    commands = [svc.get("command") for svc in SERVICES.values()]
    missing = [c for c in long_running_commands() if c not in commands]
    assert missing == []
    assert ["history"] in long_running_commands()


def test_our_services_get_more_time_to_stop_than_their_own_deadline() -> None:
    deadline_s = Settings.model_fields["stop_timeout_s"].default
    for name, svc in SERVICES.items():
        if "build" in svc:
            grace = svc.get("stop_grace_period", "10s")
            assert grace.endswith("s")
            assert float(grace[:-1]) > deadline_s + 2, name


def test_every_environment_variable_a_service_gets_exists_in_the_settings() -> None:
    for name in [*DOMAINS, "history"]:
        env = SERVICES[name]["environment"]
        unknown = sorted(k for k in env if not _known(k))
        assert unknown == [], f"{name}: {unknown}"


def test_services_run_their_own_worker_on_their_own_port() -> None:
    for name in DOMAINS:
        svc = SERVICES[name]
        assert svc["command"] == ["worker", name]
        port = int(svc["environment"]["TRADEPULSE_WEB_PORT"])
        assert port == DOMAINS[name].port
        assert f"{port}:{port}" in svc["ports"]


def test_prometheus_scrapes_each_service_on_its_compose_port() -> None:
    prom = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    targets = {t for job in prom["scrape_configs"] for cfg in job["static_configs"] for t in cfg["targets"]}
    expected = {f"{name}:{SERVICES[name]['environment']['TRADEPULSE_WEB_PORT']}" for name in DOMAINS}
    assert targets == expected


def test_services_reach_kafka_and_postgres_by_their_compose_names() -> None:
    for name in DOMAINS:
        env = SERVICES[name]["environment"]
        assert env["KAFKA_BOOTSTRAP_SERVERS"].split(":")[0] == "kafka"
        assert "@postgres:" in env["DATABASE_URL"]
        assert "kafka" in SERVICES[name]["depends_on"]


def test_the_image_installs_the_package_and_runs_the_cli() -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert "pip install ." in dockerfile
    assert 'ENTRYPOINT ["tradepulse"]' in dockerfile
