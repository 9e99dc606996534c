"""Stage one of every service, the shared part: cases per input partition and their
contributions to the indicator aggregates. A service subclasses :class:`CaseTracker` with how to
load a case, which contributions a case makes, and its metrics; the tracker does the rest:

- restores a partition's cases from the state store the first time the partition is used, and
  rebuilds its aggregates from them (aggregates are never stored, so they cannot disagree with
  the cases after a crash), and publishes them all again;
- applies a change to a case, replaces the case's contributions in the aggregates (a correction
  moves a case, it is never counted twice), refuses changes to windows past the retention;
- stages changed cases in the store, bundles changed aggregates for stage two, expires cases.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import orjson

from services.common.metrics import LATE_EVENTS
from services.common.state import StateStore
from services.common.topics import partition_for
from services.common.windows import (
    SHANGHAI,
    WINDOWS,
    Agg,
    Contribution,
    IndicatorSpec,
    Partials,
    contribution_id,
)

__all__ = ["Case", "CaseTracker", "Outgoing", "PartitionCases", "TooLate", "keep_earliest", "time_from_json"]

Applied = list[tuple[Contribution, tuple[str, ...]]]
AGGKEY = "aggkey"  # state kind: the indicator keys a partition has aggregates for


def keep_earliest(times: dict[str, float], milestone: str, at_s: float) -> bool:
    """Keep the earliest time of a milestone; True if it changed. This is what makes every case
    type order- and duplicate-insensitive."""
    if at_s < times.get(milestone, float("inf")):
        times[milestone] = at_s
        return True
    return False


def time_from_json(value: Any) -> float:
    """A stored event time; JSON has no infinity (orjson writes null), so null reads back as -inf."""
    return float("-inf") if value is None else float(value)


class TooLate(ValueError):
    """A change to a window older than the retention; the event goes to the DLQ."""


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message for an internal topic: ``links`` (joins, forwarded events) or ``partials``."""

    topic: str
    key: bytes
    value: bytes
    partition: int | None = None


class Case(Protocol):
    """What the tracker needs of a service's case type."""

    times: dict[str, float]
    applied: Applied
    last_event_s: float
    changed_wall_s: float

    @property
    def key(self) -> str: ...

    @property
    def group(self) -> str:
        """Label of the open-cases gauge (ie_flag, mgmt_category, ...)."""

    @property
    def open(self) -> bool: ...

    @property
    def finished(self) -> bool:
        """Nothing more can change its measures (released and exited, rejected, ...)."""

    def to_json(self) -> dict[str, Any]: ...

    def apply(self, event_type: str, data: Any, at_s: float, event_id: str) -> bool:
        """Apply one event of this case; True if its state changed."""


C = TypeVar("C", bound=Case)


@dataclass(slots=True)
class PartitionCases(Generic[C]):
    partition: int
    partials: Partials
    cases: dict[str, C] = field(default_factory=dict)
    dirty: set[str] = field(default_factory=set)
    open_by: Counter[str] = field(default_factory=Counter)


