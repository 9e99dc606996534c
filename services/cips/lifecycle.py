"""CIPS payment lifecycle: pure state and measures (contract 2.3 and 4).

State per ``uetr`` keeps the earliest time of every milestone and the attributes of the earliest
``payment.initiated``, so any order or duplication of its events gives the same measures.
Amounts stay exact decimals end to end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from services.common.cases import keep_earliest, time_from_json
from services.common.events import DataModel
from services.common.events.cips import PaymentInitiated
from services.common.windows import Contribution, IndicatorSpec, late_map, with_late

__all__ = ["INDICATORS", "MILESTONES", "Payment", "contributions"]

MILESTONES: dict[str, str] = {
    "cips.payment.initiated": "initiated",
    "cips.payment.submitted": "submitted",
    "cips.payment.settled": "settled",
    "cips.payment.rejected": "rejected",
    "cips.payment.credited": "credited",
    "cips.payment.returned": "returned",
}
FSB_TARGET_S = 3600.0
UNKNOWN = "unknown"

INDICATORS: dict[str, IndicatorSpec] = {
    s.name: s
    for s in (
        IndicatorSpec("cips.credit_time", "seconds", "duration", ("msg_type", "purpose")),
        IndicatorSpec("cips.credited_within_1h", "ratio", "ratio", ("msg_type",)),
        IndicatorSpec("cips.settled_value", "cny", "amount", ("msg_type", "purpose")),
    )
}


@dataclass(slots=True)
class Payment:
    """What is known of one payment (``uetr``)."""

    uetr: str
    times: dict[str, float] = field(default_factory=dict)
    msg_type: str | None = None
    purpose: str | None = None
    amount: str | None = None  # exact decimal string, CNY
    linked_entry_ids: list[str] = field(default_factory=list)
    initiated_by: tuple[float, str] | None = None
    applied: list[tuple[Contribution, tuple[str, ...]]] = field(default_factory=list)
    last_event_s: float = float("-inf")
    changed_wall_s: float = 0.0

    @property
    def key(self) -> str:
        return self.uetr

    @property
    def group(self) -> str:
        return self.msg_type or UNKNOWN

    @property
    def status(self) -> str:
        """Final status for counting: credited, rejected, returned, or open."""
        for status in ("returned", "rejected", "credited"):
            if status in self.times:
                return status
        return "open"

    @property
    def open(self) -> bool:
        return "initiated" in self.times and self.status == "open"

    @property
    def finished(self) -> bool:
        return self.status != "open"

    def apply(self, event_type: str, data: DataModel, at_s: float, event_id: str) -> bool:
        self.last_event_s = max(self.last_event_s, at_s)
        changed = keep_earliest(self.times, MILESTONES[event_type], at_s)
        key = (at_s, event_id)
        if isinstance(data, PaymentInitiated) and (self.initiated_by is None or key < self.initiated_by):
            self.msg_type, self.purpose, self.amount = data.msg_type, data.purpose, data.amount.amount
            self.linked_entry_ids = list(data.linked_entry_ids or [])
            self.initiated_by, changed = key, True
        return changed

    def to_json(self) -> dict[str, Any]:
        return {
            "u": self.uetr, "t": dict(self.times), "m": self.msg_type, "p": self.purpose, "a": self.amount,
            "x": list(self.linked_entry_ids), "ib": self.initiated_by, "L": late_map(self.applied),
            "le": self.last_event_s, "w": self.changed_wall_s,
        }  # fmt: skip

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Payment:
        by = doc["ib"]
        p = cls(
            uetr=doc["u"], times={k: float(v) for k, v in doc["t"].items()}, msg_type=doc["m"],
            purpose=doc["p"], amount=doc["a"], linked_entry_ids=list(doc["x"]),
            initiated_by=(float(by[0]), str(by[1])) if by else None,
            last_event_s=time_from_json(doc["le"]),
            changed_wall_s=float(doc["w"]),
        )  # fmt: skip
        p.applied = with_late(contributions(p), doc.get("L", {}))
        return p


def contributions(p: Payment) -> list[Contribution]:
    """The payment's measures from its state alone."""
    t = p.times
    msg_type, purpose = p.msg_type or UNKNOWN, p.purpose or UNKNOWN
    out: list[Contribution] = []
    if "initiated" in t and "credited" in t and t["credited"] >= t["initiated"]:
        seconds = t["credited"] - t["initiated"]
        dims = (("msg_type", msg_type), ("purpose", purpose))
        out.append(Contribution("cips.credit_time", t["credited"], dims, seconds))
        within = 1.0 if round(seconds * 1000) <= FSB_TARGET_S * 1000 else 0.0
        out.append(Contribution("cips.credited_within_1h", t["credited"], (("msg_type", msg_type),), within))
    if "settled" in t and p.amount is not None:
        dims = (("msg_type", msg_type), ("purpose", purpose))
        out.append(Contribution("cips.settled_value", t["settled"], dims, amount=p.amount))
    return out
