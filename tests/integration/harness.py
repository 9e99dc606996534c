"""Helpers for tests against the real broker: worker processes, producing, reading topics, metrics."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord
from prometheus_client.parser import text_string_to_metric_families

from services.devstack.probe import web_get
from services.devstack.process import free_port, tail
from services.registry import SOURCES
from services.runtime.kafka_admin import TopicSpec, ensure_topics, partition_count

REPO = Path(__file__).resolve().parents[2]
Headers = list[tuple[str, bytes]]
Client = str | Mapping[str, Any]  # a bootstrap address, or aiokafka options (the secured broker)


def client_options(client: Client) -> dict[str, Any]:
    """aiokafka keyword arguments for ``client``."""
    return {"bootstrap_servers": client} if isinstance(client, str) else dict(client)


StartWorker = Callable[..., "WorkerProcess"]


STATE_ROOT = Path(tempfile.gettempdir()) / f"tradepulse-test-state-{os.getpid()}"
"""Local state folders of the processes this test session starts (removed at its end)."""


def worker_env(bootstrap: str, prefix: str, **extra: str) -> dict[str, str]:
    """The environment of a test's processes: its broker, its topic prefix, fast batches, JSON logs,
    local state under a folder of the test's own (its prefix) unless it names one, and free web and
    gateway ports: the suite runs beside a ``scripts/run`` that holds the services' own ports.
    Each call gives other ports, so a test that starts two processes asks for two environments."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEPULSE_")}
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=bootstrap,
        TRADEPULSE_TOPIC_PREFIX=prefix,
        TRADEPULSE_STATE_DIR=str(STATE_ROOT / prefix.rstrip(".")),
        TRADEPULSE_STATE_CACHE_MB="64",
        # the corpora are fixed dates long past, so that no test depends on the day it runs; the
        # age limit itself is tested on its own (test_intake.py)
        TRADEPULSE_MAX_EVENT_AGE_S=str(30 * 365 * 86400),
        TRADEPULSE_BATCH_WITHIN_S="0.05",
        TRADEPULSE_COMMIT_INTERVAL_S="0.5",
        TRADEPULSE_LOG_FORMAT="json",
        TRADEPULSE_STARTUP_TIMEOUT_S="20",
        TRADEPULSE_WEB_PORT=str(free_port()),
        TRADEPULSE_GATEWAY_PORT=str(free_port()),
    )
    env.update(extra)
    return env


