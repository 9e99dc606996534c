"""Real components for integration tests: one Apache Kafka broker and one PostgreSQL cluster per
test session (or the external ones named by KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL)."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.devstack.kafka import KafkaNode
from services.devstack.postgres import PostgresCluster
from services.devstack.probe import kafka_cluster_info
from services.devstack.process import free_port
from tests.conftest import COMPONENTS
from tests.integration.harness import STATE_ROOT, StartWorker, WorkerProcess, new_prefix, running, worker_env


@pytest.fixture(scope="session", autouse=True)
def _state_folders() -> Iterator[None]:
    """The local state the session's workers leave behind goes with the session."""
    yield
    shutil.rmtree(STATE_ROOT, ignore_errors=True)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        COMPONENTS["kafka"] = f"external {external}: {kafka_cluster_info(external)}"
        yield external
        return
    home = Path(tempfile.mkdtemp(prefix="tradepulse-kafka-"))
    node = KafkaNode(home, port=free_port(), controller_port=free_port())
    node.start()
    COMPONENTS["kafka"] = f"{node.version_line()} at {node.bootstrap}, KRaft single node"
    try:
        yield node.bootstrap
    finally:
        node.stop()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def private_kafka() -> Iterator[KafkaNode]:
    """A broker of this test's own, so the test can stop and start it."""
    home = Path(tempfile.mkdtemp(prefix="tradepulse-kafka-own-"))
    with running(KafkaNode(home, port=free_port(), controller_port=free_port()), home) as node:
        yield node


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    external = os.environ.get("DATABASE_URL")
    if external:
        COMPONENTS["postgresql"] = f"external: {_server_version(external)}"
        yield external
        return
    home = Path(tempfile.mkdtemp(prefix="tradepulse-pg-"))
    home.chmod(0o755)
    cluster = PostgresCluster(home, port=free_port())
    cluster.start()
    COMPONENTS["postgresql"] = f"{_server_version(cluster.url)} at {cluster.url}"
    try:
        yield cluster.url
    finally:
        cluster.stop()
        shutil.rmtree(home, ignore_errors=True)


def _server_version(url: str) -> str:
    import asyncpg

    async def version() -> str:
        conn = await asyncpg.connect(url)
        try:
            return str(await conn.fetchval("SELECT version()"))
        finally:
            await conn.close()

    return asyncio.run(version())


@pytest.fixture
def prefix() -> str:
    """Topic and consumer-group names of their own for each test."""
    return new_prefix()


@pytest.fixture
def start_worker(kafka_bootstrap: str, prefix: str, tmp_path: Path) -> Iterator[StartWorker]:
    """Start ``tradepulse worker <service>`` processes; all are stopped after the test."""
    started: list[WorkerProcess] = []

    def start(service: str = "customs", **env: str) -> WorkerProcess:
        """A worker of ``service``; its local state folder is that of the last stopped worker of
        the service (a restart on the same machine) or a new one (another machine), unless ``env``
        names TRADEPULSE_STATE_DIR."""
        log = tmp_path / f"{service}-{len(started)}.log"
        alive = sum(1 for w in started if w.service == service and w.running())
        env = {"TRADEPULSE_STATE_DIR": str(tmp_path / f"state-{service}-{alive}"), **env}
        worker = WorkerProcess(service, worker_env(kafka_bootstrap, prefix, **env), log).start()
        started.append(worker)
        return worker.wait_ready()

    yield start
    for worker in started:
        worker.stop()
