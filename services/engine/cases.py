"""Stage one: the cases of the partitions this worker owns, and everything the engine does around a
domain's pure folds.

For each change it computes the case's new state and new contributions *before* committing
anything: a change that would touch a window older than the retention raises :class:`TooLate`
and leaves the case as it was. Otherwise it replaces the case's contributions in the partition's
aggregates (a correction moves a case, never counts it twice), counts late contributions, tells
the domain's observer, and marks the case for the state store. Cases are restored from the store
the first time their partition is used; aggregates are never stored, only rebuilt from the cases,
so the two cannot disagree after a crash.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

import orjson

from services.engine.aggregations import aggregation_type
from services.engine.domain import NO_MESSAGES, Case, Domain, EngineSettings, Message, Observer
from services.engine.partials import Applied, Partials, late_map, with_late
from services.engine.registers import from_json, to_json
from services.engine.state import StateStore
from services.engine.windows import WINDOWS, Contribution, IndicatorSpec, WindowKey

__all__ = ["AGGKEY", "RETIRED", "CaseEngine", "Change", "Entry", "PartitionState", "TooLate"]

AGGKEY = "aggkey"  # state kind: the window keys a partition has aggregates for
RETIRED = "retired"  # state kind: the domain's own cases the engine dropped, with the watermark then


class TooLate(ValueError):
    """A change the engine can no longer make: to a window older than the retention, or to a case it
    has dropped. The event (or the one that sent the message) is dead-lettered."""


@dataclass(slots=True)
class Entry:
    """A case as the engine keeps it: the domain's value plus the engine's bookkeeping."""

    case: Any
    applied: Applied = ()
    last_s: float = float("-inf")  # the latest event time that reached the case
    revision: int = 0  # grows with every change (the case record's revision)


@dataclass(frozen=True, slots=True)
class Change:
    """A committed change of a case of the domain's own kind (for its case record)."""

    partition: int
    key: str
    entry: Entry
    status: str | None = None  # the case's own unless the engine decided (expired)


@dataclass(slots=True)
class PartitionState:
    partition: int
    partials: Partials
    tables: dict[str, dict[str, Entry]]
    dirty: set[tuple[str, str]] = field(default_factory=set)
    open_by: dict[str, Counter[str]] = field(default_factory=dict)
    retired: dict[str, float] = field(default_factory=dict)  # own cases dropped: key -> watermark then


