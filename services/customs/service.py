"""Wiring of the customs worker: the shared intake path, the declaration tracker (stage one),
the shared indicator merger (stage two), and their internal topics. Plumbing only."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

import orjson

from services.common.codec import DecodeError, DlqReason, decode, encode_structured
from services.common.events import Event
from services.common.indicators import StageTwo
from services.common.intake import RawRecord
from services.common.topics import dlq_topic, indicator_topic, partition_for
from services.common.windows import IndicatorSpec
from services.common.worker import ServiceSpec, Wiring
from services.customs import metrics
from services.customs.lifecycle import INDICATORS
from services.customs.settings import CustomsSettings
from services.customs.tracker import Outgoing, TooLate, Tracker

log = logging.getLogger(__name__)
TOPIC = "customs.events.v1"


class CustomsLogic:
    """Routes events to the tracker, sends what it queued, publishes indicators on a timer."""

    def __init__(self, w: Wiring, config: CustomsSettings) -> None:
        self.w = w
        self.partitions = w.settings.topic_partitions
        specs: dict[str, IndicatorSpec] = {
            name: dataclasses.replace(spec, grace_s=config.grace_s) for name, spec in INDICATORS.items()
        }
        self.tracker = Tracker(
            store=w.store,
            partitions=self.partitions,
            specs=specs,
            out_of_orderness_s=config.out_of_orderness_s,
            window_retention_s=config.window_retention_s,
            case_expiry_s=config.case_expiry_s,
        )
        self.stage_two = StageTwo(w.store, specs, "customs", config.idle_after_s)
        # Outgoing snapshots (partials) of one key must leave in the order they were taken.
        self._sending = asyncio.Lock()
        links, partials = w.internal_topic("links"), w.internal_topic("partials")
        self.topics = {"links": links.get_topic_name(), "partials": partials.get_topic_name()}
        self.indicator_topic = w.settings.topic(indicator_topic("customs"))
        self.dlq = w.settings.topic(dlq_topic(TOPIC))
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
            self.tracker.outbox.append(_out("links", event.subject, doc))
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
                event = decode(raw, [("content-type", b"application/cloudevents+json")], topic=TOPIC)
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
            metrics.INDICATOR_RECORDS.labels(service="customs", final=str(final).lower()).inc()


def _out(topic: str, key: str, doc: object) -> Outgoing:
    return Outgoing(topic, key.encode(), orjson.dumps(doc))


def build(w: Wiring) -> CustomsLogic:
    return CustomsLogic(w, CustomsSettings())


SPEC = ServiceSpec(name="customs", logic=build)
