"""The local stack fails at once, naming the fix, when a program it needs is missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.devstack import kafka, postgres
from services.devstack.process import MissingTool, require


def test_require_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(MissingTool, match="apt-get install -y maven"):
        require("mvn", kafka.MAVEN_FIX)


def test_kafka_start_without_java_names_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(MissingTool, match="openjdk-17"):
        kafka.KafkaNode(tmp_path).start()


def test_postgres_without_server_binaries_names_the_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(postgres, "PG_BIN", tmp_path / "missing")
    with pytest.raises(MissingTool, match="postgresql-15"):
        postgres.PostgresCluster(tmp_path).start()


def test_kafka_version_comes_from_the_pom() -> None:
    assert kafka.kafka_version().startswith("4.")


def test_server_properties_fit_a_single_development_node(tmp_path: Path) -> None:
    props = kafka.KafkaNode(tmp_path, port=1234, controller_port=1235)._properties()
    lines = set(props.splitlines())
    assert "process.roles=broker,controller" in lines
    assert "group.initial.rebalance.delay.ms=0" in lines
    assert "offsets.topic.replication.factor=1" in lines
    assert "transaction.state.log.replication.factor=1" in lines
    assert "controller.quorum.bootstrap.servers=127.0.0.1:1235" in lines
    assert "auto.create.topics.enable=false" in lines


def test_cluster_ids_never_look_like_an_option(monkeypatch: pytest.MonkeyPatch) -> None:
    # uuid bytes whose base64url form starts with "-" (0xf8 -> "-"), then an ordinary one.
    import uuid

    ids = iter([uuid.UUID(bytes=b"\xf8" + b"\x00" * 15), uuid.UUID(int=1)])
    monkeypatch.setattr(uuid, "uuid4", lambda: next(ids))
    cluster_id = kafka._cluster_id()
    assert not cluster_id.startswith("-")
    assert len(cluster_id) == 22
