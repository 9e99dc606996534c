"""``tradepulse worker release``: the cross-border release (docs/contract.md section 8, docs/release.md).

It reads the case topics of the services whose indicators a policy names, from their start (they
are compacted: the latest state of every case), places each case's measure in its day and month
windows, and once a window is final decides all its cells for each destination, in numbered steps:

1. the window's cases, as :mod:`services.release.disclosure` decides them (rules, secondary
   suppression, rounding);
2. the decisions and the event time they were taken at into PostgreSQL, in one transaction (the
   audit, and what makes a decision sticky: a restart loads it and never decides the window again);
3. the released and suppressed cells to ``release.<destination>.v1`` (a crash between 2 and 3 is
   repaired at start-up: every audited cell missing from the topic is published then).

A case that changes after its window was decided changes nothing released: the cell's new exact
values go to the audit as a ``withheld_revision`` (once per distinct value).

Final: the slowest active input partition's event time (the latest ``time`` of its case records)
passed the window's end plus the indicator's grace; a partition without records for
``TRADEPULSE_RELEASE_IDLE_AFTER_S`` of wall-clock time stops holding the others back. Nothing is
decided before the case topics have been read up to where they ended at start-up.

Scale: every case placed in a window is held in memory (about 200 bytes); that suits a province's
day and month cells for customs, refunds and CIPS, and is what to move to the state store next for
CBEC's volume (docs/release.md).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client import Counter, Gauge
from pydantic import Field

from services.contract.envelope import cloud_event
from services.contract.records import RELEASE_TYPE
from services.contract.topics import case_topic
from services.engine.windows import SHANGHAI
from services.registry import DOMAINS
from services.release.disclosure import Decision, Member, WindowId, decide, window_of
from services.release.policy import Policy, PolicyError, Releasable, load_policies, releasable
from services.runtime.kafka_admin import (
    READ,
    READ_WRITE,
    Access,
    StartupError,
    TopicSpec,
    ensure_topics,
    partition_count,
)
from services.runtime.pages import require_free_port, serve_pages
from services.runtime.settings import Settings
from services.runtime.worker import worker_topics
from services.tools.history import HistoryStore, run_until_stopped

__all__ = [
    "PORT",
    "RELEASE_TYPE",
    "Audit",
    "Book",
    "Release",
    "ReleaseSettings",
    "Watermarks",
    "audited_decision",
    "audited_window",
    "load",
    "record_of",
    "release_access",
    "release_topic",
    "release_topics",
    "run_release",
]

log = logging.getLogger(__name__)
PORT = 6067
ROOT = Path(__file__).resolve().parents[2]

CELLS = Counter(
    "tradepulse_release_cells_total",
    "Cells decided for a destination: released, or suppressed with the rule that withheld them.",
    ["destination", "status", "reason"],
)
WITHHELD = Counter(
    "tradepulse_release_withheld_revisions_total",
    "Changes to cells already decided, recorded in the audit and never released.",
    ["destination"],
)
SUPPRESSED_SHARE = Gauge(
    "tradepulse_release_suppressed_ratio",
    "Share of suppressed cells among a destination's cells of its latest decided day (or month): "
    "most of them suppressed means a policy too fine for the traffic.",
    ["destination", "window"],
)
FINAL_THROUGH = Gauge(
    "tradepulse_release_event_time_seconds",
    "The event time the release has seen every input partition reach (windows ending before it, "
    "plus their grace, are decided).",
)


class ReleaseSettings(Settings):
    """``TRADEPULSE_RELEASE_*``: the policies, and when an input partition counts as idle."""

    release_policies: str = "deploy/release/hk.yaml,deploy/release/mo.yaml"
    release_idle_after_s: Annotated[float, Field(gt=0)] = 60.0

    def policy_paths(self) -> list[Path]:
        return [_path(p.strip()) for p in self.release_policies.split(",") if p.strip()]


def _path(text: str) -> Path:
    p = Path(text)
    return p if p.is_absolute() or p.exists() else ROOT / p


def release_topic(destination: str) -> str:
    return f"release.{destination}.v1"


def release_access(settings: Settings, destinations: Iterable[str]) -> Access:
    """Read on every source service's case topic; read and write on each destination's topic (read:
    what is already published, so a crash between the audit and the topic is repaired)."""
    topics = {settings.topic(case_topic(n)): READ for n, d in DOMAINS.items() if not d.derived}
    topics |= {settings.topic(release_topic(d)): READ_WRITE for d in destinations}
    return Access(topics, create=settings.create_topics, principal=settings.kafka.principal())


def release_topics(settings: Settings, destinations: Iterable[str]) -> list[TopicSpec]:
    """The topics the release uses, as it creates them when missing: the case topics it reads (as
    their services create them: a policy may name a service that has not started yet) and one
    compacted topic per destination."""
    cases = {settings.topic(case_topic(n)) for n, d in DOMAINS.items() if not d.derived}
    specs = [
        s for d in DOMAINS.values() if not d.derived for s in worker_topics(settings, d) if s.name in cases
    ]
    own = [
        TopicSpec(
            settings.topic(release_topic(d)),
            settings.topic_partitions,
            compacted=True,
            must_match_partitions=False,
        )
        for d in destinations
    ]
    return specs + own


def load(settings: ReleaseSettings) -> list[Policy]:
    try:
        return load_policies(settings.policy_paths(), DOMAINS)
    except PolicyError as exc:
        raise StartupError(str(exc)) from None


@dataclass(slots=True)
class Book:
    """The cases placed in windows, and the windows each policy has decided (with the exact values
    last audited for each cell, to tell a real correction from a replay)."""

    indicators: Mapping[str, Releasable]
    policies: Sequence[Policy]
    members: dict[tuple[str, str], Member] = field(default_factory=dict)  # (indicator, case id)
    windows: dict[WindowId, set[str]] = field(default_factory=lambda: defaultdict(set))
    decided: dict[str, dict[WindowId, dict[str, dict[str, Any]]]] = field(default_factory=dict)
    touched: set[WindowId] = field(default_factory=set)
    wanted: dict[str, tuple[str, ...]] = field(default_factory=dict)  # indicator -> its windows

    def __post_init__(self) -> None:
        self.decided = {p.destination: {} for p in self.policies}
        for p in self.policies:
            for c in p.cells:
                if c.window not in self.wanted.get(c.indicator, ()):
                    self.wanted[c.indicator] = (*self.wanted.get(c.indicator, ()), c.window)

    def apply(self, data: Mapping[str, Any]) -> None:
        """One case record: its releasable measures replace what the case had before."""
        case_id, measures = str(data["case_id"]), data.get("measures") or {}
        milestones, attributes = data.get("milestones") or {}, data.get("attributes") or {}
        seen = set()
        for name, value in measures.items():
            indicator, _, dims_text = name.partition("|")
            found = self.indicators.get(indicator)
            if found is None or indicator not in self.wanted or indicator in seen:
                continue
            at = milestones.get(found.spec.milestone)
            if at is None:
                continue
            seen.add(indicator)
            dims = tuple(tuple(p.split("=", 1)) for p in dims_text.split(",")) if dims_text else ()
            amount = Decimal(str(value)) if found.spec.kind == "amount" else Decimal(0)
            number = 0.0 if found.spec.kind == "amount" else float(value)
            who = attributes.get(found.domain.contributor) or "unknown"
            at_s = datetime.fromisoformat(at).timestamp()
            self._put(indicator, case_id, Member(at_s, dims, number, amount, str(who)))
        for indicator in self.wanted:
            if indicator not in seen and (indicator, case_id) in self.members:
                self._put(indicator, case_id, None)

    def _put(self, indicator: str, case_id: str, member: Member | None) -> None:
        old = self.members.get((indicator, case_id))
        if old == member:
            return
        for window in self.wanted[indicator]:
            if old is not None:
                w = window_of(indicator, window, old.at_s)
                self.windows[w].discard(case_id)
                self.touched.add(w)
            if member is not None:
                w = window_of(indicator, window, member.at_s)
                self.windows[w].add(case_id)
                self.touched.add(w)
        if member is None:
            del self.members[(indicator, case_id)]
        else:
            self.members[(indicator, case_id)] = member

    def cases(self, window: WindowId) -> list[Member]:
        return [self.members[(window.indicator, c)] for c in self.windows.get(window, ())]

    def final(self, event_time_s: float) -> list[WindowId]:
        """Windows that are final and that some policy has not decided yet."""
        out = []
        for w, cases in self.windows.items():
            grace = self.indicators[w.indicator].spec.grace_s
            if (
                cases
                and w.end + grace <= event_time_s
                and any(
                    w not in self.decided[p.destination] and p.releases(w.indicator, w.window)
                    for p in self.policies
                )
            ):
                out.append(w)
        return sorted(out)

    def decide(self, policy: Policy, window: WindowId) -> list[Decision]:
        spec = self.indicators[window.indicator].spec
        return decide(policy, window, spec.kind, spec.unit, self.cases(window))


@dataclass(slots=True)
class Watermarks:
    """The event time every active input partition has reached (as the engine's stage two keeps it)."""

    idle_after_s: float
    seen: dict[TopicPartition, float] = field(default_factory=dict)
    moved_at: dict[TopicPartition, float] = field(default_factory=dict)

    started: float = field(default_factory=time.monotonic)

    def observe(self, tp: TopicPartition, at_s: float) -> None:
        if at_s > self.seen.get(tp, float("-inf")):
            self.seen[tp], self.moved_at[tp] = at_s, time.monotonic()

    def waiting(self, tp: TopicPartition) -> None:
        """The partition has records not read yet: it is not idle."""
        self.moved_at[tp] = time.monotonic()

    def value(self, partitions: Iterable[TopicPartition]) -> float:
        """The slowest active partition's event time (a partition that has sent nothing since the
        start counts as active until it has been idle that long); all idle: the fastest one's."""
        now = time.monotonic()
        active = [
            self.seen.get(tp, float("-inf"))
            for tp in partitions
            if now - self.moved_at.get(tp, self.started) < self.idle_after_s
        ]
        return min(active) if active else max(self.seen.values(), default=float("-inf"))


def record_of(policy: Policy, d: Decision, unit: str, released_at: str) -> dict[str, Any]:
    """The release topic's CloudEvent of one decision (docs/contract.md section 8)."""
    w = d.window
    data: dict[str, Any] = {
        "indicator": w.indicator,
        "window": w.window,
        "window_start": _iso(w.start),
        "window_end": _iso(w.end),
        "dimensions": dict(d.dims),
        "unit": unit,
        "status": d.status,
        **({"reason": d.reason} if d.reason else {}),
        **d.released,
        "policy": policy.name,
        "policy_version": policy.version,
        "policy_sha256": policy.sha256,
        "released_at": released_at,
    }
    source = f"/tradepulse/release/{policy.destination}"
    return cloud_event(
        f"{d.key}|{policy.sha256[:16]}",
        source,
        RELEASE_TYPE,
        _iso(w.end),
        d.key,
        data,
        datacontenttype="application/json",
    )


def _iso(at_s: float) -> str:
    return datetime.fromtimestamp(at_s, SHANGHAI).isoformat()


def _sha(exact: Mapping[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(exact, option=orjson.OPT_SORT_KEYS)).hexdigest()


def audited_window(row: Mapping[str, Any]) -> WindowId:
    """The window of a ``release_decision`` row."""
    start, end = int(row["window_start"].timestamp()), int(row["window_end"].timestamp())
    return WindowId(row["indicator"], row["window_size"], start, end)


def audited_decision(row: Mapping[str, Any]) -> tuple[Decision, str]:
    """A ``release_decision`` row as the decision it recorded, with the time it was taken (Shanghai),
    as :func:`record_of` publishes them."""
    dims = tuple(sorted(orjson.loads(row["dimensions"]).items()))
    released = orjson.loads(row["released"]) if row["released"] else {}
    decision = Decision(
        audited_window(row), dims, orjson.loads(row["exact"]), row["status"], row["reason"], released
    )
    return decision, row["decided_at"].astimezone(SHANGHAI).isoformat(timespec="seconds")


class Audit:
    """The release's PostgreSQL tables (migration 0003): decisions, withheld revisions, progress."""

    def __init__(self, store: HistoryStore) -> None:
        self.store = store

    async def load(self, book: Book) -> dict[str, dict[str, dict[str, Any]]]:
        """Every decided cell per destination into ``book`` (the exact values last audited), and the
        rows, to republish what the topic lacks."""
        pool = await self.store.connect()
        rows = await pool.fetch(
            "SELECT destination, cell_key, indicator, window_size, window_start, window_end, exact, "
            "coalesce((SELECT w.exact FROM release_withheld w WHERE w.destination = d.destination "
            "AND w.cell_key = d.cell_key ORDER BY w.recorded_at DESC LIMIT 1), d.exact) AS latest, "
            "status, reason, released, decided_at, dimensions FROM release_decision d"
        )
        out: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        for r in rows:
            w = audited_window(r)
            if r["destination"] in book.decided:
                book.decided[r["destination"]].setdefault(w, {})[r["cell_key"]] = orjson.loads(r["latest"])
            out[r["destination"]][r["cell_key"]] = dict(r)
        return out

    async def decided(
        self, policy: Policy, decisions: Sequence[tuple[Decision, str]], event_time_s: float, at: datetime
    ) -> None:
        rows = [
            (
                policy.destination,
                d.key,
                d.window.indicator,
                d.window.window,
                datetime.fromtimestamp(d.window.start, UTC),
                datetime.fromtimestamp(d.window.end, UTC),
                orjson.dumps(dict(d.dims)).decode(),
                unit,
                d.status,
                d.reason,
                orjson.dumps(d.exact).decode(),
                orjson.dumps(d.released).decode() if d.status == "released" else None,
                policy.name,
                policy.version,
                policy.sha256,
                at,
            )
            for d, unit in decisions
        ]

        async def write(conn: asyncpg.Connection) -> None:
            await conn.executemany(
                "INSERT INTO release_decision (destination, cell_key, indicator, window_size, window_start, "
                "window_end, dimensions, unit, status, reason, exact, released, policy, policy_version, "
                "policy_sha256, decided_at) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9, $10, "
                "$11::jsonb, $12::jsonb, $13, $14, $15, $16) ON CONFLICT (destination, cell_key) DO NOTHING",
                rows,
            )
            await self._progress(conn, policy, event_time_s)

        await self.store.transact(write)

    async def withheld(self, policy: Policy, d: Decision) -> None:
        async def write(conn: asyncpg.Connection) -> None:
            await conn.execute(
                "INSERT INTO release_withheld (destination, cell_key, exact, exact_sha256, policy_sha256) "
                "VALUES ($1, $2, $3::jsonb, $4, $5) ON CONFLICT DO NOTHING",
                policy.destination,
                d.key,
                orjson.dumps(d.exact).decode(),
                _sha(d.exact),
                policy.sha256,
            )

        await self.store.transact(write)

    async def progress(self, policy: Policy, event_time_s: float) -> None:
        await self.store.transact(lambda conn: self._progress(conn, policy, event_time_s))

    @staticmethod
    async def _progress(conn: asyncpg.Connection, policy: Policy, event_time_s: float) -> None:
        await conn.execute(
            "INSERT INTO release_progress (destination, event_time, policy_sha256) VALUES ($1, $2, $3) "
            "ON CONFLICT (destination) DO UPDATE SET event_time = greatest(release_progress.event_time, "
            "excluded.event_time), policy_sha256 = excluded.policy_sha256, updated_at = now()",
            policy.destination,
            datetime.fromtimestamp(event_time_s, UTC),
            policy.sha256,
        )


class Release:
    """One release worker: the consumer of the case topics, the book, the audit and the producer."""

    def __init__(self, settings: ReleaseSettings, policies: Sequence[Policy], audit: Audit) -> None:
        self.settings, self.policies, self.audit = settings, policies, audit
        self.book = Book(releasable(DOMAINS), policies)
        self.watermarks = Watermarks(settings.release_idle_after_s)
        self.units = {name: r.spec.unit for name, r in self.book.indicators.items()}
        self.services = sorted(
            {
                r.domain.name
                for r in self.book.indicators.values()
                if any(r.spec.name in p.indicators for p in policies)
            }
        )
        self.topics = [settings.topic(case_topic(s)) for s in self.services]
        self.caught_up = False
        self.latest: dict[
            tuple[str, str], tuple[int, int, int]
        ] = {}  # (destination, window) -> start, counts
        self._withheld: dict[str, int] = defaultdict(int)  # since the last line that said so
        self._withheld_said: dict[str, float] = {}
        self.event_time_s = float("-inf")

    async def run(self, stop: asyncio.Event, counts: Mapping[str, int]) -> None:
        """Read the case topics (``counts``: their partitions) until ``stop``."""
        audited = await self.audit.load(self.book)
        producer = AIOKafkaProducer(**self.settings.kafka_client(), acks="all", linger_ms=20)
        consumer = AIOKafkaConsumer(
            **self.settings.kafka_client(),
            enable_auto_commit=False,
            isolation_level="read_committed",
            metadata_max_age_ms=5000,
        )
        await producer.start()
        await consumer.start()
        try:
            await self._repair(audited, producer, counts)
            partitions = [TopicPartition(t, p) for t in self.topics for p in range(counts[t])]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            ends = await consumer.end_offsets(partitions)
            log.info(
                "release running",
                extra={"destinations": [p.destination for p in self.policies], "topics": self.topics},
            )
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=500, max_records=5000)
                for tp, records in batches.items():
                    for r in records:
                        if r.value:
                            event = orjson.loads(r.value)
                            self.book.apply(event["data"])
                            self.watermarks.observe(tp, datetime.fromisoformat(event["time"]).timestamp())
                for tp in partitions:  # records waiting: not idle, whatever the clock says
                    highwater = consumer.highwater(tp)
                    if highwater is not None and await consumer.position(tp) < highwater:
                        self.watermarks.waiting(tp)
                if not self.caught_up:
                    positions = {tp: await consumer.position(tp) for tp in partitions}
                    self.caught_up = all(positions[tp] >= end for tp, end in ends.items())
                    if not self.caught_up:
                        continue
                    log.info(
                        "release caught up with the case topics", extra={"cases": len(self.book.members)}
                    )
                await self.step(producer, self.watermarks.value(partitions))
        finally:
            await consumer.stop()
            await producer.stop()

    async def step(self, producer: AIOKafkaProducer, event_time_s: float) -> None:
        """Decide what became final (steps 1 to 3 of the module's docstring); audit corrections of
        what was decided before."""
        moved = event_time_s > self.event_time_s
        self.event_time_s = max(self.event_time_s, event_time_s)
        if self.event_time_s > float("-inf"):
            FINAL_THROUGH.set(self.event_time_s)
        touched, self.book.touched = self.book.touched, set()
        final = self.book.final(self.event_time_s)
        now = datetime.now(UTC)
        released_at = now.astimezone(SHANGHAI).isoformat(timespec="seconds")
        for policy in self.policies:
            decided = self.book.decided[policy.destination]
            withheld = [await self._corrections(policy, w) for w in sorted(touched & decided.keys())]
            if sum(withheld):
                self._withheld[policy.destination] += sum(withheld)
                self._report_withheld(policy.destination)
            todo = [w for w in final if w not in decided and policy.releases(w.indicator, w.window)]
            if not todo:
                if moved and self.event_time_s > float("-inf"):
                    await self.audit.progress(policy, self.event_time_s)
                continue
            decisions = [(d, self.units[w.indicator]) for w in todo for d in self.book.decide(policy, w)]  # 1
            await self.audit.decided(policy, decisions, self.event_time_s, now)  # 2
            for d, unit in decisions:  # 3
                record = record_of(policy, d, unit, released_at)
                topic = self.settings.topic(release_topic(policy.destination))
                await producer.send(topic, orjson.dumps(record), key=d.key.encode())
                decided.setdefault(d.window, {})[d.key] = d.exact
                CELLS.labels(policy.destination, d.status, d.reason or "none").inc()
                self._latest(policy.destination, d)
            await producer.flush()

    def _report_withheld(self, destination: str) -> None:
        """One line a minute at most: cells of decided windows changed by late data since the last."""
        now = time.monotonic()
        if now - self._withheld_said.get(destination, 0.0) >= 60:
            count, self._withheld[destination] = self._withheld[destination], 0
            log.info("corrections withheld", extra={"destination": destination, "cells": count})
            self._withheld_said[destination] = now

    def _latest(self, destination: str, d: Decision) -> None:
        """Count a decision into the suppressed share of its destination's latest window."""
        key = (destination, d.window.window)
        start, suppressed, total = self.latest.get(key, (d.window.start, 0, 0))
        if d.window.start < start:
            return
        if d.window.start > start:
            start, suppressed, total = d.window.start, 0, 0
        suppressed, total = suppressed + (d.status == "suppressed"), total + 1
        self.latest[key] = (start, suppressed, total)
        SUPPRESSED_SHARE.labels(destination, d.window.window).set(suppressed / total)

    async def _corrections(self, policy: Policy, window: WindowId) -> int:
        """Audit each changed cell of a decided window; how many changed (counted, not logged one
        by one: late data after a window closed is normal, and the audit has every cell)."""
        audited, changed = self.book.decided[policy.destination][window], 0
        for d in self.book.decide(policy, window):
            if audited.get(d.key) != d.exact:
                await self.audit.withheld(policy, d)
                audited[d.key] = d.exact
                WITHHELD.labels(policy.destination).inc()
                log.debug("correction withheld", extra={"destination": policy.destination, "cell": d.key})
                changed += 1
        return changed

    async def _repair(
        self,
        audited: Mapping[str, Mapping[str, dict[str, Any]]],
        producer: AIOKafkaProducer,
        counts: Mapping[str, int],
    ) -> None:
        """Publish every audited cell the topic lacks (a crash between steps 2 and 3)."""
        for policy in self.policies:
            rows = audited.get(policy.destination, {})
            if not rows:
                continue
            topic = self.settings.topic(release_topic(policy.destination))
            present = await _keys(self.settings, topic, counts[topic])
            missing = [r for key, r in rows.items() if key not in present]
            for r in missing:
                d, at = audited_decision(r)
                record = record_of(policy, d, self.units[d.window.indicator], at)
                await producer.send(topic, orjson.dumps(record), key=d.key.encode())
            await producer.flush()
            if missing:
                log.info(
                    "republished audited cells",
                    extra={"destination": policy.destination, "cells": len(missing)},
                )


async def _keys(settings: Settings, topic: str, count: int) -> set[str]:
    """Every key on a (compacted) topic, read to its end at this moment."""
    consumer = AIOKafkaConsumer(**settings.kafka_client(), enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(count)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        keys: set[str] = set()
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                keys.update(r.key.decode() for r in records if r.key)
        return keys
    finally:
        await consumer.stop()


async def _run(settings: ReleaseSettings, stop: asyncio.Event) -> None:
    policies = load(settings)  # a bad policy stops here: one line, exit 2
    port = settings.port_for(PORT)
    require_free_port(settings.web_host, port)
    access = release_access(settings, [p.destination for p in policies])
    specs = release_topics(settings, [p.destination for p in policies])
    counts = await ensure_topics(
        settings.kafka_client(),
        specs,
        replication=settings.topic_replication,
        timeout_s=settings.startup_timeout_s,
        create=settings.create_topics,
        access=access,
    )
    deadline = time.monotonic() + settings.startup_timeout_s
    for topic in [t for t, n in counts.items() if not n] + [s.name for s in specs if s.name not in counts]:
        while not counts.get(topic):  # created a moment ago: its partitions are not described yet
            if time.monotonic() > deadline:
                raise StartupError(
                    f"topic {topic} has no partitions the broker describes; is it being deleted?"
                )
            await asyncio.sleep(0.2)
            counts[topic] = await partition_count(settings.kafka_client(), topic, timeout_s=5) or 0
    store = HistoryStore(settings.database_url.get_secret_value())
    await store.connect(give_up_after_s=settings.startup_timeout_s)
    await store.start()
    release = Release(settings, policies, Audit(store))

    def ready() -> dict[str, bool]:
        return {"postgresql": store.pool is not None, "caught_up": release.caught_up}

    pages = await serve_pages(settings.web_host, port, "release", ready=ready, foreign=DOMAINS)
    try:
        await release.run(stop, counts)
    finally:
        await pages.cleanup()
        await store.stop()
        log.info("release stopped")


def run_release(settings: ReleaseSettings) -> int:
    return run_until_stopped(lambda stop: _run(settings, stop))