@dataclass
class CaseEngine:
    """Stage one of one domain on this worker."""

    domain: Domain
    _: KW_ONLY
    settings: EngineSettings
    context: Any
    store: StateStore
    observer: Observer
    late_events: Callable[[int], None] = lambda n: None

    def __post_init__(self) -> None:
        self.kinds = self.domain.kinds
        self.primary = self.domain.primary
        self.specs: dict[str, IndicatorSpec] = self.domain.specs(self.settings)
        self.states: dict[int, PartitionState] = {}
        self.changes: list[Change] = []  # of the domain's own cases, since the last stage()
        self.open_totals: dict[str, Counter[str]] = {kind: Counter() for kind in self.kinds}
        self._open_moved = False  # the open-cases gauges are told once per batch (stage), not per change

    # -- state per partition ------------------------------------------------------------------

    def state(self, p: int) -> PartitionState:
        """The partition's cases, restored from the store the first time they are needed."""
        st = self.states.get(p)
        if st is None:
            st = self._restore(p)
            self.states[p] = st
            for kind, counts in st.open_by.items():
                self.open_totals[kind].update(counts)
            self._report_open()
        return st

    def _restore(self, p: int) -> PartitionState:
        partials = Partials(self.specs, self.settings.out_of_orderness_s)
        st = PartitionState(p, partials, {kind: {} for kind in self.kinds})
        # Every key this partition ever published (within retention), even if no case counts in it
        # any more: a case that moved away just before a stop must leave a zero behind.
        for text, _ in self.store.items(p, AGGKEY):
            wkey = WindowKey.parse(text)
            partials.aggs[wkey] = aggregation_type(self.specs[wkey.indicator].kind)()
        st.retired = {key: float(raw) for key, raw in self.store.items(p, RETIRED)}
        for kind, cls in self.kinds.items():
            table = st.tables[kind]
            counts = st.open_by.setdefault(kind, Counter())
            for key, raw in self.store.items(p, kind):
                doc = orjson.loads(raw)
                case = from_json(cls, doc["c"])
                entry = Entry(
                    case, with_late(case.measures(self.context), doc.get("l", {})), doc["t"], doc["r"]
                )
                table[key] = entry
                partials.restore(entry.applied)
                partials.observe(entry.last_s)
                counts[case.group] += case.open
        # What was published before the stop may lag the cases (partials go out on a timer):
        # publish every aggregate of the partition again; stage two replaces, so it is harmless.
        partials.created.clear()
        partials.changed = set(partials.aggs)
        return st

    def forget(self, partitions: set[int]) -> None:
        """Drop revoked partitions (their next owner restores them from the store)."""
        for p in partitions:
            st = self.states.pop(p, None)
            if st is not None:
                for kind, counts in st.open_by.items():
                    self.open_totals[kind].subtract(counts)
        self.changes = [c for c in self.changes if c.partition not in partitions]
        self._report_open()

    # -- changes ------------------------------------------------------------------------------

    def apply_event(self, p: int, kind: str, key: str, event: Any) -> Sequence[Message]:
        """Fold one input event into its case; returns the messages the change sends.
        Raises :class:`TooLate` (changing nothing) if it would touch a retired window."""
        st, entry, before = self._current(p, kind, key, event.time_s)
        return self._change(st, kind, key, entry, before, before.apply(event), event.time_s)

    def apply_message(self, p: int, message: Message, at_s: float) -> Sequence[Message]:
        """Fold a message from another case (sent because of an event at ``at_s``)."""
        kind, key = message.kind, message.key
        st, entry, before = self._current(p, kind, key, at_s)
        return self._change(st, kind, key, entry, before, before.receive(message.body), at_s)

    def _current(self, p: int, kind: str, key: str, at_s: float) -> tuple[PartitionState, Entry | None, Case]:
        """The partition (its watermark moved on by a change at ``at_s``) and the case as it is: its
        entry, or None and an empty case. A case the engine dropped takes nothing more (TooLate):
        folded into a new, empty case, the change would publish a record (revision 1, without the
        case's history) that replaces the case's own on the compacted case topic."""
        st = self.state(p)
        st.partials.observe(at_s)
        entry = st.tables[kind].get(key)
        if entry is not None:
            return st, entry, entry.case
        if kind == self.primary and key in st.retired:
            msg = (
                f"{key}: the case was closed and dropped (completed and past window_retention_s, or "
                "no event for case_expiry_s); a later change cannot be applied to it"
            )
            raise TooLate(msg)
        return st, None, self.kinds[kind].empty(key)

    def _change(
        self,
        st: PartitionState,
        kind: str,
        key: str,
        entry: Entry | None,
        before: Case,
        after: Case,
        at_s: float,
    ) -> Sequence[Message]:
        if after is before:  # nothing changed; only the time of the case's latest event may have
            if entry is not None and at_s > entry.last_s:
                entry.last_s = at_s
            return NO_MESSAGES
        applied: Applied = () if entry is None else entry.applied
        new = tuple(after.measures(self.context))
        added: Sequence[Contribution] = ()
        if new or applied:
            old = tuple(c for c, _ in applied)
            if new != old:
                # 1. decide: refused before anything is touched
                self._refuse_if_retired(st, key, old, new)
                # 2. move the contributions
                applied, late = st.partials.apply(applied, new)
                if late:
                    self.late_events(late)  # this change reached windows after they were final
                if old:
                    known = {(c.indicator, c.dims) for c in old}
                    added = [c for c in new if (c.indicator, c.dims) not in known]
                else:
                    added = new
        # 3. commit the case
        counted = entry is not None and before.open  # a case new to the table was never counted
        if entry is None:
            entry = st.tables[kind][key] = Entry(before)
        entry.case, entry.applied, entry.revision = after, applied, entry.revision + 1
        if at_s > entry.last_s:
            entry.last_s = at_s
        st.dirty.add((kind, key))
        self._count_open(st, kind, before, counted, after)
        if kind == self.primary:
            self.changes.append(Change(st.partition, key, entry))
        self.observer.changed(kind, before, after, added)
        return after.messages(before)

    def _refuse_if_retired(
        self, st: PartitionState, key: str, old: tuple[Contribution, ...], new: tuple[Contribution, ...]
    ) -> None:
        retention = self.settings.window_retention_s
        # Nothing within a day of the retention horizon: nothing can be retired (the common case).
        horizon = st.partials.watermark_s - retention - WINDOWS["P1D"]
        if all(c.at_s >= horizon for c in old) and all(c.at_s >= horizon for c in new):
            return
        moved = set(new).symmetric_difference(old)
        if any(st.partials.retired(c.at_s, retention) for c in moved):
            msg = f"{key}: the change falls in a window older than the retention (window_retention_s)"
            raise TooLate(msg)

    def _count_open(self, st: PartitionState, kind: str, before: Case, was: bool, after: Case) -> None:
        now = after.open
        if was == now and (not now or before.group == after.group):
            return
        counts, totals = st.open_by.setdefault(kind, Counter()), self.open_totals[kind]
        if was:
            counts[before.group] -= 1
            totals[before.group] -= 1
        if now:
            counts[after.group] += 1
            totals[after.group] += 1
        self._open_moved = True

    def _report_open(self) -> None:
        self._open_moved = False
        for kind, totals in self.open_totals.items():
            self.observer.open_cases(kind, totals)

    # -- persistence and output ---------------------------------------------------------------

    def stage(self, partitions: set[int]) -> None:
        """Write changed cases, and window keys new to a partition, to the store."""
        if self._open_moved:
            self._report_open()
        for p in partitions:
            st = self.states.get(p)
            if st is None or not self.store.owns(p):
                continue
            for kind, key in st.dirty:
                entry = st.tables[kind].get(key)
                if entry is not None:
                    self.store.put(p, kind, key, _encode(entry))
            st.dirty.clear()
            for wkey in st.partials.created:
                self.store.put(p, AGGKEY, wkey.text, b"1")
            st.partials.created.clear()

    def take_changes(self) -> list[Change]:
        """The domain's own cases changed since the last call."""
        changes, self.changes = self.changes, []
        return changes

    def partials(self) -> Iterator[tuple[int, float, dict[WindowKey, Any]]]:
        """(partition, watermark, changed aggregates) of every owned partition that saw events."""
        for p, st in self.states.items():
            if st.partials.max_event_s == float("-inf") or not self.store.owns(p):
                continue
            yield p, st.partials.watermark_s, st.partials.take_changed()

    def expire(self) -> None:
        """Drop completed cases whose windows left the retention and unfinished ones past the case
        expiry (told to the observer), and aggregates of windows past the retention."""
        retention, expiry = self.settings.window_retention_s, self.settings.case_expiry_s
        for p, st in self.states.items():
            wm = st.partials.watermark_s
            for kind, table in st.tables.items():
                counts = st.open_by.setdefault(kind, Counter())
                for key, entry in list(table.items()):
                    case = entry.case
                    if case.completed and entry.last_s < wm - retention - 2 * WINDOWS["P1D"]:
                        self._drop(st, kind, key, wm)
                    elif not case.completed and entry.last_s < wm - expiry:
                        self.observer.expired(kind, case)
                        counts[case.group] -= case.open
                        self.open_totals[kind][case.group] -= case.open
                        self._drop(st, kind, key, wm)
                        if kind == self.primary:
                            entry.revision += 1
                            self.changes.append(Change(p, key, entry, "expired"))
            # a dropped case is remembered for one case expiry, then its key is like any other
            for key in [k for k, dropped_s in st.retired.items() if dropped_s < wm - expiry]:
                del st.retired[key]
                self.store.delete(p, RETIRED, key)
            horizon = wm - retention
            for wkey in [k for k in st.partials.aggs if k.end_s + WINDOWS["P1D"] < horizon]:
                del st.partials.aggs[wkey]
                self.store.delete(p, AGGKEY, wkey.text)
        for kind in self.kinds:
            newest = max((st.partials.max_event_s for st in self.states.values()), default=float("-inf"))
            cases = (e.case for st in self.states.values() for e in st.tables[kind].values())
            self.observer.housekeeping(kind, cases, newest)
        self._report_open()

    def _drop(self, st: PartitionState, kind: str, key: str, watermark_s: float) -> None:
        del st.tables[kind][key]
        st.dirty.discard((kind, key))
        self.store.delete(st.partition, kind, key)
        if kind == self.primary:
            st.retired[key] = watermark_s
            self.store.put(st.partition, RETIRED, key, repr(watermark_s).encode())

    def cases(self, kind: str) -> Iterator[tuple[int, str, Entry]]:
        """Every case of ``kind`` on this worker: (partition, key, entry)."""
        for p, st in self.states.items():
            for key, entry in st.tables[kind].items():
                yield p, key, entry


def _encode(entry: Entry) -> bytes:
    return orjson.dumps(
        {"c": to_json(entry.case), "l": late_map(entry.applied), "t": entry.last_s, "r": entry.revision}
    )
