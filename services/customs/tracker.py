"""Stage one of the customs pipeline: declarations (the shared case tracker) plus arrivals by
bill of lading, joined to their declarations through the ``links`` topic in either order.

A declaration names its bill in ``declaration.lodged``; the arrival is keyed by the bill, so the
two usually live on different partitions. The declaration's partition sends a ``link`` to the
bill's partition; the bill's partition answers with an ``arrival`` as soon as both are known.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson

from services.common.cases import CaseTracker, Outgoing, PartitionCases, TooLate
from services.common.events import Event
from services.common.events.customs import DeclarationLodged, EntryRef, TransportArrived
from services.common.windows import Contribution
from services.customs import metrics
from services.customs.lifecycle import INDICATORS, Bill, Declaration, contributions

__all__ = ["Outgoing", "TooLate", "Tracker"]

BILL = "bill"


class Tracker(CaseTracker[Declaration]):
    """Declarations and bills of the partitions this worker owns."""

    kind = "decl"

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("specs", INDICATORS)
        super().__init__(**kwargs)
        self.bills: dict[int, dict[str, Bill]] = {}
        self.dirty_bills: dict[int, set[str]] = {}

    # -- the case type ------------------------------------------------------------------------

    def load_case(self, doc: dict[str, Any]) -> Declaration:
        return Declaration.from_json(doc)

    def contributions(self, case: Declaration) -> list[Contribution]:
        return contributions(case)

    def on_new_contribution(self, c: Contribution, case: Declaration) -> None:
        dims = dict(c.dims)
        if c.indicator == "customs.release_time":
            metrics.observe_release(dims["ie_flag"], dims["customs_code"], dims["transport_mode"], c.value)
        elif c.indicator == "customs.stage_time":
            metrics.observe_stage(dims["stage"], dims["ie_flag"], c.value)

    def attributes(self, case: Declaration) -> dict[str, Any]:
        return {"ie_flag": case.ie_flag, "customs_code": case.entry_id[:4], **(case.lodged or {}),
                "channel": case.channel, "inspection_outcome": case.outcome}  # fmt: skip

    def on_expired(self, case: Declaration) -> None:
        metrics.CASES_EXPIRED.labels(ie_flag=case.ie_flag).inc()

    def set_gauge(self, open_by_group: Counter[str]) -> None:
        for ie in ("I", "E"):
            metrics.OPEN_DECLARATIONS.labels(ie_flag=ie).set(open_by_group[ie])

    # -- bills --------------------------------------------------------------------------------

    def restore_extra(self, p: int) -> None:
        bills = self.bills[p] = {}
        self.dirty_bills[p] = set()
        for _, raw in self.store.items(p, BILL):
            b = Bill.from_json(orjson.loads(raw))
            bills[b.bill_no] = b

    def stage_extra(self, p: int) -> None:
        bills = self.bills.get(p, {})
        for bill_no in self.dirty_bills.get(p, set()):
            if (b := bills.get(bill_no)) is not None:
                self.store.put(p, BILL, bill_no, orjson.dumps(b.to_json()))
        self.dirty_bills[p] = set()

    def expire_extra(self, p: int, watermark_s: float) -> None:
        bills = self.bills.get(p, {})
        for bill_no, b in list(bills.items()):
            if b.arrival_s is not None and b.arrival_s < watermark_s - self.case_expiry_s:
                del bills[bill_no]
                self.store.delete(p, BILL, bill_no)

    def forget(self, partitions: set[int]) -> None:
        for p in partitions:
            self.bills.pop(p, None)
            self.dirty_bills.pop(p, None)
        super().forget(partitions)

    # -- events -------------------------------------------------------------------------------

    def on_event(self, p: int, event: Event) -> None:
        """Apply one new input event of partition ``p``."""
        at_s = event.time.timestamp()
        data = event.data
        st = self.state(p)
        if isinstance(data, TransportArrived):
            self._arrival(p, data, at_s, event.id)
        elif isinstance(data, EntryRef):
            self._declaration_event(st, data.entry_id, event.type, data, at_s, event.id)
        st.partials.observe(at_s)

    def on_link(self, p: int, msg: dict[str, Any]) -> None:
        """Apply a join message from the ``links`` topic."""
        st = self.state(p)
        if msg["t"] == "link":  # a declaration names this bill: remember it, answer if arrived
            bill = self.bills[p].setdefault(msg["bill"], Bill(msg["bill"]))
            if msg["entry"] not in bill.entries:
                bill.entries.add(msg["entry"])
                self.dirty_bills[p].add(bill.bill_no)
            if bill.arrival_s is not None:
                self._send_arrival(msg["entry"], bill)
        elif msg["t"] == "arrival":  # the bill named by this declaration has arrived
            d = st.cases.get(msg["entry"]) or Declaration(msg["entry"])
            self.update(st, d, lambda: d.mark("arrival", float(msg["at"])))

    def _arrival(self, p: int, data: TransportArrived, at_s: float, event_id: str) -> None:
        bill = self.bills[p].setdefault(data.bill_no, Bill(data.bill_no))
        if bill.arrive(data, at_s, event_id):
            self.dirty_bills[p].add(bill.bill_no)
            for entry in sorted(bill.entries):
                self._send_arrival(entry, bill)

    def _send_arrival(self, entry: str, bill: Bill) -> None:
        msg = {"t": "arrival", "entry": entry, "at": bill.arrival_s}
        self.outbox.append(Outgoing("links", entry.encode(), orjson.dumps(msg)))

    def _declaration_event(
        self, st: PartitionCases[Declaration], entry: str, type_: str, data: Any, at_s: float, event_id: str
    ) -> None:
        d = st.cases.get(entry) or Declaration(entry)
        had_bill, had_channel = d.bill_no, d.channel
        self.update(st, d, lambda: d.apply(type_, data, at_s, event_id))
        if had_channel is None and d.channel is not None:
            metrics.count_risk(d.ie_flag, (d.lodged or {}).get("credit_class", "unknown"), d.channel)
        if isinstance(data, DeclarationLodged) and d.bill_no and d.bill_no != had_bill:
            msg = {"t": "link", "bill": d.bill_no, "entry": entry}
            self.outbox.append(Outgoing("links", d.bill_no.encode(), orjson.dumps(msg)))
