"""Export VAT refund lifecycle: pure state and measures (contract 2.2 and 4).

Like customs, a refund's state keeps the earliest time of every milestone and takes its
attributes from the earliest ``refund.declared``, so any order or duplication of its events gives
the same state. Processing time is counted in China working days from the acceptance date to the
issue date (Asia/Shanghai dates, A < d <= B); a date beyond the calendar's data parks the refund
("calendar unknown") instead of guessing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from services.common.cases import keep_earliest, time_from_json
from services.common.events import DataModel
from services.common.events.taxrefund import RefundDeclared
from services.common.windows import SHANGHAI, Contribution, IndicatorSpec, late_map
from services.common.workdays import CalendarUnknown, WorkdayCalendar

__all__ = ["DEFAULT_LIMITS_WD", "INDICATORS", "MILESTONES", "Refund", "contributions", "local_date"]

MILESTONES: dict[str, str] = {
    "taxrefund.refund.declared": "declared",
    "taxrefund.refund.accepted": "accepted",
    "taxrefund.refund.flagged": "flagged",
    "taxrefund.refund.rejected": "rejected",
    "taxrefund.refund.approved": "approved",
    "taxrefund.refund.issued": "issued",
    "taxrefund.refund.credited": "credited",
}
DEFAULT_LIMITS_WD: dict[int, int] = {1: 5, 2: 10, 3: 15, 4: 20}
UNKNOWN = "unknown"

INDICATORS: dict[str, IndicatorSpec] = {
    s.name: s
    for s in (
        IndicatorSpec("taxrefund.processing_time", "working_days", "duration", ("mgmt_category",)),
        IndicatorSpec("taxrefund.within_limit", "ratio", "ratio", ("mgmt_category",)),
    )
}


def local_date(at_s: float) -> date:
    """The Asia/Shanghai calendar date of an instant."""
    return datetime.fromtimestamp(at_s, SHANGHAI).date()


@dataclass(slots=True)
class Refund:
    """What is known of one ``refund_id``."""

    refund_id: str
    times: dict[str, float] = field(default_factory=dict)
    category: int | None = None
    entry_ids: list[str] = field(default_factory=list)
    declared_by: tuple[float, str] | None = None
    applied: list[tuple[Contribution, tuple[str, ...]]] = field(default_factory=list)
    last_event_s: float = float("-inf")
    changed_wall_s: float = 0.0
    parked_year: int | None = None  # processing time needs a year the calendar has no data for

    @property
    def key(self) -> str:
        return self.refund_id

    @property
    def group(self) -> str:
        return str(self.category) if self.category else UNKNOWN

    @property
    def open(self) -> bool:
        t = self.times
        return ("declared" in t or "accepted" in t) and "issued" not in t and "rejected" not in t

    @property
    def finished(self) -> bool:
        return "rejected" in self.times or ("issued" in self.times and "credited" in self.times)

    def apply(self, event_type: str, data: DataModel, at_s: float, event_id: str) -> bool:
        """Apply one event; True if the state changed."""
        self.last_event_s = max(self.last_event_s, at_s)
        changed = keep_earliest(self.times, MILESTONES[event_type], at_s)
        key = (at_s, event_id)
        if isinstance(data, RefundDeclared) and (self.declared_by is None or key < self.declared_by):
            self.category, self.entry_ids, self.declared_by = data.mgmt_category, list(data.entry_ids), key
            changed = True
        return changed

    def to_json(self) -> dict[str, Any]:
        return {
            "r": self.refund_id, "t": dict(self.times), "c": self.category, "e": list(self.entry_ids),
            "db": self.declared_by, "L": late_map(self.applied), "le": self.last_event_s,
            "w": self.changed_wall_s, "p": self.parked_year,
        }  # fmt: skip

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Refund:
        """The stored fields; the caller derives ``applied`` with the calendar in force now."""
        by = doc["db"]
        return cls(
            refund_id=doc["r"], times={k: float(v) for k, v in doc["t"].items()}, category=doc["c"],
            entry_ids=list(doc["e"]), declared_by=(float(by[0]), str(by[1])) if by else None,
            last_event_s=time_from_json(doc["le"]), changed_wall_s=float(doc["w"]), parked_year=doc.get("p"),
        )  # fmt: skip


def contributions(
    r: Refund, calendar: WorkdayCalendar, limits: Mapping[int, int]
) -> tuple[list[Contribution], int | None]:
    """The refund's measures, and the year the calendar lacks if processing time is unknown."""
    t = r.times
    if "accepted" not in t or "issued" not in t:
        return [], None
    try:
        workdays = calendar.workdays_between(local_date(t["accepted"]), local_date(t["issued"]))
    except CalendarUnknown as exc:
        return [], exc.year
    if workdays < 0:
        return [], None
    dims = (("mgmt_category", r.group),)
    out = [Contribution("taxrefund.processing_time", t["issued"], dims, float(workdays))]
    if "flagged" not in t and r.category is not None and r.category in limits:
        within = 1.0 if workdays <= limits[r.category] else 0.0
        out.append(Contribution("taxrefund.within_limit", t["issued"], dims, within))
    return out, None
