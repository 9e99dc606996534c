"""The real commit path, intake and pipeline of one domain, wired in memory instead of Kafka.

Topics are lists of records; a record written to the links or partials topic is delivered to the
agent of its partition, as Faust would, until nothing moves. Unit tests drive domains, and a toy
domain, through exactly the code the workers run; the integration tests do the same on Kafka.
"""

from __future__ import annotations

import asyncio
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from services.contract.topics import partition_for
from services.engine.domain import Domain, EngineSettings
from services.engine.pipeline import Pipeline, Topics
from services.engine.records import Origin, Out, RawRecord
from services.engine.state import MemoryStore
from services.runtime.commit import CommitPath, Source
from services.runtime.dedup import STATE_INDEXES
from services.runtime.intake import Intake

TOPICS = Topics(
    links="links", partials="partials", indicators="indicators", dlq="dlq", cases="cases", watch="watch"
)
STRUCTURED = [("content-type", b"application/cloudevents+json")]


def memory_store(partitions: int = 1) -> MemoryStore:
    """A store in memory with the indexes every worker's store keeps."""
    return MemoryStore(partitions, indexes=STATE_INDEXES)


class Wiring:
    """One worker owning every partition, its state in a :class:`MemoryStore`."""

    def __init__(
        self,
        domain: Domain,
        *,
        partitions: int = 4,
        settings: EngineSettings | None = None,
        store: MemoryStore | None = None,
        clock: Any = None,
        context: Any = None,
    ) -> None:
        self.domain = domain
        self.partitions = partitions
        self.settings = settings or domain.settings()
        self.store = store or memory_store(partitions)
        self.topics: dict[str, list[RawRecord]] = defaultdict(list)
        context = context if context is not None else domain.context(self.settings)
        self.pipeline = Pipeline(
            domain,
            settings=self.settings,
            context=context,
            store=self.store,
            partitions=partitions,
            topics=TOPICS,
        )
        extra = {"clock": clock} if clock is not None else {}
        self.intake = Intake(
            catalog=domain.catalog, store=self.store, horizon_s=7 * 86400, max_bytes=1 << 20,
            deduplicate=not domain.derived, max_age_s=math.inf,  # corpora of fixed dates, long past
            **extra,
        )  # fmt: skip
        self.commit = CommitPath(
            intake=self.intake, pipeline=self.pipeline, store=self.store, fetch=self._fetch, dlq=TOPICS.dlq
        )
        self.acked = 0
        self._cursors: dict[str, int] = {}
        self.deleted: set[Origin] = set()

    # -- producing --------------------------------------------------------------------------

    def record(
        self, value: bytes | None, *, key: bytes | None, headers: Sequence[tuple[str, bytes]] = STRUCTURED
    ) -> RawRecord:
        """Append an input record to the input topic (partition chosen by key, as Kafka does)."""
        partition = partition_for(key, self.partitions) if key is not None else 0
        log = self.topics[f"{self.domain.topic}/{partition}"]
        record = RawRecord(self.domain.topic, partition, len(log), key, value, list(headers), 1_000)
        log.append(record)
        return record

    def event_records(self, events: Iterable[dict[str, Any]]) -> list[RawRecord]:
        return [self.record(orjson.dumps(e), key=str(e["subject"]).encode()) for e in events]

    # -- running ----------------------------------------------------------------------------

    async def take(self, records: Sequence[RawRecord]) -> None:
        """One input batch through the commit path, then everything it set moving."""
        await self.commit.run(Source.INPUT, records, self._ack(len(records)))
        await self.commit.flusher.drain()
        await self.settle()

    async def settle(self) -> None:
        """Deliver links until none are left, then hand the partials over and deliver them, as the
        links agent and the partials timer would."""
        while links := self._undelivered(TOPICS.links):
            for record in links:
                await self.commit.run(Source.LINKS, [record], self._ack(1))
            await self.commit.flusher.drain()
        await self.tick(self.pipeline.emit_partials)
        for record in self._undelivered(TOPICS.partials):
            await self.commit.run(Source.PARTIALS, [record], self._ack(1))
        await self.commit.flusher.drain()

    async def tick(self, work: Any) -> None:
        """A timer's work through the commit path, flushed."""
        await self.commit.tick(work)
        await self.commit.flusher.drain()

    async def publish(self) -> dict[str, dict[str, Any]]:
        """Publish due records; returns the latest data of every indicator key written so far."""
        await self.tick(self.pipeline.publish)
        return self.latest()

    def run(self, events: Iterable[dict[str, Any]], *, batch: int = 1) -> dict[str, dict[str, Any]]:
        """Feed ``events`` (in the given order, ``batch`` records at a time); the latest records."""

        async def go() -> dict[str, dict[str, Any]]:
            records = self.event_records(events)
            for i in range(0, len(records), batch):
                await self.take(records[i : i + batch])
            return await self.publish()

        return asyncio.run(go())

    # -- reading ----------------------------------------------------------------------------

    def written(self, topic: str) -> list[Out]:
        return [o for o in self.store.written if o.topic == topic]

    def latest(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for o in self.written(TOPICS.indicators):
            data = orjson.loads(o.value or b"")["data"]
            key = (o.key or b"").decode()
            if data["revision"] >= out.get(key, {}).get("revision", 0):
                out[key] = data
        return out

    # -- internals ----------------------------------------------------------------------------

    def _ack(self, n: int) -> Any:
        async def ack() -> None:
            self.acked += n

        return ack

    def _undelivered(self, topic: str) -> list[RawRecord]:
        """Outputs on an internal topic not delivered yet, as records of their partitions."""
        records = []
        written = self.written(topic)
        for o in written[self._cursors.get(topic, 0) :]:
            assert o.partition is not None
            log = self.topics[f"{topic}/{o.partition}"]
            record = RawRecord(topic, o.partition, len(log), o.key, o.value, list(o.headers))
            log.append(record)
            records.append(record)
        self._cursors[topic] = len(written)
        return records

    def delete(self, record: RawRecord) -> None:
        """Take a record out of its topic, as retention does (it cannot be read back any more)."""
        self.deleted.add(record.origin)

    async def _fetch(self, origin: Origin) -> RawRecord | None:
        log = self.topics.get(f"{origin.topic}/{origin.partition}", [])
        return log[origin.offset] if origin.offset < len(log) and origin not in self.deleted else None
