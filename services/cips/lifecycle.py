"""CIPS payments: pure state and measures (docs/contract.md sections 2.3 and 4).

A payment keeps the earliest time of every milestone and the attributes of the earliest
``payment.initiated``, so any order or repetition of its events gives the same payment. Amounts
stay exact decimal strings end to end.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from services.cips.events import PaymentInitiated
from services.contract.envelope import Event
from services.engine.domain import Case
from services.engine.registers import EarliestWins, Milestones
from services.engine.windows import Contribution, IndicatorSpec, Observed

__all__ = ["FSB_TARGET_S", "INDICATORS", "Initiation", "Payment"]

FSB_TARGET_S = 3600.0
UNKNOWN = "unknown"
MSG_TYPES = frozenset({"customer", "fi", UNKNOWN})
PURPOSES = frozenset({"goods", "services", "capital", "other", UNKNOWN})

INDICATORS = (
    IndicatorSpec("cips.credit_time", "seconds", "duration", ("msg_type", "purpose"),
                  labels={"msg_type": MSG_TYPES, "purpose": PURPOSES}, milestone="credited",
                  histogram=Observed("tradepulse_cips_credit_seconds",
                                     "Initiation to beneficiary credit, when first known.",
                                     (10, 60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 172800,
                                      259200),
                                     labels=("msg_type",))),
    IndicatorSpec("cips.credited_within_1h", "ratio", "ratio", ("msg_type",), labels={"msg_type": MSG_TYPES},
                  milestone="credited"),
    IndicatorSpec("cips.settled_value", "cny", "amount", ("msg_type", "purpose"),
                  labels={"msg_type": MSG_TYPES, "purpose": PURPOSES}, milestone="settled"),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Initiation:
    """What the measures and the export cycle need of ``payment.initiated``."""

    msg_type: str
    purpose: str
    amount: str
    linked_entry_ids: tuple[str, ...] = ()
    debtor_agent: str | None = None  # the contributor disclosure control protects (contract 8)


@dataclass(frozen=True, slots=True)
class Payment(Case):
    """What is known of one payment (``uetr``)."""

    uetr: str
    milestones: Milestones = Milestones()
    initiation: EarliestWins[Initiation] = EarliestWins()

    def apply(self, event: Event) -> Payment:
        data, milestone = event.data, event.milestone
        if isinstance(data, PaymentInitiated):
            linked = tuple(data.linked_entry_ids or ())
            initiation = Initiation(
                data.msg_type, data.purpose, data.amount.amount, linked, data.debtor_agent
            )
            return self.noted(milestone, event, initiation=initiation)
        return self.noted(milestone, event)

    @property
    def msg_type(self) -> str:
        return self.initiation.value.msg_type if self.initiation.value else UNKNOWN

    @property
    def purpose(self) -> str:
        return self.initiation.value.purpose if self.initiation.value else UNKNOWN

    @property
    def outcome(self) -> str:
        """Final status for counting: returned, rejected, credited, or open."""
        for status in ("returned", "rejected", "credited"):
            if status in self.milestones:
                return status
        return "open"

    @property
    def group(self) -> str:
        return self.msg_type

    @property
    def open(self) -> bool:
        return "initiated" in self.milestones and self.outcome == "open"

    @property
    def completed(self) -> bool:
        return self.outcome != "open"

    CLOCKS = ("open",)

    def clocks(self, context: Any = None) -> Sequence[tuple[str, float]]:
        """An open payment is under its initiation (the oldest open payment's age)."""
        return (("open", self.milestones["initiated"]),) if self.open else ()

    def measures(self, context: Any = None) -> Sequence[Contribution]:
        """The payment's measures, from its state alone."""
        t = self.milestones
        msg_type, purpose = self.msg_type, self.purpose
        out: list[Contribution] = []
        initiated, credited = t.get("initiated"), t.get("credited")
        if initiated is not None and credited is not None and credited >= initiated:
            seconds = credited - initiated
            out.append(
                Contribution(
                    "cips.credit_time", credited, (("msg_type", msg_type), ("purpose", purpose)), seconds
                )
            )
            within = 1.0 if round(seconds * 1000) <= FSB_TARGET_S * 1000 else 0.0
            out.append(Contribution("cips.credited_within_1h", credited, (("msg_type", msg_type),), within))
        if "settled" in t and self.initiation.value is not None:
            dims = (("msg_type", msg_type), ("purpose", purpose))
            out.append(
                Contribution("cips.settled_value", t["settled"], dims, amount=self.initiation.value.amount)
            )
        return out

    def attributes(self) -> Mapping[str, Any]:
        initiation = self.initiation.value
        return {
            "msg_type": self.msg_type, "purpose": self.purpose, "status": self.outcome,
            "amount": initiation.amount if initiation else None,
            "linked_entry_ids": list(initiation.linked_entry_ids) if initiation else [],
            "debtor_agent": initiation.debtor_agent if initiation else None,
        }  # fmt: skip
