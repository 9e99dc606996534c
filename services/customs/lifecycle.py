"""Customs declaration lifecycle: pure state and durations, no I/O.

A declaration's state is a join-semilattice: every milestone keeps the *earliest* event time seen,
and attributes come from the earliest ``declaration.lodged`` (ties broken by event id). Applying
events in any order, any number of times, gives the same state, so duplicates, redelivery and
shuffling cannot change a measure. :func:`contributions` derives each measure of contract 2.1/4
from the state alone; the service replaces a case's old contributions with the new ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from services.common.cases import keep_earliest, time_from_json
from services.common.events import DataModel
from services.common.events.customs import (
    DeclarationLodged,
    InspectionCompleted,
    RiskDecided,
    TransportArrived,
)
from services.common.windows import Contribution, IndicatorSpec, late_map, with_late

__all__ = [
    "INDICATORS",
    "MILESTONES",
    "STAGES",
    "Bill",
    "Declaration",
    "contributions",
    "ie_flag_of",
]

# event type -> milestone name
MILESTONES: dict[str, str] = {
    "customs.declaration.lodged": "lodged",
    "customs.declaration.accepted": "accepted",
    "customs.declaration.rejected": "rejected",
    "customs.declaration.risk_decided": "risk",
    "customs.inspection.ordered": "inspection_ordered",
    "customs.inspection.completed": "inspection_completed",
    "customs.duty.paid": "duty_paid",
    "customs.declaration.released": "released",
    "customs.goods.exited": "exited",
}

# stage -> (from milestone, to milestone); the stage is counted when its end happens
STAGES: dict[str, tuple[str, str]] = {
    "lodged_to_accepted": ("lodged", "accepted"),
    "accepted_to_released": ("accepted", "released"),
    "inspection": ("inspection_ordered", "inspection_completed"),
    "released_to_exited": ("released", "exited"),
    "arrival_to_lodged": ("arrival", "lodged"),
}

INDICATORS: dict[str, IndicatorSpec] = {
    s.name: s
    for s in (
        IndicatorSpec(
            "customs.release_time", "seconds", "duration", ("ie_flag", "customs_code", "transport_mode")
        ),
        IndicatorSpec("customs.stage_time", "seconds", "duration", ("stage", "ie_flag")),
        IndicatorSpec("customs.inspection_rate", "ratio", "ratio", ("ie_flag", "credit_class")),
    )
}

UNKNOWN = "unknown"


def ie_flag_of(entry_id: str) -> str:
    """Digit 9 of the entry number: 1 import, 0 export."""
    return "I" if entry_id[8] == "1" else "E"


Tiebreak = tuple[float, str]  # (event time, event id): the earliest wins, deterministically


@dataclass(slots=True)
class Declaration:
    """What is known of one ``entry_id``."""

    entry_id: str
    times: dict[str, float] = field(default_factory=dict)
    lodged: dict[str, Any] | None = None
    lodged_by: Tiebreak | None = None
    channel: str | None = None
    channel_by: Tiebreak | None = None
    outcome: str | None = None
    outcome_by: Tiebreak | None = None
    applied: list[tuple[Contribution, tuple[str, ...]]] = field(default_factory=list)
    last_event_s: float = float("-inf")
    changed_wall_s: float = 0.0  # when the state last changed, by the worker's clock

    @property
    def ie_flag(self) -> str:
        return ie_flag_of(self.entry_id)

    @property
    def key(self) -> str:
        return self.entry_id

    @property
    def group(self) -> str:
        return self.ie_flag

    @property
    def finished(self) -> bool:
        return "rejected" in self.times or ("released" in self.times and "exited" in self.times)

    @property
    def bill_no(self) -> str | None:
        return self.lodged.get("bill_no") if self.lodged else None

    @property
    def open(self) -> bool:
        """Lodged (or accepted) and neither released nor rejected."""
        t = self.times
        return ("lodged" in t or "accepted" in t) and "released" not in t and "rejected" not in t

    def mark(self, milestone: str, at_s: float) -> bool:
        """Keep the earliest time of a milestone; True if the state changed."""
        self.last_event_s = max(self.last_event_s, at_s)
        return keep_earliest(self.times, milestone, at_s)

    def apply(self, event_type: str, data: DataModel, at_s: float, event_id: str) -> bool:
        """Apply one event of this declaration; True if the state changed."""
        changed = self.mark(MILESTONES[event_type], at_s)
        key: Tiebreak = (at_s, event_id)
        if isinstance(data, DeclarationLodged) and (self.lodged_by is None or key < self.lodged_by):
            # only what the measures and the join need; the rest of the declaration stays upstream
            self.lodged = {
                "transport_mode": data.transport_mode,
                "credit_class": data.credit_class,
                "bill_no": data.bill_no,
            }
            self.lodged_by, changed = key, True
        elif isinstance(data, RiskDecided) and (self.channel_by is None or key < self.channel_by):
            self.channel, self.channel_by, changed = data.channel, key, True
        elif isinstance(data, InspectionCompleted) and (self.outcome_by is None or key < self.outcome_by):
            self.outcome, self.outcome_by, changed = data.outcome, key, True
        return changed

    def to_json(self) -> dict[str, Any]:
        """Compact form for the state store. Applied contributions are not stored: they are
        :func:`contributions` of the state; only the windows they reached late are."""
        return {
            "e": self.entry_id, "t": dict(self.times), "l": dict(self.lodged) if self.lodged else None,
            "lb": self.lodged_by,
            "c": self.channel, "cb": self.channel_by, "o": self.outcome, "ob": self.outcome_by,
            "L": late_map(self.applied), "le": self.last_event_s, "w": self.changed_wall_s,
        }  # fmt: skip

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Declaration:
        def tie(v: Any) -> Tiebreak | None:
            return (float(v[0]), str(v[1])) if v else None

        d = cls(
            entry_id=doc["e"], times={k: float(v) for k, v in doc["t"].items()}, lodged=doc["l"],
            lodged_by=tie(doc["lb"]), channel=doc["c"], channel_by=tie(doc["cb"]), outcome=doc["o"],
            outcome_by=tie(doc["ob"]), last_event_s=time_from_json(doc["le"]),
            changed_wall_s=float(doc.get("w", 0.0)),
        )  # fmt: skip
        d.applied = with_late(contributions(d), doc.get("L", {}))
        return d


@dataclass(slots=True)
class Bill:
    """An arrival of goods under one bill of lading, and the declarations that name it."""

    bill_no: str
    arrival_s: float | None = None
    arrival_by: Tiebreak | None = None
    transport_mode: str | None = None
    entries: set[str] = field(default_factory=set)

    def arrive(self, data: TransportArrived, at_s: float, event_id: str) -> bool:
        key: Tiebreak = (at_s, event_id)
        if self.arrival_by is None or key < self.arrival_by:
            self.arrival_s, self.arrival_by, self.transport_mode = at_s, key, data.transport_mode
            return True
        return False

    def to_json(self) -> dict[str, Any]:
        return {"b": self.bill_no, "t": self.arrival_s, "tb": self.arrival_by, "m": self.transport_mode,
                "e": sorted(self.entries)}  # fmt: skip

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Bill:
        by = doc["tb"]
        return cls(doc["b"], doc["t"], (float(by[0]), str(by[1])) if by else None, doc["m"], set(doc["e"]))


def _stage(name: str, at_s: float, value: float, ie: str) -> Contribution:
    return Contribution("customs.stage_time", at_s, (("ie_flag", ie), ("stage", name)), value)


def contributions(d: Declaration) -> list[Contribution]:
    """Every measure the declaration has completed, from its state alone."""
    t, ie = d.times, d.ie_flag
    out: list[Contribution] = []
    start = t.get("arrival") if ie == "I" and "arrival" in t else t.get("lodged")
    if "released" in t and start is not None and t["released"] >= start:
        mode = (d.lodged or {}).get("transport_mode") or UNKNOWN
        dims = (("customs_code", d.entry_id[:4]), ("ie_flag", ie), ("transport_mode", mode))
        out.append(Contribution("customs.release_time", t["released"], dims, t["released"] - start))
    for name, (begin, end) in STAGES.items():
        if begin in t and end in t and t[end] >= t[begin]:
            out.append(_stage(name, t[end], t[end] - t[begin], ie))
    if d.channel is not None and "risk" in t:
        credit = (d.lodged or {}).get("credit_class") or UNKNOWN
        hit = 1.0 if d.channel == "inspection" else 0.0
        out.append(
            Contribution(
                "customs.inspection_rate", t["risk"], (("credit_class", credit), ("ie_flag", ie)), hit
            )
        )
    return out
