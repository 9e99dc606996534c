"""The shared pipeline of every domain service, on top of the worker's intake path:

stage one (a :class:`CaseTracker` per service) keeps cases per input partition; records not keyed
by their ``subject`` and join messages travel through the internal ``links`` topic to the
partition that owns the case; stage two (:class:`StageTwo`) merges the partitions' partial
aggregates from the ``partials`` topic and publishes indicator records on a timer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from services.common.cases import CaseTracker, Outgoing, TooLate
from services.common.codec import DecodeError, DlqReason, decode, encode_structured
from services.common.events import Event
from services.common.indicators import StageTwo
from services.common.intake import RawRecord
from services.common.metrics import INDICATOR_RECORDS
from services.common.settings import EngineSettings
from services.common.topics import dlq_topic, indicator_topic, partition_for
from services.common.windows import IndicatorSpec
from services.common.worker import Wiring

__all__ = ["CasePipeline"]

log = logging.getLogger(__name__)


class CasePipeline:
    """A service's logic on the shared engine: routes events to its case tracker (stage one),
    sends what the tracker queued, merges partials (stage two) and publishes indicators."""

    def __init__(
        self,
        w: Wiring,
        config: EngineSettings,
        *,
        tracker: Callable[..., CaseTracker[Any]],
        indicators: Mapping[str, IndicatorSpec],
        topic: str,
    ) -> None:
        self.w = w
        self.service = w.service
        self.topic = topic
        self.partitions = w.settings.topic_partitions
        specs: dict[str, IndicatorSpec] = {
            name: dataclasses.replace(spec, grace_s=config.grace_s) for name, spec in indicators.items()
        }
        self.tracker = tracker(
            store=w.store,
            partitions=self.partitions,
            specs=specs,
            out_of_orderness_s=config.out_of_orderness_s,
            window_retention_s=config.window_retention_s,
            case_expiry_s=config.case_expiry_s,
            topic=topic,
        )
        self.stage_two = StageTwo(w.store, specs, self.service, config.idle_after_s)
        # Outgoing snapshots (partials) of one key must leave in the order they were taken.
        self._sending = asyncio.Lock()
        links, partials = w.internal_topic("links"), w.internal_topic("partials")
        completed = w.internal_topic("completed", compacted=True)  # read by `tradepulse history`
        self.topics = {
            "links": links.get_topic_name(),
            "partials": partials.get_topic_name(),
            "completed": completed.get_topic_name(),
        }
        self.indicator_topic = w.settings.topic(indicator_topic(self.service))
        self.dlq = w.settings.topic(dlq_topic(topic))
        w.agent(links, self.on_link_record, name="links", after=self.after_batch)
        w.agent(partials, self.on_partial_record, name="partials")
        w.timer(config.partials_interval_s, self.emit_partials, name="partials")
        w.timer(config.indicator_interval_s, self.publish, name="publish")
        w.timer(config.housekeeping_interval_s, self.housekeeping, name="housekeeping")
        w.store.on_revoke(self.tracker.forget)
        w.store.on_revoke(self.stage_two.forget)

    # -- stage one ------------------------------------------------------------------------------

    def on_event(self, record: RawRecord, event: Event) -> None:
        home = partition_for(event.subject, self.partitions)
        if home != record.partition:  # not keyed by subject: send it to its case's partition
            _, value = encode_structured(event, event.data)
            doc = {"t": "event", "key": event.subject, "ce": orjson.Fragment(value)}
            self.tracker.outbox.append(Outgoing("links", event.subject.encode(), orjson.dumps(doc)))
            return
        self.tracker.on_event(record.partition, event)

    async def on_link_record(self, record: RawRecord) -> None:
        """A bundle of join messages and forwarded events for this partition's cases."""
        for msg in orjson.loads(record.value or b"[]"):
            if msg.get("t") != "event":
                self.tracker.on_link(record.partition, msg)
                continue
            raw = orjson.dumps(msg["ce"])
            try:
                event = decode(raw, [("content-type", b"application/cloudevents+json")], topic=self.topic)
                self.tracker.on_event(record.partition, event)
            except (TooLate, DecodeError) as exc:
                headers = [
                    ("dlq_reason", DlqReason.PROCESSING_ERROR.value.encode()),
                    ("dlq_detail", str(exc).encode()),
                    ("dlq_topic", record.topic.encode()),
                    ("dlq_partition", str(record.partition).encode()),
                    ("dlq_offset", str(record.offset).encode()),
                ]
                await self.w.app.producer.send(
                    self.dlq,
                    msg.get("key", "").encode(),
                    raw,
                    partition=None,
                    timestamp=None,
                    headers=headers,
                )

    async def after_batch(self, partitions: set[int]) -> None:
        async with self._sending:
            self.tracker.stage(partitions)
            await self._send_outbox()

    async def _send_outbox(self) -> None:
        """Send queued messages; join messages go as one bundle per target partition."""
        outbox, self.tracker.outbox = self.tracker.outbox, []
        links: dict[int, list[bytes]] = {}
        for out in outbox:
            if out.topic == "links":
                links.setdefault(partition_for(out.key.decode(), self.partitions), []).append(out.value)
            else:
                await self.w.send(self.topics[out.topic], out.key, out.value, partition=out.partition)
        for q, values in links.items():
            bundle = b"[" + b",".join(values) + b"]"
            await self.w.send(self.topics["links"], str(q).encode(), bundle, partition=q)

    async def housekeeping(self) -> None:
        self.tracker.expire()

    # -- stage two ------------------------------------------------------------------------------

    def on_partial_record(self, record: RawRecord) -> None:
        self.stage_two.on_partials(record.partition, record.value or b"{}")

    async def emit_partials(self) -> None:
        """Send each owned partition's changed aggregates, bundled per stage-two partition."""
        async with self._sending:
            self.tracker.emit_partials()
            await self._send_outbox()

    async def publish(self) -> None:
        for key, value, final in self.stage_two.due():
            await self.w.send(self.indicator_topic, key, value)
            INDICATOR_RECORDS.labels(service=self.service, final=str(final).lower()).inc()
