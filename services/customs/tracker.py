"""Stage one of the customs pipeline: declarations and arrivals per input partition.

Pure apart from the state store it stages writes in: events in, contributions diffed into the
partition's :class:`Partials`, and outgoing messages collected in ``outbox`` for the agent to send
(bill-of-lading joins, partial aggregates, watermarks). Persisted per partition: declarations and
bills (one record per changed case per batch). Aggregates are rebuilt from the declarations'
applied contributions on restore, so they can never disagree with the cases after a crash.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from services.common.events import Event
from services.common.events.customs import DeclarationLodged, EntryRef, TransportArrived
from services.common.state import StateStore
from services.common.topics import partition_for
from services.common.windows import WINDOWS, Partials
from services.customs import metrics
from services.customs.lifecycle import INDICATORS, Bill, Declaration, contributions

__all__ = ["Outgoing", "PartitionState", "TooLate", "Tracker"]

DECL, BILL = "decl", "bill"


class TooLate(ValueError):
    """An event that would change a window older than the retention; it goes to the DLQ."""


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message for an internal topic: ``links`` (joins) or ``partials`` (to stage two)."""

    topic: str
    key: bytes
    value: bytes
    partition: int | None = None


@dataclass(slots=True)
class PartitionState:
    partition: int
    partials: Partials
    decls: dict[str, Declaration] = field(default_factory=dict)
    bills: dict[str, Bill] = field(default_factory=dict)
    dirty_decls: set[str] = field(default_factory=set)
    dirty_bills: set[str] = field(default_factory=set)
    open_by_ie: Counter[str] = field(default_factory=Counter)


