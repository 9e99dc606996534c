"""Cross-border e-commerce orders: pure state and measures (docs/contract.md sections 2.4 and 4).

One case per order (``<ebp_code>:<order_no>``). It keeps the earliest time of every document and of
every customs receipt code, so any order or repetition of events gives the same measures. The
three-document match is judged at the list's first customs decision (100 or 120): order, waybill
and (imports) payment must all be earlier, and the payment must equal the order's goods value.
Personal data of the order never reaches the case (docs/contract.md section 6).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from services.cbec.events import ListDeclared, ListStatus, OrderDeclared, PaymentDeclared
from services.contract.envelope import Event
from services.engine.domain import Case
from services.engine.registers import EarliestWins, Milestones
from services.engine.windows import Contribution, IndicatorSpec, Observed

__all__ = ["INDICATORS", "MODES", "Listing", "Order", "OrderDoc", "exception_of", "match_result"]

UNKNOWN = "unknown"
MODES = frozenset({"9610", "1210", "9710", "9810", UNKNOWN})
IE_FLAGS = frozenset({"I", "E", UNKNOWN})
INDICATORS = (
    IndicatorSpec("cbec.release_time", "seconds", "duration", ("supervision_mode", "ie_flag"),
                  labels={"supervision_mode": MODES, "ie_flag": IE_FLAGS}, milestone="s800",
                  histogram=Observed("tradepulse_cbec_release_seconds",
                                     "List accepted (120) to released (800), when first known.",
                                     (1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 14400, 86400))),
    IndicatorSpec("cbec.doc_match_rate", "ratio", "ratio", ("supervision_mode", "ie_flag"),
                  labels={"supervision_mode": MODES, "ie_flag": IE_FLAGS}),
)  # fmt: skip
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


@dataclass(frozen=True, slots=True)
class OrderDoc:
    ie_flag: str
    goods_value: str
    ebc_code: str | None = None  # the contributor disclosure control protects (contract 8)


@dataclass(frozen=True, slots=True)
class Listing:
    supervision_mode: str
    ie_flag: str


@dataclass(frozen=True, slots=True)
class Order(Case):
    """What is known of one order. Milestones: ``order``, ``payment``, ``waybill``, ``list``,
    ``return`` and ``s<code>`` for each receipt code."""

    order_id: str
    milestones: Milestones = Milestones()
    order: EarliestWins[OrderDoc] = EarliestWins()
    payment: EarliestWins[str] = EarliestWins()  # the declared amount
    listing: EarliestWins[Listing] = EarliestWins()

    def apply(self, event: Event) -> Order:
        data = event.data
        milestone = f"s{data.status}" if isinstance(data, ListStatus) else event.type.split(".")[1]
        if isinstance(data, OrderDeclared):
            return self.noted(
                milestone, event, order=OrderDoc(data.ie_flag, data.goods_value.amount, data.ebc_code)
            )
        if isinstance(data, PaymentDeclared):
            return self.noted(milestone, event, payment=data.amount.amount)
        if isinstance(data, ListDeclared):
            return self.noted(milestone, event, listing=Listing(data.supervision_mode, data.ie_flag))
        return self.noted(milestone, event)

    @property
    def ie_flag(self) -> str | None:
        """The list's, else the order's."""
        if self.listing.value is not None:
            return self.listing.value.ie_flag
        return self.order.value.ie_flag if self.order.value is not None else None

    @property
    def supervision_mode(self) -> str | None:
        return self.listing.value.supervision_mode if self.listing.value is not None else None

    @property
    def decision(self) -> float | None:
        """The first customs decision on the list: rejected (100) or accepted (120)."""
        found = [t for t in (self.milestones.get("s100"), self.milestones.get("s120")) if t is not None]
        return min(found) if found else None

    @property
    def group(self) -> str:
        return self.supervision_mode or UNKNOWN

    @property
    def open(self) -> bool:
        return "list" in self.milestones and not self.completed

    @property
    def completed(self) -> bool:
        return any(f"s{code}" in self.milestones for code in FINAL_STATUSES)

    def measures(self, context: Any = None) -> Sequence[Contribution]:
        dims = (("ie_flag", self.ie_flag or UNKNOWN), ("supervision_mode", self.supervision_mode or UNKNOWN))
        out: list[Contribution] = []
        accepted, released = self.milestones.get("s120"), self.milestones.get("s800")
        if accepted is not None and released is not None and released >= accepted:
            out.append(Contribution("cbec.release_time", released, dims, released - accepted))
        result, decision = match_result(self), self.decision
        if result is not None and decision is not None:
            out.append(Contribution("cbec.doc_match_rate", decision, dims, 1.0 if result == "match" else 0.0))
        return out

    def attributes(self) -> Mapping[str, Any]:
        return {"supervision_mode": self.supervision_mode, "ie_flag": self.ie_flag,
                "goods_value": self.order.value.goods_value if self.order.value else None,
                "doc_match": match_result(self),
                "ebc_code": self.order.value.ebc_code if self.order.value else None}  # fmt: skip


def match_result(o: Order) -> str | None:
    """match, missing_order, missing_payment, missing_waybill or amount_differs; None before a decision."""
    decision = o.decision
    if decision is None:
        return None
    t = o.milestones
    if t.get("order", float("inf")) >= decision:
        return "missing_order"
    if t.get("waybill", float("inf")) >= decision:
        return "missing_waybill"
    if (o.ie_flag or "I") == "I":
        if t.get("payment", float("inf")) >= decision:
            return "missing_payment"
        paid, order = o.payment.value, o.order.value
        if paid is None or order is None or Decimal(paid) != Decimal(order.goods_value):
            return "amount_differs"
    return "match"