class CaseTracker(Generic[C]):
    """Cases of the partitions this worker owns, for one service."""

    kind: ClassVar[str] = "case"

    def __init__(
        self,
        *,
        store: StateStore,
        partitions: int,
        specs: Mapping[str, IndicatorSpec],
        out_of_orderness_s: float = 600.0,
        window_retention_s: float = 35 * 86400.0,
        case_expiry_s: float = 90 * 86400.0,
        clock: Callable[[], float] = time.time,
        topic: str = "",
    ) -> None:
        self.store = store
        self.service = topic.split(".", 1)[0] if topic else type(self).__name__.lower()
        self.late_events = LATE_EVENTS.labels(topic=topic or f"{type(self).__name__}")
        self.partitions = partitions
        self.specs = specs
        self.out_of_orderness_s = out_of_orderness_s
        self.window_retention_s = window_retention_s
        self.case_expiry_s = case_expiry_s
        self.clock = clock
        self.outbox: list[Outgoing] = []
        self.states: dict[int, PartitionCases[C]] = {}

    # -- what a service provides ------------------------------------------------------------

    def load_case(self, doc: dict[str, Any]) -> C:
        raise NotImplementedError

    def new_case(self, key: str) -> C:
        """A case of which nothing is known yet."""
        raise NotImplementedError

    def contributions(self, case: C) -> list[Contribution]:
        raise NotImplementedError

    def on_new_contribution(self, c: Contribution, case: C) -> None:
        """A measure the case did not have before (histograms observe it once)."""

    def on_expired(self, case: C) -> None:
        """An unfinished case dropped after the expiry (count it)."""

    def set_gauge(self, open_by_group: Counter[str]) -> None:
        """Open cases on this worker, by group."""

    def attributes(self, case: C) -> dict[str, Any]:
        """What analysts want to know of a completed case besides its milestones and measures."""
        return {}

    def completed_record(self, case: C) -> dict[str, Any]:
        """The history row of a finished case (``completed_case`` table)."""
        return {
            "service": self.service,
            "case_id": case.key,
            "completed_at": _iso(max(case.times.values())),
            "milestones": {name: _iso(at) for name, at in sorted(case.times.items())},
            "measures": {
                contribution_id(c): c.amount if self.specs[c.indicator].kind == "amount" else c.value
                for c, _ in case.applied
            },
            "attributes": self.attributes(case),
        }  # fmt: skip

    # -- state per partition ------------------------------------------------------------------

    def state(self, p: int) -> PartitionCases[C]:
        """The partition's cases, restored from the store the first time they are needed."""
        st = self.states.get(p)
        if st is None:
            st = PartitionCases(p, Partials(self.specs, self.out_of_orderness_s))
            # Every key this partition ever published (within retention), even if no case counts
            # in it any more: a case that moved away just before a stop must leave a zero behind.
            for key, _ in self.store.items(p, AGGKEY):
                st.partials.aggs[key] = Agg()
            for _, raw in self.store.items(p, self.kind):
                case = self.load_case(orjson.loads(raw))
                st.cases[case.key] = case
                st.partials.observe(case.last_event_s)
                st.partials.restore(case.applied)
                st.open_by[case.group] += case.open
            self.restore_extra(p)
            # What was published before the stop may lag the cases (partials go out on a timer):
            # publish every aggregate of the partition again; stage two replaces, so it is harmless.
            st.partials.created.clear()
            st.partials.changed = set(st.partials.aggs)
            self.states[p] = st
        return st

    def on_event(self, p: int, event: Any) -> None:
        """Apply one new input event of partition ``p`` (its case lives here)."""
        raise NotImplementedError

    def apply_event(self, p: int, event: Any) -> tuple[C, dict[str, float]]:
        """Apply an event to the case its ``subject`` names; returns the case and its milestone
        times from before the event (for metrics that count a milestone once)."""
        st = self.state(p)
        at_s = event.time.timestamp()
        case = st.cases.get(event.subject) or self.new_case(event.subject)
        before = dict(case.times)
        self.update(st, case, lambda: case.apply(event.type, event.data, at_s, event.id))
        st.partials.observe(at_s)
        return case, before

    def on_link(self, p: int, msg: dict[str, Any]) -> None:
        """Apply a join message from the ``links`` topic (services with joins override this)."""
        msg_type = msg.get("t")
        raise ValueError(f"{type(self).__name__} takes no join message {msg_type!r}")

    def restore_extra(self, p: int) -> None:
        """Load a service's other per-partition state (called while restoring ``p``)."""

    def forget(self, partitions: set[int]) -> None:
        for p in partitions:
            self.states.pop(p, None)
        self.update_gauge()

    # -- changes ------------------------------------------------------------------------------

    def update(self, st: PartitionCases[C], case: C, change: Callable[[], bool]) -> None:
        """Apply ``change`` to ``case``; replace its contributions in the aggregates."""
        snapshot = case.to_json() if self._near_retention(st, case) else None
        was_open = case.open
        if not change():
            if case.key not in st.cases:
                st.cases[case.key] = case
                st.dirty.add(case.key)
            return
        new = self.contributions(case)
        before = {c for c, _ in case.applied}
        if snapshot is not None and any(
            st.partials.retired(c.at_s, self.window_retention_s) for c in set(new) ^ before
        ):
            st.cases[case.key] = self.load_case(orjson.loads(orjson.dumps(snapshot)))
            msg = f"{case.key}: the change falls in a window older than the retention"
            raise TooLate(msg)
        old_ids = {(c.indicator, c.dims) for c in before}
        case.applied = st.partials.apply(case.applied, new)
        if any(late for c, late in case.applied if c not in before):
            self.late_events.inc()  # this event reached a window after it was final
        case.changed_wall_s = self.clock()
        st.cases[case.key] = case
        st.dirty.add(case.key)
        st.open_by[case.group] += case.open - was_open
        if case.finished:  # (again, after a correction): its history row is upserted
            value = orjson.dumps(self.completed_record(case))
            self.outbox.append(Outgoing("completed", case.key.encode(), value))
        for c in new:
            if (c.indicator, c.dims) not in old_ids:
                self.on_new_contribution(c, case)

    def _near_retention(self, st: PartitionCases[C], case: C) -> bool:
        oldest = min(case.times.values(), default=float("inf"))
        return oldest - 2 * 86400 < st.partials.watermark_s - self.window_retention_s

    # -- persistence and output ---------------------------------------------------------------

    def stage(self, partitions: set[int]) -> None:
        """Stage changed cases in the state store."""
        for p in partitions:
            st = self.states.get(p)
            if st is None or not self.store.owns(p):
                continue
            for key in st.dirty:
                if (case := st.cases.get(key)) is not None:
                    self.store.put(p, self.kind, key, orjson.dumps(case.to_json()))
            st.dirty.clear()
            for key in st.partials.created:
                self.store.put(p, AGGKEY, key, b"1")
            st.partials.created.clear()
            self.stage_extra(p)
        self.update_gauge()

    def stage_extra(self, p: int) -> None:
        """Stage a service's other per-partition state."""

    def emit_partials(self) -> None:
        """Queue, for every stage-two partition, one bundle per owned partition: its watermark and
        the aggregates changed since the last call (whole aggregates: stage two replaces them)."""
        for p, st in self.states.items():
            if st.partials.max_event_s == float("-inf") or not self.store.owns(p):
                continue
            bundles: dict[int, dict[str, Any]] = {q: {} for q in range(self.partitions)}
            for key, agg in st.partials.take_changed().items():
                bundles[partition_for(key, self.partitions)][key] = agg.to_json()
            wm = st.partials.watermark_s
            for q, aggs in bundles.items():
                value = orjson.dumps({"src": p, "wm": wm, "aggs": aggs})
                self.outbox.append(Outgoing("partials", str(p).encode(), value, partition=q))

    def expire(self) -> None:
        """Drop finished cases past the retention and unfinished ones past the expiry (counted);
        forget aggregates of windows past the retention."""
        for p, st in self.states.items():
            wm = st.partials.watermark_s
            for key, case in list(st.cases.items()):
                newest = max(case.times.values(), default=case.last_event_s)
                if case.finished and newest < wm - self.window_retention_s - 2 * 86400:
                    self._drop(st, p, key)
                elif not case.finished and case.last_event_s < wm - self.case_expiry_s:
                    self.on_expired(case)
                    st.open_by[case.group] -= case.open
                    self._drop(st, p, key)
            self.expire_extra(p, wm)
            horizon = wm - self.window_retention_s
            for key in [k for k in st.partials.aggs if _window_end(k) + 86400 < horizon]:
                del st.partials.aggs[key]
                self.store.delete(p, AGGKEY, key)
        self.update_gauge()

    def expire_extra(self, p: int, watermark_s: float) -> None:
        """Expire a service's other per-partition state."""

    def _drop(self, st: PartitionCases[C], p: int, key: str) -> None:
        del st.cases[key]
        self.store.delete(p, self.kind, key)

    def update_gauge(self) -> None:
        totals: Counter[str] = Counter()
        for st in self.states.values():
            totals.update(st.open_by)
        self.set_gauge(totals)


def _iso(at_s: float) -> str:
    return datetime.fromtimestamp(at_s, SHANGHAI).isoformat(timespec="milliseconds")


def _window_end(key: str) -> float:
    _, window, start, _ = key.split("|", 3)
    return datetime.fromisoformat(start).timestamp() + WINDOWS[window]
