"""Start-up errors name the fix; the stack and PostgreSQL are the real ones."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence

import asyncpg
import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from services.devstack.process import free_port
from tests.integration.harness import REPO, StartWorker, eventually, produce, worker_env
from tests.integration.test_customs import CUSTOMS

WORKER = ("worker", "customs")


def _run_worker(
    env: dict[str, str], timeout_s: float = 60, command: Sequence[str] = WORKER
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *command],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def _refused(env: dict[str, str], command: Sequence[str] = WORKER) -> str:
    """``tradepulse worker customs`` (or ``command``) refused to start as a start-up error must:
    exit 2, no traceback; returns its stderr."""
    done = _run_worker(env, command=command)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    return done.stderr


def test_unreachable_broker_fails_fast_and_names_the_fix(prefix: str) -> None:
    said = _refused(worker_env(f"127.0.0.1:{free_port()}", prefix, TRADEPULSE_STARTUP_TIMEOUT_S="3"))
    assert "unreachable" in said
    assert "tradepulse stack up" in said
    assert "KAFKA_BOOTSTRAP_SERVERS" in said


def test_a_clean_start_and_stop_log_tradepulses_own_lines(start_worker: StartWorker) -> None:
    """An operator reads a few lines of the worker's own, not Faust's two dozen lifecycle lines each
    way, nor its warning about a sensor state it never had (the log level's default is info)."""
    worker = start_worker("customs")
    assert worker.stop() == 0
    lines = [orjson.loads(line) for line in worker.log.read_text().splitlines()]
    said = [(line["level"], line["msg"]) for line in lines]
    assert said == [
        ("info", "created topics"),  # a new prefix: the worker creates its topics
        ("info", "starting worker"),
        ("info", "state restored"),
        ("info", "stopping worker"),
        ("info", "worker stopped"),
    ]


async def test_a_healthy_worker_logs_no_error_or_warning_but_the_records_it_refuses(
    kafka_bootstrap: str, prefix: str, start_worker: StartWorker
) -> None:
    """Faust's livelock check logged multi-line ERRORs ("Stream has not started processing
    TP(...)") about partitions the batch path was processing, 42 in one run under load. The check
    looks at partitions with records not yet fetched: a backlog in small batches, with the check
    every 0.5 s and its timeout at 4 s, keeps the worker behind long enough to be looked at; a
    healthy worker logs no such line, and the warnings it does log are the records it refuses."""
    worker = start_worker(
        "customs", **{**CUSTOMS.fast, "TRADEPULSE_BATCH_MAX_EVENTS": "20"},
        TRADEPULSE_COMMIT_INTERVAL_S="0.2", TRADEPULSE_STREAM_PROCESSING_TIMEOUT_S="4",
    )  # fmt: skip
    _, records = CUSTOMS.corpus(3000, seed=24)
    await produce(kafka_bootstrap, prefix + CUSTOMS.topic, records)
    assert await eventually(lambda: CUSTOMS.consumed([worker]) >= len(records), timeout_s=120)
    assert worker.metric("tradepulse_events_invalid_total") > 0
    assert worker.stop() == 0
    loud = worker.loud()
    assert loud, "a refused record is a warning line (repeats are thinned out, the metric counts each)"
    assert {line["msg"] for line in loud} == {"record dead-lettered"}, loud


def test_bad_configuration_names_the_variable(kafka_bootstrap: str, prefix: str) -> None:
    said = _refused(worker_env(kafka_bootstrap, prefix, TRADEPULSE_TOPIC_PARTITIONS="many"))
    assert "TRADEPULSE_TOPIC_PARTITIONS" in said


def test_malformed_bootstrap_is_a_configuration_error(prefix: str) -> None:
    assert "KAFKA_BOOTSTRAP_SERVERS" in _refused(worker_env("localhost", prefix))


async def test_input_topic_with_other_partition_count_is_refused(kafka_bootstrap: str, prefix: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(prefix + "customs.events.v1", 2, 1)])
    finally:
        await admin.close()
    said = _refused(worker_env(kafka_bootstrap, prefix, TRADEPULSE_TOPIC_PARTITIONS="4"))
    assert "has 2 partitions" in said
    assert "TRADEPULSE_TOPIC_PARTITIONS=2" in said


async def test_postgresql_is_a_real_server_of_version_15_or_later(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        version = await conn.fetchval("SHOW server_version_num")
        assert int(version) >= 150000
        assert await conn.fetchval("SELECT 1 + 1") == 2
    finally:
        await conn.close()


@pytest.mark.parametrize("command", [["worker", "customs"], ["history"]])
def test_a_taken_web_port_is_one_line_naming_the_variable(
    command: list[str], kafka_bootstrap: str, prefix: str, database_url: str
) -> None:
    """Before this was checked first, a worker joined its group and then died of a traceback."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = worker_env(kafka_bootstrap, prefix, DATABASE_URL=database_url, TRADEPULSE_WEB_PORT=str(port))
        said = _refused(env, command)
    last = said.strip().splitlines()[-1]
    assert last.startswith(f"tradepulse {' '.join(command)}: cannot listen on 127.0.0.1:{port}"), last
    assert "TRADEPULSE_WEB_PORT" in last


def test_a_missing_topic_the_worker_may_not_create_is_named_with_the_fix(
    kafka_bootstrap: str, prefix: str
) -> None:
    said = _refused(worker_env(kafka_bootstrap, prefix, TRADEPULSE_CREATE_TOPICS="false"))
    assert f"topics {prefix}customs.events.v1, {prefix}tradepulse-customs-links" in said
    assert "do not exist and TRADEPULSE_CREATE_TOPICS=false: an administrator creates them" in said
    assert "tradepulse topics <service>" in said


def test_a_replication_factor_the_cluster_cannot_give_names_the_variable(
    kafka_bootstrap: str, prefix: str
) -> None:
    said = _refused(worker_env(kafka_bootstrap, prefix, TRADEPULSE_TOPIC_REPLICATION="3"))
    assert "could not create topic" in said
    assert "TRADEPULSE_TOPIC_REPLICATION" in said
