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
5. flush: outputs first, then state, deduplication keys last, each acknowledged by the broker
   (in the background, :class:`Flusher`: the agent goes on with its next batch meanwhile);
6. acknowledge the batch once the flush that carried it is done: from now on Faust may commit
   its offsets.

A crash anywhere before step 6 redelivers the batch: deduplication drops events whose effects
were written, and refused records whose dead letters were written; the rest is done again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TypeVar

from aiokafka.errors import KafkaError

from services.contract.codec import STRUCTURED_HEADER, DlqReason
from services.engine.pipeline import Pipeline
from services.engine.records import DeadLetter, Origin, RawRecord, dead_letter
from services.engine.state import StateStore
from services.runtime.intake import Intake
from services.runtime.metrics import EVENTS_INVALID, EVENTS_PROCESSED

__all__ = ["CommitPath", "Source"]

log = logging.getLogger(__name__)

Fetch = Callable[[Origin], Awaitable[RawRecord | None]]
T = TypeVar("T")


class Source(Enum):
    """What a batch is: which agent took it."""

    INPUT = "input"
    LINKS = "links"
    PARTIALS = "partials"


Ack = Callable[[], Awaitable[None]]


class Flusher:
    """Step 5 in the background: one flush at a time of whatever is staged, then the
    acknowledgements of every batch that flush carried (step 6).

    A submitter goes on as soon as the flush that carries its unit has *started*: an agent then
    processes its next batch while the broker acknowledges the last one, so round trips overlap
    with work, and each submitter has at most one unit staged behind the running flush
    (back-pressure). Every flush takes every staged unit, so no submitter waits behind another:
    under load a timer's partials or indicator records leave within two flushes. (A shared count
    of units in flight let the input agent, which always had its next batch ready, take every
    free slot: the partials timer waited 11 s.) Nothing is acknowledged before the flush that
    carried its state and outputs is done. A flush that fails (the broker is away) keeps what it
    had staged and is retried; nothing is acknowledged meanwhile.
    """

    def __init__(self, store: StateStore) -> None:
        self._store = store
        self._staged: list[tuple[Ack | None, int]] = []  # staged since the last flush began
        self._flushing: list[tuple[Ack | None, int]] = []
        self._started = 0  # flushes begun: the next one carries generation _started + 1
        self._task: asyncio.Task[None] | None = None
        self._progress = asyncio.Event()
        self.acknowledged = 0
        self.fatal: Callable[[BaseException], None] | None = None
        """Called with a flush's unexpected error (not the broker's: those are retried); the worker
        stops on it, where a background task would otherwise die unseen and hold every batch."""

    async def submit(self, ack: Ack | None, count: int = 0) -> None:
        """A unit was staged: acknowledge it (``count`` input records) after its flush; return once
        that flush has begun."""
        self._staged.append((ack, count))
        carried_by = self._started + 1
        if self._task is None or self._task.done():
            self._progress = asyncio.Event()  # of the running loop
            self._task = asyncio.create_task(self._run(), name="commit-flush")
        while self._started < carried_by and not self._task.done():
            self._progress.clear()
            await self._progress.wait()
        if self._task.done() and (exc := self._task.exception()) is not None:
            raise exc

    async def drain(self) -> None:
        """Wait until everything staged so far is flushed and acknowledged."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    async def _run(self) -> None:
        try:
            await self._flush_all()
        except Exception as exc:
            if self.fatal is None:
                raise
            self.fatal(exc)

    async def _flush_all(self) -> None:
        while self._staged:
            # what is staged now goes with this flush: swapped with no await before the store's own
            self._flushing, self._staged = self._staged, []
            self._started += 1
            self._progress.set()
            await self._flush()
            for ack, count in self._flushing:
                if ack is not None:
                    await ack()
                    self.acknowledged += count
            self._flushing = []

    async def _flush(self) -> None:
        delay = 0.5
        while True:
            try:
                await self._store.flush()
                return
            except KafkaError as exc:
                log.warning(
                    "flush failed; retrying",
                    extra={"error": f"{type(exc).__name__}: {exc}", "retry_s": delay},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)


@dataclass(slots=True)
class CommitPath:
    """Steps 1-6 for one service on one worker."""

    intake: Intake
    pipeline: Pipeline
    store: StateStore
    fetch: Fetch
    dlq: str  # the physical dead-letter topic of the (first) input topic
    dlqs: Mapping[str, str] = field(default_factory=dict)  # of every input topic, when there are more
    flusher: Flusher = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.flusher = Flusher(self.store)

    async def run(self, source: Source, records: Sequence[RawRecord], ack: Ack) -> None:
        """One batch of one agent, from taking it to staging it; it is acknowledged once flushed."""
        # 1. owned partitions, state restored
        owned = await self.store.wait_ready({r.partition for r in records})
        mine = [r for r in records if r.partition in owned]
        # 2. process (no await)
        dead: list[DeadLetter] = []
        if source is Source.INPUT:
            screened = self.intake.take(mine)
            dead = screened.rejected
            for record, event in screened.accepted:
                self.pipeline.take_event(record, event)
        elif source is Source.LINKS:
            for record in mine:
                self.pipeline.take_links(record)
        else:
            for record in mine:
                self.pipeline.take_partials(record)
        # 3.-4.
        await self._stage({r.partition for r in mine}, dead)
        # 5.-6. flush, then acknowledge (in the background)
        if source is Source.INPUT:
            processed = self.intake.by_topic(mine)

            async def acknowledge() -> None:
                await ack()
                for topic, n in processed.items():
                    EVENTS_PROCESSED.labels(topic=topic).inc(n)

            await self.flusher.submit(acknowledge, len(mine))
        else:
            await self.flusher.submit(ack)

    async def tick(self, work: Callable[[], T]) -> T:
        """A timer's work: steps 2-5 over every owned partition (there is nothing to acknowledge);
        returns what the work returned."""
        result = work()
        await self._stage(self.store.owned(), [])
        await self.flusher.submit(None)
        return result

    async def _stage(self, partitions: set[int], dead: list[DeadLetter]) -> None:
        # 3. resolve dead letters (may await: reading originals back)
        letters = await self._resolve([*dead, *self.pipeline.take_dead_letters()])
        # 4. stage (no await): refusals remembered, effects, outputs and letters together
        outputs = []
        for letter, record in letters:
            if self.store.owns(letter.partition) and self.intake.first_refusal(
                letter.partition, letter.origin
            ):
                dlq = self.dlqs.get(letter.origin.topic, self.dlq)
                letter_out = dead_letter(dlq, record, letter.reason, letter.detail, source=letter.partition)
                outputs.append(letter_out)
                topic = self.intake.label(letter.origin.topic)
                EVENTS_INVALID.labels(topic=topic, reason=letter.reason.value).inc()
                _log_refusal(letter)
        self.store.add_outputs(outputs)
        touched = partitions | {
            letter.partition for letter, _ in letters if self.store.owns(letter.partition)
        }
        self.pipeline.stage(touched)
        self.intake.checkpoint(touched)

    async def _resolve(self, dead: list[DeadLetter]) -> list[tuple[DeadLetter, RawRecord]]:
        out = []
        for letter in dead:
            record = letter.record or await self.fetch(letter.origin)
            if record is None:  # the original is gone: write TradePulse's copy, and say so
                headers = [
                    STRUCTURED_HEADER,
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
