"""The commit path: the one way every batch and every timer's work reaches Kafka.

Each of the three agents (input, links, partials) hands its batch to :meth:`CommitPath.run`, and
each timer (partials, publish, housekeeping) its work to :meth:`CommitPath.tick`. Both follow the
same numbered steps (docs/design.md), in the spirit of quix-streams' ``Checkpoint.commit()``:

1. keep the records of partitions this worker owns, once their state is restored;
2. process: screen and deduplicate input, apply events and messages, merge partials (in memory,
   without awaiting anything, so no other batch interleaves);
3. resolve dead letters: read back originals that are not at hand, skip records a previous
   delivery already dead-lettered;
4. stage: changed state into the store, together with every output and dead letter (one step,
   no await between: whatever state is written goes with the outputs that belong to it);
5. flush: outputs first, then state, deduplication keys last, each acknowledged by the broker;
6. acknowledge the batch: from now on Faust may commit its offsets.

A crash anywhere before step 6 redelivers the batch: deduplication drops events whose effects
were written, and refused records whose dead letters were written; the rest is done again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from aiokafka.errors import KafkaError

from services.contract.codec import DlqReason
from services.engine.pipeline import Pipeline
from services.engine.records import DeadLetter, Origin, RawRecord, dead_letter
from services.engine.state import StateStore
from services.runtime.intake import Intake
from services.runtime.metrics import EVENTS_INVALID, EVENTS_PROCESSED

__all__ = ["CommitPath", "Source"]

log = logging.getLogger(__name__)

Fetch = Callable[[Origin], Awaitable[RawRecord | None]]


class Source(Enum):
    """What a batch is: which agent took it."""

    INPUT = "input"
    LINKS = "links"
    PARTIALS = "partials"


@dataclass(slots=True)
class CommitPath:
    """Steps 1-6 for one service on one worker."""

    intake: Intake
    pipeline: Pipeline
    store: StateStore
    fetch: Fetch
    dlq: str  # the physical dead-letter topic of the input topic
    _processed: Any = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._processed = EVENTS_PROCESSED.labels(topic=self.intake.topic)

    async def run(
        self, source: Source, records: Sequence[RawRecord], ack: Callable[[], Awaitable[None]]
    ) -> None:
        """One batch of one agent, from taking it to acknowledging it."""
        # 1. owned partitions, state restored
        owned = await self.store.wait_ready({r.partition for r in records})
        mine = [r for r in records if r.partition in owned]
        # 2. process (no await)
        dead: list[DeadLetter] = []
        if source is Source.INPUT:
            screened = self.intake.take(mine)
            dead = [
                DeadLetter(r.record.origin, r.reason, r.detail, r.record.partition, r.record)
                for r in screened.rejected
            ]
            for record, event in screened.accepted:
                self.pipeline.take_event(record, event)
        elif source is Source.LINKS:
            for record in mine:
                self.pipeline.take_links(record)
        else:
            for record in mine:
                self.pipeline.take_partials(record)
        # 3.-5.
        await self._commit({r.partition for r in mine}, dead)
        # 6. acknowledge
        await ack()
        if source is Source.INPUT:
            self._processed.inc(len(mine))

    async def tick(self, work: Callable[[], None]) -> None:
        """A timer's work (steps 2-5 over every owned partition; there is nothing to acknowledge)."""
        work()
        await self._commit(self.store.owned(), [])

    async def _commit(self, partitions: set[int], dead: list[DeadLetter]) -> None:
        # 3. resolve dead letters (may await: reading originals back)
        letters = await self._resolve([*dead, *self.pipeline.take_dead_letters()])
        # 4. stage (no await): refusals remembered, effects, outputs and letters together
        outputs = []
        for letter, record in letters:
            if self.store.owns(letter.partition) and self.intake.first_refusal(
                letter.partition, letter.origin
            ):
                outputs.append(
                    dead_letter(self.dlq, record, letter.reason, letter.detail, source=letter.partition)
                )
                EVENTS_INVALID.labels(topic=self.intake.topic, reason=letter.reason.value).inc()
                _log_refusal(letter)
        self.store.add_outputs(outputs)
        touched = partitions | {
            letter.partition for letter, _ in letters if self.store.owns(letter.partition)
        }
        self.pipeline.stage(touched)
        self.intake.checkpoint(touched)
        # 5. flush (retried while the broker is away: what is staged stays staged)
        delay = 0.5
        while True:
            try:
                await self.store.flush()
                return
            except KafkaError as exc:
                log.warning(
                    "flush failed; retrying",
                    extra={"error": f"{type(exc).__name__}: {exc}", "retry_s": delay},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _resolve(self, dead: list[DeadLetter]) -> list[tuple[DeadLetter, RawRecord]]:
        out = []
        for letter in dead:
            record = letter.record or await self.fetch(letter.origin)
            if record is None:  # the original is gone: write TradePulse's copy, and say so
                headers = [
                    ("content-type", b"application/cloudevents+json"),
                    ("dlq_note", b"original no longer in its topic; a copy without personal data"),
                ]
                record = RawRecord(*letter.origin, None, letter.copy, headers)
            out.append((letter, record))
        return out


def _log_refusal(letter: DeadLetter) -> None:
    """One line per dead letter: where it came from and why (the detail never quotes personal data)."""
    level = logging.ERROR if letter.reason is DlqReason.PROCESSING_ERROR else logging.WARNING
    log.log(
        level,
        "record dead-lettered",
        extra={"topic": letter.origin.topic, "partition": letter.origin.partition,
               "offset": letter.origin.offset, "reason": letter.reason.value, "detail": letter.detail},
    )  # fmt: skip
