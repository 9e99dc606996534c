"""What every benchmark command shares: the broker, the records, a worker started and timed, the
rounds interleaved and the report written. The ``bench*`` modules import from here and never from
each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from services.devstack.kafka import KafkaNode
from services.devstack.probe import web_get
from services.devstack.process import free_port
from services.runtime.kafka_admin import require_broker
from services.runtime.security import kafka_client
from services.tools.simulate import Record

__all__ = [
    "REPO", "STATE_ROOT", "bench_broker", "cpu_seconds", "customs_records", "event_counters",
    "interleaved", "percentile", "prepare_topic", "rates", "save", "start_worker", "time_worker",
    "timed_worker", "worker_env",
]  # fmt: skip


REPO = Path(__file__).resolve().parents[2]


def customs_records(
    n: int, seed: int, target: str = "customs", *, span_h: float = 24.0, late: float = 0.0
) -> list[Record]:
    """A realistic stream of ``target``: whole lifecycles over ``span_h`` hours of event time ending
    two days ago, 2 % duplicates, a little disorder, and a fraction ``late`` of events delivered
    an hour or more after their time (past their window's grace: corrections and revisions)."""
    import importlib

    from services.tools.simulate import Faults, happened, perturb

    simulate = importlib.import_module(f"services.{target}.simulator").simulate
    cases = max(1, n // 5)
    span_s = span_h * 3600
    start_s = time.time() - 2 * 86400 - span_s
    events, _ = happened(simulate(cases=cases, seed=seed, start_s=start_s, span_s=span_s))
    faults = Faults(duplicates=0.02, shuffle=0.02, late=late, binary=0.5)
    return perturb(events, faults, random.Random(seed))[:n]


async def prepare_topic(bootstrap: str, topic: str, partitions: int, records: list[Record]) -> None:
    admin = AIOKafkaAdminClient(**kafka_client(bootstrap))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(**kafka_client(bootstrap), linger_ms=20, max_batch_size=256 * 1024)
    await producer.start()
    try:
        futures = [await producer.send(topic, v, key=k, headers=h) for k, v, h in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


STATE_ROOT = Path(tempfile.gettempdir()) / "tradepulse-bench-state"


def worker_env(bootstrap: str, prefix: str, partitions: int, port: int) -> dict[str, str]:
    """A benchmarked process's environment; its local state in a folder of its prefix's own (older
    commits ignore the variable)."""
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "TRADEPULSE_TOPIC_PREFIX": prefix,
        "TRADEPULSE_TOPIC_PARTITIONS": str(partitions),
        "TRADEPULSE_WEB_PORT": str(port),
        "TRADEPULSE_LOG_LEVEL": "warning",
        "TRADEPULSE_STATE_DIR": str(STATE_ROOT / prefix.rstrip(".")),
    }


def start_worker(
    bootstrap: str, prefix: str, partitions: int, service: str, *, repo: Path = REPO, log: Path | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    """``tradepulse worker <service>`` from ``repo`` (its own code, this environment's packages),
    stderr to ``log``; (process, web port)."""
    port = free_port()
    env = {**worker_env(bootstrap, prefix, partitions, port), "PYTHONPATH": str(repo)}
    command = [sys.executable, "-m", "services.cli", "worker", service]
    with log.open("ab") if log is not None else open(os.devnull, "wb") as err:
        proc = subprocess.Popen(command, cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=err)
    return proc, port


def timed_worker(
    service: str,
    bootstrap: str,
    prefix: str,
    n: int,
    *,
    partitions: int = 4,
    repo: Path = REPO,
    log: Path | None = None,
    timeout_s: float = 900.0,
) -> tuple[float, float]:
    """(events/s, CPU µs per event) of ``tradepulse worker <service>`` run from ``repo``, from the
    first event it takes in to the ``n``-th fully handled (state written, acknowledged)."""
    proc, port = start_worker(bootstrap, prefix, partitions, service, repo=repo, log=log)
    where = f"; see {log}" if log is not None else ""
    try:
        try:
            timed = time_worker(proc, port, n, timeout_s=timeout_s)
        except RuntimeError as exc:
            msg = f"worker at {repo}: {exc}{where}"
            raise RuntimeError(msg) from None
        if timed is None:
            msg = f"worker at {repo} did not process {n} records in {timeout_s:.0f} s{where}"
            raise RuntimeError(msg)
        seconds, cpu_s = timed
        return n / seconds, cpu_s / n * 1e6
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(STATE_ROOT / prefix.rstrip("."), ignore_errors=True)


def time_worker(
    proc: subprocess.Popen[bytes], port: int, n: int, *, timeout_s: float
) -> tuple[float, float] | None:
    """Watch a worker's counters from the first event it takes in until it has fully handled
    (state written, acknowledged) ``n``: (seconds, CPU seconds of its process); None when it has
    not within ``timeout_s``. Each end is up to one poll interval (20 ms) late: small against
    seconds. RuntimeError when the worker exits."""
    first = cpu0 = 0.0
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            msg = f"worker exited with {proc.returncode}"
            raise RuntimeError(msg)
        counts, now = event_counters(port), time.perf_counter()
        if counts.get("tradepulse_events_consumed_total") and not first:
            first, cpu0 = now, cpu_seconds(proc.pid)
        if counts.get("tradepulse_events_processed_total", 0.0) >= n:
            return now - first, cpu_seconds(proc.pid) - cpu0
        time.sleep(0.02)
    return None


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of a process so far (/proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def event_counters(port: int) -> dict[str, float]:
    """The worker's event counters (one input topic, so one series each)."""
    _, text = web_get(port, "/metrics")
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("tradepulse_events_") and "{" in line:
            out[line.split("{", 1)[0]] = float(line.rsplit(" ", 1)[1])
    return out


def percentile(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    return sorted(xs)[min(len(xs) - 1, int(q * (len(xs) - 1)))]


@contextlib.contextmanager
def bench_broker(tag: str) -> Iterator[tuple[str, str, Path]]:
    """(bootstrap, what the broker is, a folder of the benchmark's own): the broker of
    KAFKA_BOOTSTRAP_SERVERS when it is set, else a Kafka node of the benchmark's own in that
    folder, stopped afterwards."""
    home = Path(tempfile.mkdtemp(prefix=f"tradepulse-{tag}-"))
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        asyncio.run(require_broker(kafka_client(external), timeout_s=10))
        yield external, external, home
        return
    node = KafkaNode(home / "kafka", port=free_port(), controller_port=free_port(), heap="1g")
    node.start()
    try:
        yield node.bootstrap, node.version_line(), home
    finally:
        node.stop()


T = TypeVar("T")


def interleaved(
    rounds: int, variants: Mapping[str, Callable[[], T]], show: Callable[[T], str]
) -> dict[str, list[T]]:
    """Every variant once a round, in turn: a slow spell of the shared machine touches every
    variant, and the medians of the rounds are compared."""
    runs: dict[str, list[T]] = {name: [] for name in variants}
    for round_no in range(1, rounds + 1):
        for name, measure in variants.items():
            runs[name].append(measure())
            print(f"round {round_no}/{rounds} {name:<22} {show(runs[name][-1])}", flush=True)
    return runs


def rates(runs: Mapping[str, list[float]]) -> dict[str, Any]:
    """Events/s of each variant: the median, and every round's."""
    return {
        "events_per_s": {k: round(statistics.median(xs), 1) for k, xs in runs.items()},
        "events_per_s_by_round": {k: [round(x, 1) for x in xs] for k, xs in runs.items()},
    }


def save(out: Path, report: dict[str, Any], kafka: str) -> None:
    """Write ``report`` as JSON with the machine and the time it was measured on."""
    report["machine"] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "kafka": kafka,
    }
    report["when"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
