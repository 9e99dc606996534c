"""Customs declarations: pure state and measures (docs/contract.md sections 2.1 and 4).

A declaration keeps the earliest time of every milestone and, from the earliest lodging, risk
decision and inspection result, what its measures need. Built from registers, it comes out the
same for any order and any repetition of its events.

Arrivals are keyed by bill of lading, declarations by entry number, so they usually live on
different partitions. They find each other by messages: a declaration that names a bill tells the
bill (:class:`Named`); a bill that has arrived tells every declaration that named it
(:class:`Arrived`), whichever came first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from services.contract.envelope import Event
from services.customs.events import DeclarationLodged, InspectionCompleted, RiskDecided, TransportArrived
from services.engine.domain import NO_MESSAGES, Case, Message
from services.engine.registers import EarliestWins, Milestones, evolve
from services.engine.windows import Contribution, IndicatorSpec, Observed

__all__ = [
    "INDICATORS",
    "STAGES",
    "Arrived",
    "Bill",
    "Declaration",
    "Lodging",
    "Named",
    "ie_flag_of",
]

# stage -> (from milestone, to milestone); a stage is counted when its end happens
STAGES: dict[str, tuple[str, str]] = {
    "lodged_to_accepted": ("lodged", "accepted"),
    "accepted_to_released": ("accepted", "released"),
    "inspection": ("ordered", "completed"),
    "released_to_exited": ("released", "exited"),
    "arrival_to_lodged": ("arrived", "lodged"),
}

UNKNOWN = "unknown"
IE_FLAGS = frozenset({"I", "E"})
# Guangzhou-area customs offices (the ports of docs/simulation.md and their districts)
CUSTOMS_CODES = frozenset(
    {"5141", "5165", "5130", "5133", "5208", "5200", "5201", "5202", "5203", "5204", "5205", "5206", "5207",
     "5209", "5349", "0200", "2992"}
)  # fmt: skip
TRANSPORT_MODES = frozenset({"0", "1", "2", "3", "4", "5", "6", "7", "8", "9", UNKNOWN})
CREDIT_CLASSES = frozenset({"aeo", "general", "discredited", UNKNOWN})

INDICATORS = (
    IndicatorSpec(
        "customs.release_time", "seconds", "duration", ("ie_flag", "customs_code", "transport_mode"),
        labels={"ie_flag": IE_FLAGS, "customs_code": CUSTOMS_CODES, "transport_mode": TRANSPORT_MODES},
        milestone="released",
        histogram=Observed(
            "tradepulse_customs_release_seconds",
            "Release time of declarations (arrival or lodging to release), when first known.",
            (60, 300, 900, 1800, 3600, 7200, 14400, 28800, 43200, 86400, 172800, 345600, 604800),
        ),
    ),
    IndicatorSpec(
        "customs.stage_time", "seconds", "duration", ("stage", "ie_flag"),
        labels={"stage": frozenset(STAGES), "ie_flag": IE_FLAGS},
        histogram=Observed(
            "tradepulse_customs_stage_seconds",
            "Duration of each clearance stage (WCO TRS), when first known.",
            (1, 10, 60, 300, 900, 3600, 7200, 14400, 43200, 86400, 172800, 345600, 604800),
        ),
    ),
    IndicatorSpec(
        "customs.inspection_rate", "ratio", "ratio", ("ie_flag", "credit_class"),
        labels={"ie_flag": IE_FLAGS, "credit_class": CREDIT_CLASSES},
    ),
)  # fmt: skip


def ie_flag_of(entry_id: str) -> str:
    """Digit 9 of the entry number: 1 import, 0 export."""
    return "I" if entry_id[8] == "1" else "E"


@dataclass(frozen=True, slots=True)
class Lodging:
    """What the measures and the join need of a lodged declaration (the rest stays upstream)."""

    transport_mode: str
    credit_class: str
    bill_no: str | None = None
    consignee_uscc: str | None = None  # the contributor disclosure control protects (contract 8)


@dataclass(frozen=True, slots=True)
class Named:
    """Message to a bill: this declaration names you."""

    entry_id: str


@dataclass(frozen=True, slots=True)
class Arrived:
    """Message to a declaration: the goods of the bill you name arrived at ``at_s``."""

    at_s: float


@dataclass(frozen=True, slots=True)
class Declaration(Case):
    """What is known of one ``entry_id``."""

    entry_id: str
    milestones: Milestones = Milestones()
    lodging: EarliestWins[Lodging] = EarliestWins()
    channel: EarliestWins[str] = EarliestWins()
    outcome: EarliestWins[str] = EarliestWins()

    def apply(self, event: Event) -> Declaration:
        data, milestone = event.data, event.milestone
        if isinstance(data, DeclarationLodged):
            lodging = Lodging(data.transport_mode, data.credit_class, data.bill_no, data.consignee_uscc)
            return self.noted(milestone, event, lodging=lodging)
        if isinstance(data, RiskDecided):
            return self.noted(milestone, event, channel=data.channel)
        if isinstance(data, InspectionCompleted):
            return self.noted(milestone, event, outcome=data.outcome)
        return self.noted(milestone, event)

    def receive(self, message: Arrived) -> Declaration:
        return evolve(self, milestones=self.milestones.earliest("arrived", message.at_s))

    def messages(self, before: Declaration) -> Sequence[Message]:
        if self.lodging is before.lodging:
            return NO_MESSAGES
        bill = self.bill_no
        if bill and bill != before.bill_no:
            return (Message("bill", bill, Named(self.entry_id)),)
        return NO_MESSAGES

    @property
    def ie_flag(self) -> str:
        return ie_flag_of(self.entry_id)

    @property
    def bill_no(self) -> str | None:
        return self.lodging.value.bill_no if self.lodging.value else None

    @property
    def group(self) -> str:
        return self.ie_flag

    @property
    def open(self) -> bool:
        """Lodged (or accepted) and neither released nor rejected."""
        t = self.milestones
        return ("lodged" in t or "accepted" in t) and "released" not in t and "rejected" not in t

    @property
    def completed(self) -> bool:
        t = self.milestones
        return "rejected" in t or ("released" in t and "exited" in t)

    def measures(self, context: Any = None) -> Sequence[Contribution]:
        """Every measure the declaration has completed, from its state alone."""
        t, ie = self.milestones, self.ie_flag
        lodging = self.lodging.value
        out: list[Contribution] = []
        start = t.get("arrived") if ie == "I" and "arrived" in t else t.get("lodged")
        released = t.get("released")
        if released is not None and start is not None and released >= start:
            mode = lodging.transport_mode if lodging else UNKNOWN
            release = (("customs_code", self.entry_id[:4]), ("ie_flag", ie), ("transport_mode", mode))
            out.append(Contribution("customs.release_time", released, release, released - start))
        for name, (begin, end) in STAGES.items():
            if begin in t and end in t and t[end] >= t[begin]:
                dims = (("ie_flag", ie), ("stage", name))
                out.append(Contribution("customs.stage_time", t[end], dims, t[end] - t[begin]))
        if self.channel.known and "risk_decided" in t:
            dims = (("credit_class", lodging.credit_class if lodging else UNKNOWN), ("ie_flag", ie))
            hit = 1.0 if self.channel.value == "inspection" else 0.0
            out.append(Contribution("customs.inspection_rate", t["risk_decided"], dims, hit))
        return out

    def attributes(self) -> Mapping[str, Any]:
        lodging = self.lodging.value
        return {
            "ie_flag": self.ie_flag, "customs_code": self.entry_id[:4],
            "transport_mode": lodging.transport_mode if lodging else None,
            "credit_class": lodging.credit_class if lodging else None,
            "bill_no": self.bill_no, "channel": self.channel.value, "inspection_outcome": self.outcome.value,
            "consignee_uscc": lodging.consignee_uscc if lodging else None,
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class Bill(Case):
    """An arrival of goods under one bill of lading, and the declarations that name it."""

    bill_no: str
    arrival: EarliestWins[str] = EarliestWins()  # the transport mode, decided by the earliest arrival
    entries: frozenset[str] = frozenset()

    def apply(self, event: Event) -> Bill:
        data = event.data
        if isinstance(data, TransportArrived):
            return evolve(self, arrival=self.arrival.offer(data.transport_mode, event.time_s, event.id))
        return self

    def receive(self, message: Named) -> Bill:
        if message.entry_id in self.entries:
            return self
        return evolve(self, entries=self.entries | {message.entry_id})

    def messages(self, before: Bill) -> Sequence[Message]:
        """The arrival, to every declaration that names the bill if the arrival is news, else to
        those that just named it."""
        if not self.arrival.known:
            return NO_MESSAGES
        told = self.entries if self.arrival != before.arrival else self.entries - before.entries
        return tuple(Message("declaration", e, Arrived(self.arrival.at_s)) for e in sorted(told))
