"""Reading one input record back by its coordinates, for the dead letter of a record whose effect
was refused after it left the intake (a forwarded event, a message between cases).

Forwarded copies never carry personal data (docs/contract.md section 6), so the original, which
the dead-letter topic must hold unchanged, is read back from the input topic. This is the rare
path; one group-less consumer serves it, created on first use.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from services.contract.codec import header_pairs
from services.engine.records import Origin, RawRecord

__all__ = ["RecordFetcher"]

log = logging.getLogger(__name__)


class RecordFetcher:
    """Reads records by (topic, partition, offset)."""

    def __init__(
        self, bootstrap: list[str], *, client: Mapping[str, Any] | None = None, timeout_s: float = 10.0
    ):
        self._bootstrap = bootstrap
        self._client = dict(client or {})
        self._timeout_s = timeout_s
        self._consumer: AIOKafkaConsumer | None = None

    async def __call__(self, origin: Origin) -> RawRecord | None:
        """The record at ``origin``; None if it is gone (retention) or cannot be read in time."""
        consumer = await self._ensure()
        tp = TopicPartition(origin.topic, origin.partition)
        consumer.assign([tp])
        consumer.seek(tp, origin.offset)
        try:
            async with asyncio.timeout(self._timeout_s):
                while True:
                    batch = await consumer.getmany(tp, timeout_ms=500, max_records=1)
                    for r in batch.get(tp, []):
                        if r.offset != origin.offset:  # compacted away, or deleted by retention
                            return None
                        timestamp = r.timestamp if r.timestamp is not None and r.timestamp >= 0 else None
                        return RawRecord(
                            origin.topic,
                            origin.partition,
                            r.offset,
                            r.key,
                            r.value,
                            header_pairs(r.headers),
                            timestamp,
                        )
        except TimeoutError:
            log.warning("could not read a record back for its dead letter", extra={"origin": list(origin)})
            return None

    async def _ensure(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self._bootstrap,
                **self._client,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
            )
            await consumer.start()
            await asyncio.sleep(0)  # let aiokafka's no-group routine start before any stop()
            self._consumer = consumer
        return self._consumer

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
