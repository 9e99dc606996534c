"""`tradepulse generate`: the committed files that list domains are what the registry generates, and
a sixth domain (a package and one registry line) gets every one of them with no other edit."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from services import registry
from services.gateway.app import PORT as GATEWAY_PORT
from services.release.service import PORT as RELEASE_PORT
from services.tools import chart, generate
from services.tools.history import PORT as HISTORY_PORT
from tests.toy import TOY

ROOT = Path(__file__).resolve().parents[2]
TOY_PORT = 6068


def test_the_committed_files_are_what_the_registry_generates() -> None:
    assert generate.check() == [], "run: tradepulse generate"


@pytest.fixture
def sixth_domain() -> Iterator[None]:
    """The toy domain added as its registry line would add it (the registry's dicts, in place)."""
    toy = replace(TOY, port=TOY_PORT)
    domains, sources, types = dict(registry.DOMAINS), dict(registry.SOURCES), dict(registry.EVENT_TYPES)
    registry.DOMAINS["toy"] = registry.SOURCES["toy"] = toy
    registry.EVENT_TYPES.update(toy.catalog.events)
    try:
        yield
    finally:
        registry.DOMAINS.clear()
        registry.DOMAINS.update(domains)
        registry.SOURCES.clear()
        registry.SOURCES.update(sources)
        registry.EVENT_TYPES.clear()
        registry.EVENT_TYPES.update(types)


def test_a_sixth_domain_gets_every_generated_file_from_its_registry_line(sixth_domain: None) -> None:
    files = generate.render()
    compose = yaml.safe_load(files["docker-compose.yml"])["services"]
    assert compose["toy"]["command"] == ["worker", "toy"]
    assert compose["toy"]["environment"]["TRADEPULSE_WEB_PORT"] == str(TOY_PORT)
    assert "toy" in compose["gateway"]["depends_on"]
    assert "toy" in compose["prometheus"]["depends_on"]

    secure = yaml.safe_load(files["docker-compose.secure.yml"])
    assert secure["services"]["toy"]["environment"]["KAFKA_SASL_USERNAME"] == "toy"
    assert "kafka_toy_password" in secure["services"]["kafka-setup"]["secrets"]
    assert secure["secrets"]["kafka_toy_password"] == {"file": "./secrets/kafka_toy_password"}
    assert " toy " in files["deploy/secure/make-secrets.sh"]

    setup = files["deploy/kafka/secure-setup.sh"]
    assert "\nuser toy\n" in setup
    assert "topic --create --topic toy.events.v1 " in setup
    assert "--allow-principal User:toy --operation Read --topic toy.events.v1" in setup

    scrape = yaml.safe_load(files["deploy/prometheus/prometheus.yml"])["scrape_configs"]
    assert {"targets": [f"toy:{TOY_PORT}"]} in [c for job in scrape for c in job["static_configs"]]

    board = json.loads(files[generate.dashboard_path("toy")])
    exprs = " ".join(t["expr"] for p in board["panels"] for t in p["targets"])
    assert "tradepulse_indicator_toy_delivery_time_seconds" in exprs
    assert "tradepulse_indicator_toy_wait_time_seconds" in exprs

    assert f"  toy        http://127.0.0.1:{TOY_PORT}/metrics" in files["README.md"]
    assert "toy" in [s["name"] for s in chart.registry()["services"]]
    assert "toy.events.v1" in registry.catalogs()["toy"][0].topic


def test_ports_are_unique_across_the_stack() -> None:
    ports = [d.port for d in registry.DOMAINS.values()]
    ports += [HISTORY_PORT, RELEASE_PORT, GATEWAY_PORT]
    assert len(ports) == len(set(ports))


def test_a_region_without_its_markers_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="needs one line ending '>>> generated: principals'"):
        generate.fill("no markers here\n", "principals", "x\n", "deploy/secure/make-secrets.sh")
