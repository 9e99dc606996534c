"""The tools name what is missing and how to fix it, in one line, with exit status 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from services.devstack.process import free_port
from tests.integration.harness import REPO, worker_env

TOOLS = {
    "simulate": ["simulate", "customs", "--cases", "5", "--rate", "0", "--quiet"],
    "publish": ["publish", "customs.events.v1", "-"],
    "tail": ["tail", "customs.events.v1.dlq"],
    "history": ["history"],
    "bench": ["bench", "customs", "--events", "100", "--rounds", "1"],
}


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        cwd=REPO,
        env=env,
        input="{}",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _one_line(done: subprocess.CompletedProcess[str]) -> str:
    """The one plain line on stderr; a long-running tool (history) may log JSON lines before it."""
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.strip().splitlines() if not line.startswith('{"ts":')]
    assert len(lines) == 1, done.stderr
    assert done.stderr.strip().endswith(lines[0])
    return lines[0]


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_unreachable_broker_is_one_line_naming_the_fix(tool: str, prefix: str) -> None:
    env = worker_env(f"127.0.0.1:{free_port()}", prefix, TRADEPULSE_STARTUP_TIMEOUT_S="3")
    line = _one_line(_run(TOOLS[tool], env))
    assert line.startswith(f"tradepulse {tool}")
    assert "unreachable" in line
    assert "KAFKA_BOOTSTRAP_SERVERS" in line


@pytest.mark.parametrize("tool", ["simulate", "publish", "tail"])
def test_missing_topic_is_one_line_naming_the_topic_and_the_fix(
    tool: str, kafka_bootstrap: str, prefix: str
) -> None:
    line = _one_line(_run(TOOLS[tool], worker_env(kafka_bootstrap, prefix)))
    assert f"topic {prefix}customs.events.v1" in line
    assert "does not exist" in line
    assert "tradepulse worker customs" in line


def test_history_names_an_unreachable_database_without_its_password(
    kafka_bootstrap: str, prefix: str
) -> None:
    url = f"postgresql://analyst:s3cret-pw@127.0.0.1:{free_port()}/tradepulse?sslpassword=other-secret"
    env = worker_env(kafka_bootstrap, prefix, DATABASE_URL=url, TRADEPULSE_STARTUP_TIMEOUT_S="2")
    done = _run(TOOLS["history"], env)
    line = _one_line(done)
    assert "PostgreSQL at postgresql://analyst@127.0.0.1" in line
    assert "DATABASE_URL" in line
    assert "s3cret-pw" not in done.stderr + done.stdout
    assert "other-secret" not in done.stderr + done.stdout


def test_run_publishes_the_cycle_history_only_into_an_empty_topic(kafka_bootstrap: str, prefix: str) -> None:
    """`tradepulse run` publishes 90 days of linked history first; run again on the same stack, the
    services' watermarks are at the last run's live traffic and would refuse most of it as older
    than the retention, so it is published only while the input topic holds nothing."""
    import asyncio

    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    from services.tools.run import holds_records

    env, topic = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}, f"{prefix}customs.events.v1"

    async def scenario() -> list[bool]:
        seen = [await holds_records(env, topic)]  # no such topic
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        await admin.create_topics([NewTopic(topic, 2, 1)])
        await admin.close()
        seen.append(await holds_records(env, topic))  # created by the workers, still empty
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        await producer.send_and_wait(topic, b"{}", partition=1)
        await producer.stop()
        seen.append(await holds_records(env, topic))  # an earlier run's traffic
        return seen

    assert asyncio.run(scenario()) == [False, False, True]