@dataclass
class WorkerProcess:
    """``tradepulse worker <service>`` as a child process, as an operator would run it."""

    service: str
    env: dict[str, str]
    log: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        env = {**self.env, "TRADEPULSE_WEB_PORT": str(self.port)}
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "worker", self.service],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        out.close()
        return self

    def wait_ready(self, timeout_s: float = 60.0) -> WorkerProcess:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                msg = f"worker exited with {self.proc.returncode}:\n{tail(self.log, 40)}"
                raise AssertionError(msg)
            if self.get("/ready")[0] == 200:
                return self
            time.sleep(0.2)
        msg = f"worker not ready within {timeout_s}s:\n{tail(self.log, 40)}"
        raise AssertionError(msg)

    def get(self, path: str) -> tuple[int, str]:
        return web_get(self.port, path)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return scrape(self.port)

    def metric(self, name: str, **labels: str) -> float:
        return metric(self.port, name, **labels)

    def wait_metric(self, name: str, value: float, timeout_s: float = 30.0, **labels: str) -> None:
        deadline = time.monotonic() + timeout_s
        got = -1.0
        while time.monotonic() < deadline:
            got = self.metric(name, **labels)
            if got >= value:
                break
            time.sleep(0.1)
        assert got == value, f"{name}{labels} = {got}, expected {value}\n{tail(self.log, 20)}"

    def loud(self) -> list[dict[str, Any]]:
        """The log's lines above ``info``: a healthy worker's are the records it refuses."""
        lines = [orjson.loads(line) for line in self.log.read_text().splitlines() if line.startswith("{")]
        return [line for line in lines if line["level"] not in ("info", "debug")]

    def kill(self) -> None:
        """SIGKILL: the process dies where it stands, as in a crash."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM, as an orchestrator does; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                msg = f"worker ignored SIGTERM for {timeout_s}s:\n{tail(self.log, 30)}"
                raise AssertionError(msg) from None
        return int(self.proc.returncode)


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a process's /metrics: (name, labels) -> value."""
    status, text = web_get(port, "/metrics")
    assert status == 200, f"/metrics answered {status}"
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def metric(port: int, name: str, **labels: str) -> float:
    """The sum of a metric's samples that carry ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in scrape(port).items() if n == name and want <= set(ls))


def new_prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}."


async def produce(
    bootstrap: Client, topic: str, records: Iterable[tuple[bytes | None, bytes | None, Headers]]
) -> list[tuple[int, int]]:
    """Send (key, value, headers) records in order, wait until all are acknowledged; returns the
    (partition, offset) of each."""
    producer = AIOKafkaProducer(**client_options(bootstrap), acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(topic, v, key=k, headers=h) for k, v, h in records]
        return [(meta.partition, meta.offset) for meta in await asyncio.gather(*futures)]
    finally:
        await producer.stop()


async def read_all(
    bootstrap: Client, topic: str, *, expect: int, timeout_s: float = 30.0
) -> list[ConsumerRecord]:
    """Every record of ``topic`` from the beginning, waiting until at least ``expect`` are there."""
    deadline = time.monotonic() + timeout_s
    count = None
    while not count and time.monotonic() < deadline:
        count = await partition_count(client_options(bootstrap), topic, timeout_s=5)
        if not count:
            await asyncio.sleep(0.2)
    assert count, f"topic {topic} never appeared"
    out: list[ConsumerRecord] = []
    async with _from_beginning(bootstrap, topic, count) as (consumer, _):
        while len(out) < expect and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=300)).values():
                out.extend(batch)
    return out


async def eventually(predicate: Callable[[], bool], *, timeout_s: float, every_s: float = 0.2) -> bool:
    """Poll ``predicate`` until it holds or the time is up; returns its last value."""
    for _ in range(max(1, int(timeout_s / every_s))):
        if predicate():
            return True
        await asyncio.sleep(every_s)
    return predicate()


async def lag(bootstrap: Client, group: str, topic: str) -> int:
    """Records of ``topic`` not yet committed by consumer ``group`` (-1 when it committed none of a
    topic that has records; an empty topic has nothing to catch up on)."""
    from aiokafka.admin import AIOKafkaAdminClient

    count = await partition_count(client_options(bootstrap), topic, timeout_s=5)
    assert count, f"no topic {topic}"
    admin = AIOKafkaAdminClient(**client_options(bootstrap))
    await admin.start()
    consumer = AIOKafkaConsumer(**client_options(bootstrap))
    await consumer.start()
    await asyncio.sleep(0)
    try:
        committed = await admin.list_consumer_group_offsets(group)
        tps = [TopicPartition(topic, p) for p in range(count)]
        ends = await consumer.end_offsets(tps)
        if not any(tp in committed for tp in tps):
            return -1 if any(ends[tp] for tp in tps) else 0
        return sum(ends[tp] - (committed[tp].offset if tp in committed else 0) for tp in tps)
    finally:
        await consumer.stop()
        await admin.close()


async def caught_up(bootstrap: Client, group: str, topics: list[str], *, timeout_s: float = 120) -> None:
    """Wait until ``group`` has committed everything in ``topics``."""
    deadline = time.monotonic() + timeout_s
    remaining: dict[str, int] = {}
    while time.monotonic() < deadline:
        remaining = {t: await lag(bootstrap, group, t) for t in topics}
        if all(v == 0 for v in remaining.values()):
            return
        await asyncio.sleep(0.5)
    msg = f"consumer group {group} still behind: {remaining}"
    raise AssertionError(msg)


async def read_to_end(bootstrap: Client, topic: str, *, timeout_s: float = 60.0) -> list[ConsumerRecord]:
    """Every record of ``topic`` up to its end offsets at the time of the call."""
    count = await partition_count(client_options(bootstrap), topic, timeout_s=5)
    assert count, f"no topic {topic}"
    out: list[ConsumerRecord] = []
    async with _from_beginning(bootstrap, topic, count) as (consumer, tps):
        ends = await consumer.end_offsets(tps)
        deadline = time.monotonic() + timeout_s
        remaining = {tp for tp in tps if ends[tp] > 0}
        while remaining and time.monotonic() < deadline:
            for batch in (await consumer.getmany(*remaining, timeout_ms=300)).values():
                out.extend(batch)
            remaining = {tp for tp in remaining if await consumer.position(tp) < ends[tp]}
        assert not remaining, f"could not read {topic} to its end within {timeout_s}s"
    return out


@asynccontextmanager
async def _from_beginning(
    bootstrap: Client, topic: str, partitions: int
) -> AsyncIterator[tuple[AIOKafkaConsumer, list[TopicPartition]]]:
    """A consumer without a group, assigned every partition of ``topic`` from its beginning."""
    consumer = AIOKafkaConsumer(
        **client_options(bootstrap), enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    await asyncio.sleep(0)  # let aiokafka's no-group routine start before any stop()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        yield consumer, tps
    finally:
        await consumer.stop()


async def latest(bootstrap: Client, topic: str) -> dict[str, dict[str, Any]]:
    """The latest revision of every indicator key, once the topic has stopped growing."""
    seen = -1
    records: list[Any] = []
    for _ in range(30):
        records = await read_to_end(bootstrap, topic)
        if len(records) == seen:
            break
        seen = len(records)
        await asyncio.sleep(1.5)  # longer than the tests' publish interval
    out: dict[str, dict[str, Any]] = {}
    for r in records:
        event = orjson.loads(r.value)
        assert event["subject"] == r.key.decode()
        data = event["data"]
        if data["revision"] >= out.get(r.key.decode(), {}).get("revision", 0):
            out[r.key.decode()] = data
    return out


class Server(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...


S = TypeVar("S", bound=Server)


@contextmanager
def running(server: S, home: Path) -> Iterator[S]:
    """A broker or database cluster of a test's own: started, and stopped and removed after."""
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


