"""``tradepulse bench customs``: throughput of the customs pipeline against Faust's own ceiling.

Against one broker and the same records it measures (a) a raw aiokafka consumer decoding them,
(b) a Faust agent that only iterates them, (c) ``tradepulse worker customs`` (the whole pipeline:
intake, lifecycle tracking, windows, partials, merge, indicator records). Then the end-to-end
latency at a fixed offered load. Ratios are taken within one run: the machines are shared.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
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
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from services.contract.codec import DecodeError, decode
from services.devstack.kafka import KafkaNode
from services.devstack.probe import web_get
from services.devstack.process import free_port
from services.registry import DOMAINS
from services.runtime.kafka_admin import require_broker
from services.runtime.security import kafka_client
from services.tools.bench_latency import latency_run
from services.tools.bench_memory import bytes_per_open_order
from services.tools.bench_quix import quix_available
from services.tools.simulate import Record

__all__ = ["bench_broker", "interleaved", "rates", "run_bench", "save"]

TOPIC = "customs.events.v1"
REPO = Path(__file__).resolve().parents[2]


def _customs_records(n: int, seed: int, target: str = "customs") -> list[Record]:
    """A realistic stream of ``target``: whole lifecycles, 2 % duplicates, a little disorder."""
    import importlib

    from services.tools.simulate import Faults, happened, perturb

    simulate = importlib.import_module(f"services.{target}.simulator").simulate
    cases = max(1, n // 5)
    events, _ = happened(simulate(cases=cases, seed=seed, start_s=time.time() - 3 * 86400, span_s=86400))
    records = perturb(events, Faults(duplicates=0.02, shuffle=0.02, binary=0.5), random.Random(seed))
    return records[:n]


async def _prepare(bootstrap: str, topic: str, partitions: int, records: list[Record]) -> None:
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


async def _raw(bootstrap: str, topic: str, n: int, contract_topic: str = TOPIC) -> float:
    consumer = AIOKafkaConsumer(
        topic,
        **kafka_client(bootstrap),
        group_id=f"bench-raw-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    seen, started = 0, 0.0
    try:
        while seen < n:
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            for records in batches.values():
                if not started:
                    started = time.perf_counter()
                catalog = DOMAINS[contract_topic.split(".")[0]].catalog
                for r in records:
                    with contextlib.suppress(DecodeError):
                        decode(r.value, r.headers, catalog=catalog)
                seen += len(records)
        return n / (time.perf_counter() - started)
    finally:
        await consumer.stop()


def _faust_empty(
    bootstrap: str, prefix: str, n: int, partitions: int, mode: str = "iterate", topic: str = TOPIC
) -> float:
    env = _env(bootstrap, prefix, partitions, free_port())
    return _measured_by("services.tools.bench_agent", [str(n)], [mode, topic], env)


def _quix(bootstrap: str, n: int, topic: str) -> float:
    env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap}
    return _measured_by("services.tools.bench_quix", [str(n)], [topic], env)


def _measured_by(module: str, head: list[str], tail: list[str], env: dict[str, str]) -> float:
    """Run ``python -m module *head OUT *tail`` and read the events/s it writes to OUT."""
    out = Path(tempfile.mkstemp(suffix=".json")[1])
    proc = subprocess.Popen(
        [sys.executable, "-m", module, *head, str(out), *tail],
        cwd=REPO,
        env={**os.environ, **env},  # KAFKA_* security settings too
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and not out.read_text():
            if proc.poll() is not None:
                msg = f"{module} exited with {proc.returncode}"
                raise RuntimeError(msg)
            time.sleep(0.2)
        result = json.loads(out.read_text())
        return float(result["events_per_s"])
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        out.unlink(missing_ok=True)


STATE_ROOT = Path(tempfile.gettempdir()) / "tradepulse-bench-state"


def _env(bootstrap: str, prefix: str, partitions: int, port: int) -> dict[str, str]:
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


def _start_worker(
    bootstrap: str, prefix: str, partitions: int, service: str, *, repo: Path = REPO, log: Path | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    """``tradepulse worker <service>`` from ``repo`` (its own code, this environment's packages),
    stderr to ``log``; (process, web port)."""
    port = free_port()
    env = {**_env(bootstrap, prefix, partitions, port), "PYTHONPATH": str(repo)}
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
    proc, port = _start_worker(bootstrap, prefix, partitions, service, repo=repo, log=log)
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
        counts, now = _counters(port), time.perf_counter()
        if counts.get("tradepulse_events_consumed_total") and not first:
            first, cpu0 = now, _cpu_s(proc.pid)
        if counts.get("tradepulse_events_processed_total", 0.0) >= n:
            return now - first, _cpu_s(proc.pid) - cpu0
        time.sleep(0.02)
    return None


def _cpu_s(pid: int) -> float:
    """User and system CPU seconds of a process so far (/proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _counters(port: int) -> dict[str, float]:
    """The worker's event counters (one input topic, so one series each)."""
    _, text = web_get(port, "/metrics")
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("tradepulse_events_") and "{" in line:
            out[line.split("{", 1)[0]] = float(line.rsplit(" ", 1)[1])
    return out


def _variant(name: str, bootstrap: str, partitions: int, records: list[Record], target: str) -> float:
    """Events/s of one variant on a fresh copy of the records (a topic of its own)."""
    topic = f"{target}.events.v1"
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    asyncio.run(_prepare(bootstrap, prefix + topic, partitions, records))
    if name == "raw_aiokafka_decode":
        return asyncio.run(_raw(bootstrap, prefix + topic, len(records), topic))
    if name == "faust_empty_agent":
        return _faust_empty(bootstrap, prefix, len(records), partitions, topic=topic)
    if name == "faust_batch_agent":
        return _faust_empty(bootstrap, prefix, len(records), partitions, "batch", topic)
    if name == "quix_streams":
        return _quix(bootstrap, len(records), prefix + topic)
    return timed_worker(target, bootstrap, prefix, len(records), partitions=partitions)[0]


def _percentile(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    return sorted(xs)[min(len(xs) - 1, int(q * (len(xs) - 1)))]


def run_bench(
    *,
    events: int,
    partitions: int,
    out: Path,
    seed: int = 7,
    rate: float = 500.0,
    latency_s: float = 30.0,
    target: str = "customs",
    rounds: int = 3,
) -> dict[str, Any]:
    """Throughput of (a), (b), (c) on the same records, ``rounds`` times (the medians are
    reported), then (customs) latency at a fixed offered load, or (cbec) the memory an open
    order takes."""
    records = _customs_records(events, seed, target)
    pipeline = f"{target}_pipeline"
    names = ["raw_aiokafka_decode", "faust_empty_agent", "faust_batch_agent", pipeline]
    if quix_available():
        names.append("quix_streams")
    else:
        print("quix_streams left out: install the bench extra, pip install -e '.[bench]'", flush=True)
    with bench_broker("bench") as (bootstrap, kafka, _):
        variants = {
            name: functools.partial(_variant, name, bootstrap, partitions, records, target) for name in names
        }
        runs = interleaved(rounds, variants, lambda rate: f"{rate:>10,.0f} events/s")
        latencies = latency_run(bootstrap, partitions, rate, latency_s, seed) if target == "customs" else []
    results = {name: statistics.median(xs) for name, xs in runs.items()}
    report = {
        "benchmark": target,
        "events": len(records),
        "partitions": partitions,
        "rounds": rounds,
        **rates(runs),
        "events_per_s_per_worker": round(results[pipeline], 1),
        "ratio_c_over_a": round(results[pipeline] / results["raw_aiokafka_decode"], 3),
        "ratio_c_over_b": round(results[pipeline] / results["faust_empty_agent"], 3),
        "ratio_c_over_b_by_round": _by_round(runs, pipeline, "faust_empty_agent"),
        "ratio_over_quix": _ratio(results, pipeline, "quix_streams"),
        "ratio_over_quix_by_round": _by_round(runs, pipeline, "quix_streams"),
        "bytes_per_open_order": bytes_per_open_order() if target == "cbec" else None,
        "latency": {
            "offered_events_per_s": rate,
            # the worker's settings: the defaults unless the environment overrides them
            "partials_interval_s": DOMAINS["customs"].settings().partials_interval_s,
            "indicator_interval_s": DOMAINS["customs"].settings().indicator_interval_s,
            "probes": len(latencies),
            "p50_s": _round(_percentile(latencies, 0.5)),
            "p99_s": _round(_percentile(latencies, 0.99)),
        },
    }
    save(out, report, kafka)
    print(json.dumps(report, indent=2))
    return report


# -- what every benchmark command shares ----------------------------------------------------------


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


def _ratio(results: dict[str, float], top: str, bottom: str) -> float | None:
    return round(results[top] / results[bottom], 3) if bottom in results else None


def _by_round(runs: dict[str, list[float]], top: str, bottom: str) -> list[float] | None:
    if bottom not in runs:
        return None
    return [round(c / b, 3) for c, b in zip(runs[top], runs[bottom], strict=True)]


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 3)
