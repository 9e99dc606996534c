"""``tradepulse simulate <service>``: publish realistic traffic, with the faults real feeds have.

The domain generator yields valid CloudEvents in event-time order; :func:`perturb` turns them into
Kafka records with duplicates (same ``source`` and ``id``), local shuffling, late events (held back
by up to :data:`LATE_MAX_S` of event time: late for their hour's window, never for the
retention), exactly the share of invalid records asked for, and a mix of content modes. Events
whose time has not come are published when it comes (:func:`publish` waits for them), so the
rate a simulator shows is the rate it sends at.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from services.contract import codec
from services.runtime.settings import Settings
from services.simulation import iso

__all__ = ["Faults", "Record", "happened", "perturb", "run_simulation"]

Record = tuple[bytes | None, bytes, list[tuple[str, bytes]]]


def _key(event: dict[str, Any]) -> bytes:
    return str(event["subject"]).encode()


# Bad records as producers send them: garbage without a key, and broken events keyed by their
# subject like good ones (a keyed dead letter takes another write path than a keyless one).
INVALID_SAMPLES: list[Callable[[dict[str, Any]], Record]] = [
    lambda e: (None, b"{not json", [codec.STRUCTURED_HEADER]),
    lambda e: (None, orjson.dumps([e]), [codec.STRUCTURED_HEADER]),
    lambda e: (_key(e), orjson.dumps({**e, "time": "yesterday"}), [codec.STRUCTURED_HEADER]),
    lambda e: (_key(e), orjson.dumps({**e, "type": "customs.unknown"}), []),
    lambda e: (_key(e), orjson.dumps({**e, "data": {}}), [codec.STRUCTURED_HEADER]),
]


LATE_MAX_S = 3 * 3600.0
"""How far behind its time a late event comes: past its hour's window and grace, well within the
retention (an event held back to the end of a 90-day history came after its windows were gone,
and was dead-lettered as a processing error nobody had asked for)."""


@dataclass(frozen=True, slots=True)
class Faults:
    """Fractions of the stream (0 to 1)."""

    duplicates: float = 0.0
    shuffle: float = 0.0
    late: float = 0.0
    invalid: float = 0.0
    binary: float = 0.5
    rekey: float = 0.0  # records keyed by something other than the subject (TradePulse must cope)


def encode(event: dict[str, Any], *, binary: bool) -> Record:
    """The record of ``event``, keyed by its subject."""
    headers, value = codec.encode(event, binary=binary)
    return str(event["subject"]).encode(), value, headers


def happened(events: list[dict[str, Any]], now_s: float | None = None) -> tuple[list[dict[str, Any]], int]:
    """The events whose time has come, and how many lie in the future: a service refuses events
    stamped ahead of its clock (contract section 1), and the future has not happened yet."""
    limit = time.time() if now_s is None else now_s
    past = [e for e in events if datetime.fromisoformat(e["time"]).timestamp() <= limit]
    return past, len(events) - len(past)


def perturb(events: list[dict[str, Any]], faults: Faults, rng: random.Random) -> list[Record]:
    """Kafka records for ``events`` with the requested faults; every valid event is included."""
    stream = list(events)
    for i in range(len(stream)):  # local shuffling: swap with a neighbour up to 50 positions away
        if rng.random() < faults.shuffle:
            j = min(len(stream) - 1, max(0, i + rng.randint(-50, 50)))
            stream[i], stream[j] = stream[j], stream[i]
    ordered = _with_late(stream, faults.late, rng)
    records: list[Record] = []
    delayed: list[tuple[int, Record]] = []  # duplicates due after some more records
    for event in ordered:
        key, value, headers = encode(event, binary=rng.random() < faults.binary)
        if rng.random() < faults.rekey:
            key = f"k{rng.randrange(10**6)}".encode()
        records.append((key, value, headers))
        if rng.random() < faults.duplicates:  # the copy may come in the other mode, a little later
            delayed.append(
                (len(records) + rng.randint(0, 20), encode(event, binary=rng.random() < faults.binary))
            )
        if rng.random() < faults.invalid:
            records.append(rng.choice(INVALID_SAMPLES)(event))
        if delayed and delayed[0][0] <= len(records):
            due = [r for at, r in delayed if at <= len(records)]
            delayed = [(at, r) for at, r in delayed if at > len(records)]
            records.extend(due)
    records.extend(r for _, r in delayed)
    return records


def _time_s(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["time"]).timestamp()


def _with_late(stream: list[dict[str, Any]], share: float, rng: random.Random) -> list[dict[str, Any]]:
    """``stream`` with a ``share`` of its events moved after the events of up to
    :data:`LATE_MAX_S` (at least an hour) later."""
    late = {id(e): _time_s(e) + rng.uniform(3600.0, LATE_MAX_S) for e in stream if rng.random() < share}
    if not late:
        return stream
    on_time = [e for e in stream if id(e) not in late]
    held = sorted((e for e in stream if id(e) in late), key=lambda e: late[id(e)])
    out: list[dict[str, Any]] = []
    i = 0
    for event in on_time:
        while i < len(held) and late[id(held[i])] <= _time_s(event):
            out.append(held[i])
            i += 1
        out.append(event)
    return out + held[i:]


async def publish(
    settings: Settings, topic: str, records: list[Record], *, rate: float, progress: bool
) -> None:
    """Send records at ``rate`` per second (0: as fast as possible), showing progress on stderr."""
    producer = AIOKafkaProducer(**settings.kafka_client(), acks="all", linger_ms=10)
    await producer.start()
    started = last = time.monotonic()
    try:
        pending = []
        for i, (key, value, headers) in enumerate(records, 1):
            pending.append(await producer.send(settings.topic(topic), value, key=key, headers=headers))
            if rate > 0:
                ahead = started + i / rate - time.monotonic()
                if ahead > 0:
                    await asyncio.sleep(ahead)
            if progress and time.monotonic() - last >= 1:
                last = time.monotonic()
                done = i / len(records)
                print(
                    f"\r{i:>9,}/{len(records):,} records  {done:6.1%}  {i / (last - started):>9,.0f}/s",
                    end="",
                    file=sys.stderr,
                    flush=True,
                )
            if len(pending) >= 10_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    if progress:
        took = time.monotonic() - started
        print(
            f"\r{len(records):>9,} records sent in {took:.1f}s ({len(records) / max(took, 1e-9):,.0f}/s)"
            + " " * 10,
            file=sys.stderr,
        )


CAUGHT_UP = "caught up"
"""The line a following simulator writes once the past is sent (``tradepulse run`` waits for it)."""


def run_simulation(
    settings: Settings,
    service: str,
    *,
    cases: int,
    seed: int,
    start_s: float,
    span_s: float,
    faults: Faults,
    rate: float,
    progress: bool = True,
    follow: bool = False,
) -> int:
    """Publish the simulated cases' events whose time has come at ``rate``; with ``follow``, then
    each later one when its time comes (a live feed: a refund's events come over weeks), else
    leave those out, saying how many."""
    import importlib

    try:
        simulator = importlib.import_module(f"services.{service}.simulator")
    except ModuleNotFoundError:
        print(f"tradepulse simulate: no simulator for {service} yet", file=sys.stderr)
        return 2
    check_topic(settings, service)
    simulated = simulator.simulate(cases=cases, seed=seed, start_s=start_s, span_s=span_s)
    events, future = happened(simulated)
    rng = random.Random(seed + 1)
    records = perturb(events, faults, rng)
    if future and follow:
        last = iso(max(_time_s(e) for e in simulated))
        later = f" ({future:,} more as their times come, until {last})"
    else:
        later = f" ({future:,} more lie in the future and are left out)" if future else ""
    print(f"{cases:,} cases, {len(events):,} events{later}, {len(records):,} records", file=sys.stderr)
    topic = f"{service}.events.v1"
    asyncio.run(publish(settings, topic, records, rate=rate, progress=progress))
    if future and follow:
        print(f"{CAUGHT_UP}: {len(records):,} records sent; {future:,} events follow as their times come",
              file=sys.stderr, flush=True)  # fmt: skip
        upcoming = sorted((e for e in simulated if _time_s(e) > time.time()), key=_time_s)
        asyncio.run(follow_up(settings, topic, upcoming, faults, rng, rate=rate))
    return 0


async def follow_up(
    settings: Settings,
    topic: str,
    events: list[dict[str, Any]],
    faults: Faults,
    rng: random.Random,
    *,
    rate: float,
) -> None:
    """Send each event when its time comes (with its share of duplicates and invalid records; not
    late or shuffled: it is already live), at most ``rate`` records a second."""
    live = Faults(duplicates=faults.duplicates, invalid=faults.invalid, binary=faults.binary)
    producer = AIOKafkaProducer(**settings.kafka_client(), acks="all", linger_ms=10)
    await producer.start()
    try:
        gap = 1 / rate if rate > 0 else 0.0
        for event in events:
            wait = _time_s(event) - time.time()
            await asyncio.sleep(max(wait, gap))
            for key, value, headers in perturb([event], live, rng):
                await producer.send(settings.topic(topic), value, key=key, headers=headers)
    finally:
        await producer.stop()


def check_topic(settings: Settings, service: str) -> None:
    """StartupError naming the fix unless the service's input topic exists (before any work)."""
    from services.runtime.kafka_admin import WRITE
    from services.tools.publish import existing_topic

    asyncio.run(existing_topic(settings, f"{service}.events.v1", WRITE))