@dataclass
class Gateway:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    credentials: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/events"

    def metric(self, name: str, **labels: str) -> float:
        from prometheus_client.parser import text_string_to_metric_families

        _, text = web_get(self.port, "/metrics")
        return sum(
            s.value
            for f in text_string_to_metric_families(text)
            for s in f.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        )


def spawn_gateway(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``tradepulse gateway`` as a child process, its output in ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "services.cli", "gateway"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def start_gateway(bootstrap: str, prefix: str, tmp_path: Path, *, credentials: Path, **extra: str) -> Gateway:
    """``tradepulse gateway`` with ``credentials`` on a free port, once it answers /health."""
    port = free_port()
    env = worker_env(bootstrap, prefix, TRADEPULSE_GATEWAY_PORT=str(port),
                     TRADEPULSE_GATEWAY_CREDENTIALS_FILE=str(credentials), **extra)  # fmt: skip
    log = tmp_path / "gateway.log"
    proc = spawn_gateway(env, log)
    deadline = time.monotonic() + 60
    while web_get(port, "/health")[0] != 200:
        assert proc.poll() is None, tail(log, 30)
        assert time.monotonic() < deadline, tail(log, 30)
        time.sleep(0.2)
    return Gateway(proc, port, log, credentials)


def stop_gateway(gateway: Gateway) -> None:
    gateway.proc.send_signal(signal.SIGTERM)
    try:
        gateway.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        gateway.proc.kill()
        raise


async def input_topics(bootstrap: str, prefix: str) -> None:
    specs = [TopicSpec(prefix + d.topic, 4) for d in SOURCES.values()]
    await ensure_topics({"bootstrap_servers": bootstrap}, specs, replication=1, timeout_s=20)


def start_history(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``tradepulse history`` as an operator runs it (its pages on a free port unless ``env`` names one)."""
    env = {"TRADEPULSE_WEB_PORT": str(free_port()), **env}
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "services.cli", "history"], cwd=REPO, env=env, stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
