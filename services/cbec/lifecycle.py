"""Cross-border e-commerce order lifecycle: pure state and measures (contract 2.4 and 4).

One case per order (``<ebp_code>:<order_no>``). The state keeps the earliest time of every
document and of every customs receipt code, so any order or duplication of events gives the same
measures. The three-document match is judged at the list's first customs decision (100 or 120):
order, waybill and (imports) payment must all be earlier, and the payment must equal the order's
goods value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from services.common.cases import keep_earliest, time_from_json
from services.common.events import DataModel
from services.common.events.cbec import ListDeclared, ListStatus, OrderDeclared, PaymentDeclared
from services.common.windows import Contribution, IndicatorSpec, late_map, with_late

__all__ = ["INDICATORS", "Order", "contributions", "exception_of", "match_result"]

UNKNOWN = "unknown"
INDICATORS: dict[str, IndicatorSpec] = {
    s.name: s
    for s in (
        IndicatorSpec("cbec.release_time", "seconds", "duration", ("supervision_mode", "ie_flag")),
        IndicatorSpec("cbec.doc_match_rate", "ratio", "ratio", ("supervision_mode", "ie_flag")),
    )
}
FINAL_STATUSES = frozenset({100, 700, 800, 899})


def exception_of(status: int) -> str | None:
    """The list exception a receipt code means, if any."""
    if status == 100:
        return "rejected"
    if status == 500:
        return "inspection"
    if 501 <= status <= 599:
        return "detained"
    if status == 700:
        return "sent_back"
    return None


@dataclass(slots=True)
class Order:
    key_: str
    times: dict[str, float] = field(default_factory=dict)  # order, payment, waybill, list, return, s<code>
    ie_flag: str | None = None
    supervision_mode: str | None = None
    goods_value: str | None = None
    payment_amount: str | None = None
    order_by: tuple[float, str] | None = None
    payment_by: tuple[float, str] | None = None
    list_by: tuple[float, str] | None = None
    applied: list[tuple[Contribution, tuple[str, ...]]] = field(default_factory=list)
    last_event_s: float = float("-inf")
    changed_wall_s: float = 0.0

    @property
    def key(self) -> str:
        return self.key_

    @property
    def group(self) -> str:
        return self.supervision_mode or UNKNOWN

    def status_time(self, code: int) -> float | None:
        return self.times.get(f"s{code}")

    @property
    def decision(self) -> float | None:
        """The first customs decision on the list: rejected (100) or accepted (120)."""
        found = [t for t in (self.status_time(100), self.status_time(120)) if t is not None]
        return min(found) if found else None

    @property
    def open(self) -> bool:
        return "list" in self.times and not self.finished

    @property
    def finished(self) -> bool:
        return any(f"s{code}" in self.times for code in FINAL_STATUSES)

    def apply(self, event_type: str, data: DataModel, at_s: float, event_id: str) -> bool:
        self.last_event_s = max(self.last_event_s, at_s)
        name = event_type.split(".")[1]  # order, payment, waybill, list, return
        if isinstance(data, ListStatus):
            name = f"s{data.status}"
        changed = keep_earliest(self.times, name, at_s)
        key = (at_s, event_id)
        if isinstance(data, OrderDeclared) and (self.order_by is None or key < self.order_by):
            self.goods_value, self.order_by, changed = data.goods_value.amount, key, True
            self.ie_flag = self.ie_flag or data.ie_flag
        elif isinstance(data, PaymentDeclared) and (self.payment_by is None or key < self.payment_by):
            self.payment_amount, self.payment_by, changed = data.amount.amount, key, True
        elif isinstance(data, ListDeclared) and (self.list_by is None or key < self.list_by):
            self.supervision_mode, self.ie_flag, self.list_by = data.supervision_mode, data.ie_flag, key
            changed = True
        return changed

    def to_json(self) -> dict[str, Any]:
        return {
            "k": self.key_, "t": dict(self.times), "i": self.ie_flag, "m": self.supervision_mode,
            "g": self.goods_value, "p": self.payment_amount, "ob": self.order_by, "pb": self.payment_by,
            "lb": self.list_by, "L": late_map(self.applied),
            "le": self.last_event_s, "w": self.changed_wall_s,
        }  # fmt: skip

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Order:
        def tie(v: Any) -> tuple[float, str] | None:
            return (float(v[0]), str(v[1])) if v else None

        o = cls(
            key_=doc["k"], times={k: float(v) for k, v in doc["t"].items()}, ie_flag=doc["i"],
            supervision_mode=doc["m"], goods_value=doc["g"], payment_amount=doc["p"], order_by=tie(doc["ob"]),
            payment_by=tie(doc["pb"]), list_by=tie(doc["lb"]),
            last_event_s=time_from_json(doc["le"]),
            changed_wall_s=float(doc["w"]),
        )  # fmt: skip
        o.applied = with_late(contributions(o), doc.get("L", {}))
        return o


def match_result(o: Order) -> str | None:
    """match, missing_order, missing_payment, missing_waybill or amount_differs; None before a decision."""
    decision = o.decision
    if decision is None:
        return None
    t = o.times
    if t.get("order", float("inf")) >= decision:
        return "missing_order"
    if t.get("waybill", float("inf")) >= decision:
        return "missing_waybill"
    if (o.ie_flag or "I") == "I":
        if t.get("payment", float("inf")) >= decision:
            return "missing_payment"
        if (
            o.payment_amount is None
            or o.goods_value is None
            or Decimal(o.payment_amount) != Decimal(o.goods_value)
        ):
            return "amount_differs"
    return "match"


def contributions(o: Order) -> list[Contribution]:
    dims = (("ie_flag", o.ie_flag or UNKNOWN), ("supervision_mode", o.supervision_mode or UNKNOWN))
    out: list[Contribution] = []
    accepted, released = o.status_time(120), o.status_time(800)
    if accepted is not None and released is not None and released >= accepted:
        out.append(Contribution("cbec.release_time", released, dims, released - accepted))
    result = match_result(o)
    if result is not None and o.decision is not None:
        out.append(Contribution("cbec.doc_match_rate", o.decision, dims, 1.0 if result == "match" else 0.0))
    return out
