"""The tools name what is missing and how to fix it, in one line, with exit status 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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


def test_publish_names_a_missing_file_before_asking_the_broker(prefix: str) -> None:
    env = worker_env(f"127.0.0.1:{free_port()}", prefix, TRADEPULSE_STARTUP_TIMEOUT_S="3")
    line = _one_line(_run(["publish", "customs.events.v1", "/nonexistent/events.json"], env))
    assert line == "tradepulse publish: No such file or directory: /nonexistent/events.json"


def test_publish_says_which_events_the_service_will_dead_letter(
    kafka_bootstrap: str, prefix: str, tmp_path: Path
) -> None:
    """publish sends what it is given (the dead-letter path can be tried by hand), and says why an
    event will be refused, in both content modes."""
    import asyncio

    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    async def create() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        await admin.create_topics([NewTopic(f"{prefix}customs.events.v1", 2, 1)])
        await admin.close()

    asyncio.run(create())
    event = {"specversion": "1.0", "id": "demo-1", "source": "/singlewindow/5141",
             "type": "customs.declaration.accepted", "time": "2025-03-01T08:30:00+08:00",
             "subject": "514120250000012345", "data": {"entry_id": "514120250000012345"}}  # fmt: skip
    events = tmp_path / "events.json"
    events.write_text(json.dumps([event, {**event, "id": "demo-2", "data": {}}]))
    for mode in ([], ["--binary"]):
        done = _run(["publish", *mode, "customs.events.v1", str(events)], worker_env(kafka_bootstrap, prefix))
        assert done.returncode == 0, done.stderr
        first, second = done.stdout.splitlines()
        assert first.startswith(f"sent to {prefix}customs.events.v1[")
        assert ";" not in first
        refused = "not a valid event, the service will dead-letter it"
        assert second.endswith(f"; {refused} (invalid_data: data.entry_id: Field required)")


def test_simulate_publishes_the_records_it_announces(kafka_bootstrap: str, prefix: str) -> None:
    """Whole lifecycles with the faults asked for: every record it counts is in the topic, and the
    valid ones decode with the contract (the invalid ones are its deliberate bad input)."""
    import asyncio
    import re

    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    from services.contract.codec import DecodeError, decode
    from services.registry import DOMAINS
    from tests.integration.harness import read_all

    topic = f"{prefix}customs.events.v1"

    async def create() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        await admin.create_topics([NewTopic(topic, 2, 1)])
        await admin.close()

    asyncio.run(create())
    args = ["simulate", "customs", "--cases", "20", "--rate", "0", "--quiet", "--invalid", "0.1"]
    done = _run(args, worker_env(kafka_bootstrap, prefix))
    assert done.returncode == 0, done.stderr
    announced = re.search(r"([\d,]+) records", done.stderr)
    assert announced is not None, done.stderr
    count = int(announced.group(1).replace(",", ""))
    records = asyncio.run(read_all(kafka_bootstrap, topic, expect=count))
    assert len(records) == count
    valid = 0
    for r in records:
        try:
            decode(r.value, r.headers, catalog=DOMAINS["customs"].catalog)
            valid += 1
        except DecodeError:
            pass
    assert 0 < valid < count


def test_run_starts_an_exited_process_again_and_gives_up_after_three_failed_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """scripts/run stopped everything when one worker exited; it starts it again now, saying so,
    and stops only when a process fails to start three times in a row."""
    from services.tools.run import Child

    missing = str(tmp_path / "missing.yaml")  # the command exits with 2 at once
    child = Child.spawn("calendar-check", ["calendar", "check", missing], dict(os.environ), logs=tmp_path)
    lines: list[str] = []

    def supervise() -> None:
        for _ in range(200):
            line = child.look_after()
            if line is not None:
                lines.append(line)
                child.due = 0.0  # no waiting in the test
            child.proc.wait()

    with pytest.raises(SystemExit):
        supervise()
    assert [line.split(";")[0] for line in lines] == ["calendar-check exited with 2"] * 2
    assert "starting it again in 2 s (restart 1" in lines[0]
    assert "starting it again in 4 s (restart 2" in lines[1]
    assert child.restarts == 2
    assert "failed to start 3 times in a row" in capsys.readouterr().err
