"""The Helm chart (deploy/helm/tradepulse), checked offline: Kubernetes cannot run here. The pinned
Helm (scripts/setup builds it) lints and renders it with the default and the production values;
built-in kinds are validated against Kubernetes' schemas (kubernetes-validate); the custom
resources carry the API versions and fields the chart relies on; the ACLs of every KafkaUser are
`tradepulse acls`'s; no ScaledObject may exceed the partitions; every pod has probes, resources and
a grace period above the stop timeout; and a service added to the registry appears with no
template edited."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from services.registry import DOMAINS
from services.runtime.settings import Settings
from services.tools import chart

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "tradepulse"
HELM = ROOT / "deploy" / "helm" / ".cache" / "v4.3.2" / "helm"
KUBERNETES = "1.33"  # the oldest minor the chart is checked against
BUILT_IN = ("v1", "apps/v1", "policy/v1", "autoscaling/v2", "networking.k8s.io/v1")
CUSTOM = {
    "KafkaTopic": "kafka.strimzi.io/v1",
    "KafkaUser": "kafka.strimzi.io/v1",
    "ScaledObject": "keda.sh/v1alpha1",
    "TriggerAuthentication": "keda.sh/v1alpha1",
    "ServiceMonitor": "monitoring.coreos.com/v1",
    "PrometheusRule": "monitoring.coreos.com/v1",
}
STOP_S = Settings.model_fields["stop_timeout_s"].default


def _helm(*args: str, chart_dir: Path = CHART) -> str:
    if not os.access(HELM, os.X_OK):
        pytest.fail(
            f"{HELM} is missing: scripts/setup builds it (go install helm.sh/helm/v4/cmd/helm@v4.3.2)"
        )
    done = subprocess.run([str(HELM), *args], capture_output=True, text=True, timeout=120, cwd=chart_dir)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _render(*values: str, chart_dir: Path = CHART) -> list[dict[str, Any]]:
    args = ["template", "tp", str(chart_dir)] + [a for v in values for a in ("-f", str(chart_dir / v))]
    return [d for d in yaml.safe_load_all(_helm(*args, chart_dir=chart_dir)) if d]


@pytest.fixture(scope="module", params=[(), ("values-production.yaml",)], ids=["default", "production"])
def rendered(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return _render(*request.param)


def test_the_generated_files_match_the_code() -> None:
    assert chart.check() == [], "run `tradepulse generate`"


def test_helm_lint_passes_with_both_values_files() -> None:
    for values in ("values.yaml", "values-production.yaml"):
        assert "0 chart(s) failed" in _helm("lint", str(CHART), "-f", str(CHART / values))


def test_built_in_kinds_are_valid_and_custom_resources_have_the_versions_relied_on(
    rendered: list[dict[str, Any]],
) -> None:
    for doc in rendered:
        if doc["apiVersion"] in BUILT_IN:
            kubernetes_validate.validate(doc, KUBERNETES, strict=True)
        else:
            assert CUSTOM.get(doc["kind"]) == doc["apiVersion"], (doc["kind"], doc["apiVersion"])
            assert doc["spec"], doc["metadata"]["name"]


def _of(rendered: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in rendered if d["kind"] == kind}


def test_every_service_of_the_registry_runs_with_probes_resources_and_grace(
    rendered: list[dict[str, Any]],
) -> None:
    sets, deployments = _of(rendered, "StatefulSet"), _of(rendered, "Deployment")
    assert {f"tp-{name}" for name in DOMAINS} == set(sets)
    assert {"tp-gateway", "tp-history", "tp-release"} == set(deployments)
    for name, workload in {**sets, **deployments}.items():
        pod = workload["spec"]["template"]["spec"]
        assert pod["terminationGracePeriodSeconds"] > STOP_S, name
        for container in pod["containers"]:
            assert container["readinessProbe"]["httpGet"]["path"] == "/ready", name
            assert container["livenessProbe"]["httpGet"]["path"] == "/health", name
            assert container["resources"]["requests"], name
            assert container["resources"]["limits"], name
    for name, workload in sets.items():  # local state on a volume of the pod's own
        assert workload["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "state", name
    assert set(_of(rendered, "PodDisruptionBudget")) >= set(sets)


def test_keda_never_scales_beyond_the_partitions(rendered: list[dict[str, Any]]) -> None:
    topics = _of(rendered, "KafkaTopic")
    partitions = {t["spec"]["topicName"]: t["spec"]["partitions"] for t in topics.values()}
    scaled = _of(rendered, "ScaledObject")
    assert {f"tp-{name}" for name in DOMAINS} == set(scaled)
    for name, obj in scaled.items():
        for trigger in obj["spec"]["triggers"]:
            assert obj["spec"]["maxReplicaCount"] <= partitions[trigger["metadata"]["topic"]], name
            assert trigger["metadata"]["consumerGroup"] == f"tradepulse-{name.removeprefix('tp-')}"
        assert obj["spec"]["cooldownPeriod"] >= 300, "a rebalance's restore must not be repeated often"


def test_kafka_users_have_exactly_the_acls_of_the_code(rendered: list[dict[str, Any]]) -> None:
    users = _of(rendered, "KafkaUser")
    expected = chart.registry()["users"]
    assert set(users) == {f"tradepulse-{p}" for p in expected}
    for process, acls in expected.items():
        assert users[f"tradepulse-{process}"]["spec"]["authorization"]["acls"] == acls, process
    # and those are docs/security.md's table: one row per process, derived from the same access_of
    security = (ROOT / "docs" / "security.md").read_text()
    assert "`tradepulse worker release`" in security


def test_every_topic_is_created_as_the_services_create_it(rendered: list[dict[str, Any]]) -> None:
    topics = {t["spec"]["topicName"]: t["spec"] for t in _of(rendered, "KafkaTopic").values()}
    generated = {t["name"]: t["config"] for t in chart.registry()["topics"]}
    assert set(topics) == set(generated)
    for name, config in generated.items():
        assert topics[name].get("config", {}) == config, name


def test_only_the_gateway_takes_traffic_from_outside(rendered: list[dict[str, Any]]) -> None:
    policies = _of(rendered, "NetworkPolicy")
    outside = [p for p in policies.values() if any("from" not in rule for rule in p["spec"]["ingress"])]
    assert [p["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for p in outside] == [
        "gateway"
    ]


def test_a_sixth_service_in_the_registry_needs_no_template_edit(tmp_path: Path) -> None:
    copy = tmp_path / "tradepulse"
    shutil.copytree(CHART, copy)
    registry = yaml.safe_load((copy / "files" / "registry.yaml").read_text())
    sixth = {
        **registry["services"][0],
        "name": "sixth",
        "command": ["worker", "sixth"],
        "port": 6068,
        "group": "tradepulse-sixth",
        "lagTopics": ["sixth.events.v1"],
    }
    registry["services"].append(sixth)
    registry["topics"].append({"name": "sixth.events.v1", "config": {}})
    (copy / "files" / "registry.yaml").write_text(yaml.safe_dump(registry))
    rendered = _render(chart_dir=copy)
    assert "tp-sixth" in _of(rendered, "StatefulSet")
    assert "tp-sixth" in _of(rendered, "ScaledObject")
    assert "tp-sixth" in _of(rendered, "ServiceMonitor")


def test_tradepulse_acls_prints_the_kafka_user_the_chart_renders(capsys: pytest.CaptureFixture[str]) -> None:
    from services.tools.acls import print_acls

    rendered = _of(_render(), "KafkaUser")
    for process in chart.registry()["users"]:
        assert print_acls(process, f"User:tradepulse-{process}", chart.chart_settings(), "strimzi") == 0
        printed = yaml.safe_load(capsys.readouterr().out)
        assert printed["spec"] == rendered[f"tradepulse-{process}"]["spec"], process
