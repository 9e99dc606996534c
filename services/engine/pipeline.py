"""One domain's engine on one worker: stage one (cases), the links between partitions, stage two
(indicators), and what they write.

- An input event goes to its case's partition: at home it is folded (:class:`CaseEngine`);
  elsewhere (a record not keyed by its ``subject``) it is forwarded through the internal ``links``
  topic with its original coordinates, and without personal data.
- Messages between cases (a join) travel the same way, bundled per target partition.
- About once a second each partition hands its changed aggregates to stage two (``partials``
  topic); stage two merges them and publishes indicator records on a timer.
- A change that cannot be applied becomes a :class:`DeadLetter` of the input record that caused
  it, wherever that record was read.

Nothing here reads or writes Kafka: the commit path (services.runtime.commit) hands records in and
writes what :meth:`Pipeline.stage` returns. Tests drive the same code in memory.
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import orjson

from services.contract.codec import STRUCTURED_HEADER, DecodeError, DlqReason, decode
from services.contract.envelope import JSON_DATA, Event, cloud_event
from services.contract.records import CASE_TYPE, INDICATOR_TYPE, WATCH_TYPE
from services.contract.topics import partition_for
from services.engine.cases import NON_STR_KEYS, CaseEngine, Entry, TooLate
from services.engine.domain import Domain, EngineSettings, Message, Observer
from services.engine.merge import StageTwo, stage_two_partition
from services.engine.metrics import INDICATOR_RECORDS, LATE_EVENTS, IndicatorGauges
from services.engine.records import DeadLetter, Origin, Out, RawRecord
from services.engine.registers import from_json, to_json
from services.engine.state import StateStore
from services.engine.windows import SHANGHAI, measure_name

__all__ = ["Pipeline", "Topics"]

log = logging.getLogger(__name__)

STRUCTURED = [STRUCTURED_HEADER]


@dataclass(frozen=True, slots=True)
class Topics:
    """The physical names of the topics a pipeline writes."""

    links: str
    partials: str
    indicators: str
    dlq: str
    cases: str
    watch: str


class Pipeline:
    """The engine of one domain on this worker."""

    def __init__(
        self,
        domain: Domain,
        *,
        settings: EngineSettings,
        context: Any,
        store: StateStore,
        partitions: int,
        topics: Topics,
        observer: Observer | None = None,
        cache_cases: int = 100_000,
    ) -> None:
        self.domain = domain
        self.partitions = partitions
        self.topics = topics
        self.source = f"/tradepulse/{domain.name}"
        late = LATE_EVENTS.labels(topic=domain.topic)
        self.cases = CaseEngine(
            domain,
            settings=settings,
            context=context,
            store=store,
            observer=observer or domain.observer(settings),
            late_events=late.inc,
            cache_cases=cache_cases,
        )
        self.stage_two = StageTwo(store, self.cases.specs, settings.idle_after_s, settings.window_retention_s)
        self.gauges = IndicatorGauges(self.cases.specs)
        self._published = {
            f: INDICATOR_RECORDS.labels(service=domain.name, final=f) for f in ("true", "false")
        }
        self._messages = {t.__name__: t for t in domain.messages}
        self._links: dict[tuple[int, int], list[bytes]] = {}  # (target, source) -> items
        self._outputs: list[Out] = []
        self._dead: list[DeadLetter] = []
        self._sent_watermark: dict[int, float] = {}  # the last watermark each partition handed on

    # -- what the agents hand in --------------------------------------------------------------

    def take_event(self, record: RawRecord, event: Event) -> None:
        """A new, valid input event read from ``record``."""
        routed = self.domain.route(event)
        if routed is None:
            return
        kind, key = routed
        home = partition_for(key, self.partitions)
        if home != record.partition:  # not keyed by its subject: to its case's partition
            item = {"t": "e", "o": list(record.origin), "ce": event.without_personal_data()}
            self._link(home, record.partition, orjson.dumps(item))
            return
        try:
            sent = self.cases.apply_event(record.partition, kind, key, event)
        except Exception as exc:  # one bad event must not stop the stream
            self._refuse(record.partition, record.origin, event, exc, record=record)
            return
        if sent:
            self._send(record.partition, sent, event.time_s, record.origin)

    def take_links(self, record: RawRecord) -> None:
        """A bundle of forwarded events and messages for cases of ``record.partition``."""
        p = record.partition
        for item in orjson.loads(record.value or b"[]"):
            origin = Origin(*item["o"])
            if item["t"] == "e":
                copy = orjson.dumps(item["ce"])
                try:
                    event = decode(copy, STRUCTURED, catalog=self.domain.catalog, max_bytes=len(copy))
                    routed = self.domain.route(event)
                    assert routed is not None, "only routed events are forwarded"
                    sent = self.cases.apply_event(p, *routed, event)
                except Exception as exc:
                    self._refuse(p, origin, None, exc, copy=copy)
                    continue
                self._send(p, sent, event.time_s, origin)
            else:
                message = Message(item["k"], item["key"], from_json(self._messages[item["m"]], item["b"]))
                try:
                    sent = self.cases.apply_message(p, message, item["at"])
                except Exception as exc:
                    self._refuse(p, origin, None, exc)
                    continue
                self._send(p, sent, item["at"], origin)

    def take_partials(self, record: RawRecord) -> None:
        self.stage_two.on_partials(record.partition, record.value or b"{}")

    # -- timers -------------------------------------------------------------------------------

    def emit_partials(self) -> None:
        """Hand each owned partition's changed aggregates, and its watermark when it moved, to the
        stage-two partitions (whole aggregates: stage two replaces them). Nothing is sent when
        nothing changed: an unmoved watermark tells stage two nothing, and a steady trickle of
        empty bundles would keep the partials topic from ever being caught up."""
        for p, watermark, changed, whole in self.cases.partials():
            moved = watermark != self._sent_watermark.get(p)
            if not moved and not changed and not whole:
                continue
            if watermark is not None:
                self._sent_watermark[p] = watermark
            bundles: dict[int, dict[str, Any]] = {q: {} for q in range(self.partitions)}
            for key, agg in changed.items():
                bundles[stage_two_partition(key, self.partitions)][key.text] = agg.to_json()
            for q, aggs in bundles.items():
                if aggs or moved or whole:
                    msg = {"src": p, "wm": watermark, "aggs": aggs, **({"whole": True} if whole else {})}
                    value = orjson.dumps(msg, option=NON_STR_KEYS)
                    self._outputs.append(Out(self.topics.partials, str(p).encode(), value, q, source=p))

    def publish(self) -> None:
        """Indicator records of every changed or newly final window."""
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        for pub in self.stage_two.due():
            key, record = pub.key, pub.record
            text = key.text
            data = record.model_dump(mode="json", exclude_none=True)
            event = cloud_event(
                f"{text}|r{record.revision}", self.source, INDICATOR_TYPE, now, text, data, **JSON_DATA
            )
            self._outputs.append(
                Out(self.topics.indicators, text.encode(), orjson.dumps(event), source=pub.partition)
            )
            self.gauges.published(pub.partition, key, record)
            self._published["true" if record.final else "false"].inc()

    def loading(self, partition: int) -> Generator[None, None, None]:
        """A partition's state was restored: load what is kept of it in memory (its aggregates,
        tallies and stage-two windows; bounded, never its cases) before its records are taken, so
        that gauges are right from then on. Yields now and then: the caller's loop may turn."""
        yield from self.cases.loading(partition)
        yield from self.stage_two.loading(partition)

    def watch(self, wall_s: float) -> bool:
        """Move the SLA watch's clock (``wall_s``: the wall time, for idle partitions) and flag
        what it reached; True if work was left for another pass."""
        return self.cases.watch(wall_s)

    def housekeeping(self) -> bool:
        """One bounded pass of both stages' housekeeping; True if work was left for another."""
        more = self.cases.expire()
        self.stage_two.expire()
        return more

    # -- commit support -----------------------------------------------------------------------

    def take_dead_letters(self) -> list[DeadLetter]:
        """Records refused since the last call."""
        dead, self._dead = self._dead, []
        return dead

    def stage(self, partitions: set[int]) -> None:
        """Put the changed state of ``partitions`` into the store, and every pending output with it
        (in one step: the store writes them before that state)."""
        self.cases.stage(partitions)
        outputs, self._outputs = self._outputs, []
        outputs.extend(self._case_records())
        outputs.extend(self._watch_records())
        for (target, source), items in self._links.items():
            bundle = b"[" + b",".join(items) + b"]"
            outputs.append(Out(self.topics.links, str(target).encode(), bundle, target, source=source))
        self._links = {}
        self.cases.store.add_outputs(outputs)

    def _case_records(self) -> list[Out]:
        """The latest state of every case of the domain's own kind changed since the last call."""
        latest = {(c.partition, c.key): c for c in self.cases.take_changes()}
        kinds = {s.name: s.kind for s in self.cases.specs.values()}
        out = []
        for (p, key), change in latest.items():
            entry, case = change.entry, change.entry.case
            data = {
                "service": self.domain.name,
                "case_id": key,
                "status": change.status or case.status,
                "milestones": {name: _iso(at) for name, at in case.milestones.items()},
                "measures": {
                    measure_name(c.indicator, c.dims): c.amount if kinds[c.indicator] == "amount" else c.value
                    for c, _ in entry.applied
                },
                "attributes": dict(case.attributes()),
                "revision": entry.revision,
            }
            time = _iso(entry.last_s)
            record = cloud_event(
                f"{key}|r{entry.revision}", self.source, CASE_TYPE, time, key, data, **JSON_DATA
            )
            out.append(Out(self.topics.cases, key.encode(), orjson.dumps(record), source=p))
        return out

    def watching(self, rules: Sequence[str], states: Sequence[str], after: str, limit: int) -> dict[str, Any]:
        """The ``GET /watch`` page's body: flagged cases of the partitions this worker owns, as their
        watch records' data, oldest start first; ``next``: the cursor of the page after, if any."""
        found = self.cases.flagged_cases(rules, states, after, limit + 1)
        cases = [self._watch_data(key, entry) for _, key, entry in found[:limit]]
        following = found[limit - 1][0] if len(found) > limit else None
        return {"service": self.domain.name, "partitions": sorted(self.cases.store.owned()),
                "cases": cases, "next": following}  # fmt: skip

    def _watch_data(self, key: str, entry: Entry) -> dict[str, Any]:
        """A flagged case's record data (the watch topic's and the /watch page's)."""
        flag, case = entry.flag, entry.case
        assert flag is not None
        return {
            "service": self.domain.name,
            "case_id": key,
            "rule": flag.rule,
            "state": flag.state,
            "since": _iso(flag.since),
            "due": _iso(flag.due),
            "started": _iso(flag.start),
            "reached": flag.reached,
            "milestones": {name: _iso(at) for name, at in case.milestones.items()},
            "attributes": dict(case.attributes()),
        }

    def _watch_records(self) -> list[Out]:
        """The latest watch flag of every case whose flag changed since the last call; a withdrawn
        flag (a late event showed the case ended before its warning point) is a tombstone."""
        latest = {(c.partition, c.key): c for c in self.cases.take_flagged()}
        out = []
        for (p, key), change in latest.items():
            flag = change.entry.flag
            if flag is None:
                out.append(Out(self.topics.watch, key.encode(), None, source=p))
                continue
            data = self._watch_data(key, change.entry)
            # one id per content: the flag, and the case's revision its milestones are of
            eid = f"{key}|{flag.rule}|{flag.state}|{round(flag.since * 1000)}|r{change.entry.revision}"
            record = cloud_event(eid, self.source, WATCH_TYPE, data["since"], key, data, **JSON_DATA)
            out.append(Out(self.topics.watch, key.encode(), orjson.dumps(record), source=p))
        return out

    def forget(self, partitions: set[int]) -> None:
        """Partitions taken away: their caches and pending outputs go (the new owner redoes them)."""
        self.cases.forget(partitions)
        self.stage_two.forget(partitions)
        self.gauges.forget(partitions)
        self._outputs = [o for o in self._outputs if o.source not in partitions]
        self._links = {k: v for k, v in self._links.items() if k[1] not in partitions}
        self._dead = [d for d in self._dead if d.partition not in partitions]
        for p in partitions:
            self._sent_watermark.pop(p, None)

    # -- internals ----------------------------------------------------------------------------

    def _link(self, target: int, source: int, item: bytes) -> None:
        self._links.setdefault((target, source), []).append(item)

    def _send(self, source: int, messages: Sequence[Message], at_s: float, origin: Origin) -> None:
        for m in messages:
            item = {"t": "m", "o": list(origin), "at": at_s, "k": m.kind, "key": m.key,
                    "m": type(m.body).__name__, "b": to_json(m.body)}  # fmt: skip
            self._link(partition_for(m.key, self.partitions), source, orjson.dumps(item))

    def _refuse(
        self,
        partition: int,
        origin: Origin,
        event: Event | None,
        exc: Exception,
        *,
        record: RawRecord | None = None,
        copy: bytes | None = None,
    ) -> None:
        if isinstance(exc, TooLate | DecodeError):
            detail = str(exc)
        else:
            what = f"{event.type} {event.id}: " if event is not None else ""
            detail = f"{what}{type(exc).__name__}: {exc}"
            log.error("processing error", exc_info=exc, extra={"origin": list(origin)})
        self._dead.append(DeadLetter(origin, DlqReason.PROCESSING_ERROR, detail, partition, record, copy))


@lru_cache(maxsize=131_072)
def _iso(at_s: float) -> str:
    """RFC 3339 in Shanghai time; cached, since a case's record repeats its milestones each revision."""
    return datetime.fromtimestamp(at_s, SHANGHAI).isoformat(timespec="milliseconds")
