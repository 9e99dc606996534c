"""The two checks every domain service passes on the real broker: its indicator records equal a
plain batch computation over a faulty simulated corpus, also when the worker is stopped mid-stream."""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from services.tools.simulate import Faults, Record, perturb
from tests.batch_customs import compare
from tests.integration.harness import (
    STATE_ROOT,
    Client,
    StartWorker,
    WorkerProcess,
    caught_up,
    eventually,
    latest,
    produce,
    read_all,
    read_to_end,
)

FAULTS = Faults(duplicates=0.05, shuffle=0.1, late=0.05, invalid=0.02, binary=0.5, rekey=0.1)
VALID_ONLY = Faults(duplicates=0.05, shuffle=0.1, late=0.05, invalid=0.0, binary=0.5, rekey=0.1)


@dataclass(frozen=True)
class DomainCase:
    service: str
    simulate: Callable[..., list[dict[str, Any]]]
    oracle: Callable[[list[dict[str, Any]]], dict[str, dict[str, Any]]]
    start_s: float
    span_s: float
    env: dict[str, str] = field(default_factory=dict)

    @property
    def topic(self) -> str:
        return f"{self.service}.events.v1"

    @property
    def fast(self) -> dict[str, str]:
        prefix = f"TRADEPULSE_{self.service.upper()}_"
        return {f"{prefix}INDICATOR_INTERVAL_S": "0.5", f"{prefix}IDLE_AFTER_S": "2",
                "TRADEPULSE_BATCH_MAX_EVENTS": "500", **self.env}  # fmt: skip

    def corpus(
        self, cases: int, seed: int, faults: Faults = FAULTS
    ) -> tuple[list[dict[str, Any]], list[Record]]:
        events = self.simulate(cases=cases, seed=seed, start_s=self.start_s, span_s=self.span_s)
        return events, perturb(events, faults, random.Random(seed))

    def consumed(self, workers: list[WorkerProcess]) -> float:
        return sum(w.metric("tradepulse_events_consumed_total", topic=self.topic) for w in workers)

    async def settle(self, bootstrap: Client, prefix: str) -> None:
        internal = [f"{prefix}tradepulse-{self.service}-{name}" for name in ("links", "partials")]
        await caught_up(bootstrap, f"{prefix}tradepulse-{self.service}", [prefix + self.topic, *internal])

    async def latest(self, bootstrap: Client, prefix: str) -> dict[str, dict[str, Any]]:
        return await latest(bootstrap, f"{prefix}indicators.{self.service}.v1")

    async def differences(
        self, bootstrap: Client, prefix: str, expected: dict[str, dict[str, Any]]
    ) -> list[str]:
        """How the service's latest indicator records differ from ``expected`` (:func:`differences`)."""
        return await differences(expected, lambda: self.latest(bootstrap, prefix))


async def differences(
    expected: dict[str, dict[str, Any]],
    read: Callable[[], Awaitable[dict[str, dict[str, Any]]]],
    *,
    timeout_s: float = 30.0,
) -> list[str]:
    """How the latest records ``read`` returns differ from ``expected``, read again while they
    differ for up to ``timeout_s``: a worker publishes on a timer after its inputs are committed, so
    a last revision may land after the topic looked settled (CI saw one, under load)."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = compare(expected, await read())
        if not found or time.monotonic() > deadline:
            return found


async def batch_equality(
    d: DomainCase,
    bootstrap: str,
    prefix: str,
    start_worker: StartWorker,
    *,
    cases: int,
    seed: int,
    workers: int = 1,
) -> tuple[list[WorkerProcess], dict[str, dict[str, Any]]]:
    """Publish a faulty corpus to ``workers`` workers; the latest records must equal the oracle.
    Returns the workers and the oracle's records."""
    events, records = d.corpus(cases, seed)
    started = [start_worker(d.service, **d.fast) for _ in range(workers)]
    await produce(bootstrap, prefix + d.topic, records)
    assert await eventually(lambda: d.consumed(started) >= len(records), timeout_s=120), d.consumed(started)
    await d.settle(bootstrap, prefix)
    expected = d.oracle(events)
    assert await d.differences(bootstrap, prefix, expected) == []
    return started, expected


async def all_invalid_dead_lettered(
    d: DomainCase, bootstrap: str, prefix: str, worker: WorkerProcess
) -> None:
    """The corpus had invalid records, and every one the worker counted is in the dead-letter topic,
    with its original's timestamp (the topic's time retention counts from it: a letter stamped in
    1970 is deleted at the broker's next retention check)."""
    invalid = worker.metric("tradepulse_events_invalid_total", topic=d.topic)
    assert invalid > 0
    letters = await read_all(bootstrap, prefix + d.topic + ".dlq", expect=int(invalid))
    assert len(letters) == invalid
    originals = {(r.partition, r.offset): r.timestamp for r in await read_to_end(bootstrap, prefix + d.topic)}
    for letter in letters:
        got = dict(letter.headers)
        assert letter.timestamp == originals[int(got["dlq_partition"]), int(got["dlq_offset"])]


async def restart_mid_stream(
    d: DomainCase,
    bootstrap: str,
    prefix: str,
    start_worker: StartWorker,
    *,
    cases: int,
    seed: int,
    local_copy: bool = True,
) -> None:
    """Stop the worker (SIGTERM) while it works through the stream, start another, on the first's
    local copy of the state or (``local_copy`` False) without one: same records."""
    events, records = d.corpus(cases, seed)
    first = start_worker(d.service, **{**d.fast, "TRADEPULSE_BATCH_MAX_EVENTS": "50"})
    await produce(bootstrap, prefix + d.topic, records)
    assert await eventually(lambda: d.consumed([first]) >= len(records) // 3, timeout_s=60)
    seen = d.consumed([first])
    assert first.stop() == 0
    assert seen < len(records), "the first worker finished before it was stopped"
    elsewhere = {} if local_copy else {"TRADEPULSE_STATE_DIR": str(STATE_ROOT / prefix / "elsewhere")}
    start_worker(d.service, **d.fast, **elsewhere)
    await d.settle(bootstrap, prefix)
    assert await d.differences(bootstrap, prefix, d.oracle(events)) == []