@dataclass(slots=True)
class Tracker:
    """Declarations and bills of the partitions this worker owns."""

    store: StateStore
    partitions: int
    out_of_orderness_s: float = 600.0
    window_retention_s: float = 35 * 86400.0
    case_expiry_s: float = 90 * 86400.0
    resend_recent_s: float = 600.0
    clock: Callable[[], float] = time.time
    outbox: list[Outgoing] = field(default_factory=list)
    states: dict[int, PartitionState] = field(default_factory=dict)

    # -- state per partition ------------------------------------------------------------------

    def state(self, p: int) -> PartitionState:
        """The partition's state, restored from the store the first time it is needed."""
        st = self.states.get(p)
        if st is None:
            st = PartitionState(p, Partials(INDICATORS, self.out_of_orderness_s))
            recent: list[Declaration] = []
            for _, raw in self.store.items(p, DECL):
                d = Declaration.from_json(orjson.loads(raw))
                st.decls[d.entry_id] = d
                st.partials.observe(d.last_event_s)
                st.partials.restore(d.applied)
                st.open_by_ie[d.ie_flag] += d.open
                if d.changed_wall_s > self.clock() - self.resend_recent_s:
                    recent.append(d)
            for _, raw in self.store.items(p, BILL):
                b = Bill.from_json(orjson.loads(raw))
                st.bills[b.bill_no] = b
            # Aggregates were published before the restart, except perhaps the last changes
            # before it stopped: publish the windows of recently changed cases again (idempotent).
            st.partials.take_changed()
            for d in recent:
                for c, _ in d.applied:
                    st.partials.touch(c)
            self.states[p] = st
        return st

    def forget(self, partitions: set[int]) -> None:
        for p in partitions:
            self.states.pop(p, None)
        self.update_gauge()

    # -- events -------------------------------------------------------------------------------

    def on_event(self, p: int, event: Event) -> None:
        """Apply one new input event of partition ``p``."""
        at_s = event.time.timestamp()
        data = event.data
        st = self.state(p)
        if isinstance(data, TransportArrived):
            self._arrival(st, data, at_s, event.id)
        elif isinstance(data, EntryRef):
            self._declaration_event(st, data.entry_id, event.type, data, at_s, event.id)
        st.partials.observe(at_s)

    def on_link(self, p: int, msg: dict[str, Any]) -> None:
        """Apply a join message from the ``links`` topic."""
        st = self.state(p)
        if msg["t"] == "link":  # a declaration names this bill: remember it, answer if arrived
            bill = st.bills.setdefault(msg["bill"], Bill(msg["bill"]))
            if msg["entry"] not in bill.entries:
                bill.entries.add(msg["entry"])
                st.dirty_bills.add(bill.bill_no)
            if bill.arrival_s is not None:
                self._send_arrival(msg["entry"], bill)
        elif msg["t"] == "arrival":  # the bill named by this declaration has arrived
            d = st.decls.get(msg["entry"]) or Declaration(msg["entry"])
            self._update(st, d, lambda: d.mark("arrival", float(msg["at"])))

    def _arrival(self, st: PartitionState, data: TransportArrived, at_s: float, event_id: str) -> None:
        bill = st.bills.setdefault(data.bill_no, Bill(data.bill_no))
        if bill.arrive(data, at_s, event_id):
            st.dirty_bills.add(bill.bill_no)
            for entry in sorted(bill.entries):
                self._send_arrival(entry, bill)

    def _send_arrival(self, entry: str, bill: Bill) -> None:
        msg = {"t": "arrival", "entry": entry, "at": bill.arrival_s}
        self.outbox.append(Outgoing("links", entry.encode(), orjson.dumps(msg)))

    def _declaration_event(
        self, st: PartitionState, entry: str, type_: str, data: Any, at_s: float, event_id: str
    ) -> None:
        d = st.decls.get(entry) or Declaration(entry)
        had_bill = d.bill_no
        self._update(st, d, lambda: d.apply(type_, data, at_s, event_id))
        if isinstance(data, DeclarationLodged) and d.bill_no and d.bill_no != had_bill:
            msg = {"t": "link", "bill": d.bill_no, "entry": entry}
            self.outbox.append(Outgoing("links", d.bill_no.encode(), orjson.dumps(msg)))

    def _update(self, st: PartitionState, d: Declaration, change: Any) -> None:
        """Apply ``change`` to ``d``; diff its contributions into the aggregates; observe metrics."""
        snapshot = d.to_json() if self._near_retention(st, d) else None
        was_open, had_channel = d.open, d.channel
        if not change():
            if d.entry_id not in st.decls:
                st.decls[d.entry_id] = d
                st.dirty_decls.add(d.entry_id)
            return
        new = contributions(d)
        old_ids = {(c.indicator, c.dims) for c, _ in d.applied}
        if snapshot is not None and any(
            st.partials.retired(c.at_s, self.window_retention_s) for c in set(new) ^ {c for c, _ in d.applied}
        ):
            restored = Declaration.from_json(snapshot)
            st.decls[d.entry_id] = restored
            msg = f"{d.entry_id}: the change falls in a window older than the retention"
            raise TooLate(msg)
        d.applied = st.partials.apply(d.applied, new)
        d.changed_wall_s = self.clock()
        st.decls[d.entry_id] = d
        st.dirty_decls.add(d.entry_id)
        st.open_by_ie[d.ie_flag] += d.open - was_open
        for c in new:
            if (c.indicator, c.dims) not in old_ids:
                self._observe(c, d)
        if had_channel is None and d.channel is not None:
            metrics.count_risk(d.ie_flag, (d.lodged or {}).get("credit_class", "unknown"), d.channel)

    def _near_retention(self, st: PartitionState, d: Declaration) -> bool:
        oldest = min(d.times.values(), default=float("inf"))
        return oldest - 2 * 86400 < st.partials.watermark_s - self.window_retention_s

    @staticmethod
    def _observe(c: Any, d: Declaration) -> None:
        dims = dict(c.dims)
        if c.indicator == "customs.release_time":
            metrics.observe_release(dims["ie_flag"], dims["customs_code"], dims["transport_mode"], c.value)
        elif c.indicator == "customs.stage_time":
            metrics.observe_stage(dims["stage"], dims["ie_flag"], c.value)

    # -- persistence and output ---------------------------------------------------------------

    def stage(self, partitions: set[int]) -> None:
        """Stage changed cases and bills in the state store."""
        for p in partitions:
            st = self.states.get(p)
            if st is None or not self.store.owns(p):
                continue
            for entry in st.dirty_decls:
                if (d := st.decls.get(entry)) is not None:
                    self.store.put(p, DECL, entry, orjson.dumps(d.to_json()))
            for bill_no in st.dirty_bills:
                if (b := st.bills.get(bill_no)) is not None:
                    self.store.put(p, BILL, bill_no, orjson.dumps(b.to_json()))
            st.dirty_decls.clear()
            st.dirty_bills.clear()
        self.update_gauge()

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
        """Drop finished cases past the retention and unfinished ones past the expiry (counted)."""
        for p, st in self.states.items():
            wm = st.partials.watermark_s
            for entry, d in list(st.decls.items()):
                finished = "rejected" in d.times or {"released", "exited"} <= d.times.keys()
                newest = max(d.times.values(), default=d.last_event_s)
                if finished and newest < wm - self.window_retention_s - 2 * 86400:
                    self._drop(st, p, entry)
                elif not finished and d.last_event_s < wm - self.case_expiry_s:
                    metrics.CASES_EXPIRED.labels(ie_flag=d.ie_flag).inc()
                    st.open_by_ie[d.ie_flag] -= d.open
                    self._drop(st, p, entry)
            for bill_no, b in list(st.bills.items()):
                if b.arrival_s is not None and b.arrival_s < wm - self.case_expiry_s:
                    del st.bills[bill_no]
                    self.store.delete(p, BILL, bill_no)
            horizon = wm - self.window_retention_s
            for key in [k for k in st.partials.aggs if _window_end(k) + 86400 < horizon]:
                del st.partials.aggs[key]
        self.update_gauge()

    def _drop(self, st: PartitionState, p: int, entry: str) -> None:
        del st.decls[entry]
        self.store.delete(p, DECL, entry)

    def update_gauge(self) -> None:
        totals: Counter[str] = Counter()
        for st in self.states.values():
            totals.update(st.open_by_ie)
        for ie in ("I", "E"):
            metrics.OPEN_DECLARATIONS.labels(ie_flag=ie).set(totals[ie])


def _window_end(key: str) -> float:
    _, window, start, _ = key.split("|", 3)
    return datetime.fromisoformat(start).timestamp() + WINDOWS[window]
