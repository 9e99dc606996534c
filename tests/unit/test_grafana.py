"""Grafana provisioning: every dashboard is valid JSON with unique ids, queries the provisioned
Prometheus data source, and the views the operators need exist."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

GRAFANA = Path(__file__).resolve().parents[2] / "deploy" / "grafana"


def test_the_dashboards_exist_with_unique_uids_and_panel_ids() -> None:
    dashboards = {p.stem: json.loads(p.read_text()) for p in (GRAFANA / "dashboards").glob("*.json")}
    from services.registry import DOMAINS

    generated = {f"{name}-indicators" for name in DOMAINS}  # tradepulse generate
    assert set(dashboards) == {"overview", "customs", "taxrefund", "pipeline", "cycle", *generated}
    assert len({d["uid"] for d in dashboards.values()}) == len(dashboards)
    for d in dashboards.values():
        ids = [p["id"] for p in d["panels"]]
        assert len(ids) == len(set(ids))
        assert all(p["targets"] and all(t["expr"] for t in p["targets"]) for p in d["panels"])


def test_panels_use_the_provisioned_data_source() -> None:
    source = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    uid = source["datasources"][0]["uid"]
    for path in (GRAFANA / "dashboards").glob("*.json"):
        for panel in json.loads(path.read_text())["panels"]:
            assert panel["datasource"]["uid"] == uid
            assert all(t["datasource"]["uid"] == uid for t in panel["targets"])


def test_the_dashboard_provider_points_where_compose_mounts_the_dashboards() -> None:
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "tradepulse.yml").read_text())
    compose = yaml.safe_load((GRAFANA.parents[1] / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert any(m.endswith(":" + provider["providers"][0]["options"]["path"] + ":ro") for m in mounts)
