"""Records TradePulse publishes: indicator windows on ``indicators.<service>.v1`` (docs/contract.md
section 4), cases on ``cases.<service>.v1`` (section 7) and the SLA watch's flags on
``watch.<service>.v1`` (section 9)."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import Field, model_validator

from services.contract.envelope import Envelope
from services.contract.fields import ContractModel, NonEmptyStr, Rfc3339, examples

__all__ = [
    "CASE_TYPE",
    "INDICATOR_TYPE",
    "RELEASE_TYPE",
    "WATCH_TYPE",
    "CaseEvent",
    "CaseRecord",
    "CaseStatus",
    "IndicatorEvent",
    "IndicatorWindow",
    "ReleaseCell",
    "ReleaseEvent",
    "WatchEvent",
    "WatchFlag",
]

INDICATOR_TYPE = "tradepulse.indicator.window"

Unit = Literal["seconds", "working_days", "ratio", "cny", "count"]
WindowSize = Literal["PT1H", "P1D"]
NonNegative = Annotated[float, Field(ge=0)]


class Windowed(ContractModel):
    """What every record of one indicator over one window and one dimension set has: its key."""

    indicator: NonEmptyStr
    window: str
    window_start: Rfc3339
    window_end: Rfc3339
    dimensions: dict[str, str]
    unit: Unit

    @model_validator(mode="after")
    def _window_ordered(self) -> Self:
        if self.window_end <= self.window_start:
            msg = "window_end must be after window_start"
            raise ValueError(msg)
        return self

    @property
    def key(self) -> str:
        """The record key and CloudEvent subject: ``<indicator>|<window>|<start>|<k=v,...>``."""
        dims = ",".join(f"{k}={self.dimensions[k]}" for k in sorted(self.dimensions))
        return f"{self.indicator}|{self.window}|{self.window_start.isoformat()}|{dims}"


class IndicatorWindow(Windowed):
    """One revision of one indicator over one tumbling window and one dimension set.

    A newer ``revision`` for the same key replaces the previous one; the latest revisions always
    equal a batch computation over every event received so far.
    """

    model_config = examples(
        {
            "indicator": "customs.release_time",
            "window": "PT1H",
            "window_start": "2025-03-01T08:00:00+08:00",
            "window_end": "2025-03-01T09:00:00+08:00",
            "dimensions": {"customs_code": "5165", "ie_flag": "I", "transport_mode": "2"},
            "unit": "seconds",
            "count": 42,
            "mean": 5321.5,
            "min": 60.0,
            "max": 86000.0,
            "p50": 3600.0,
            "p90": 20000.0,
            "p95": 40000.0,
            "p99": 80000.0,
            "revision": 3,
            "final": False,
            "late_events": 0,
        },
        {
            "indicator": "customs.inspection_rate",
            "window": "P1D",
            "window_start": "2025-03-01T00:00:00+08:00",
            "window_end": "2025-03-02T00:00:00+08:00",
            "dimensions": {},
            "unit": "ratio",
            "count": 200,
            "numerator": 6,
            "denominator": 200,
            "value": 0.03,
            "revision": 1,
            "final": True,
            "late_events": 0,
        },
    )

    window: WindowSize
    count: Annotated[int, Field(ge=0)]
    mean: float | None = None
    min: float | None = None
    max: float | None = None
    p50: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None
    numerator: NonNegative | None = None
    denominator: NonNegative | None = None
    value: float | None = None
    sum: Annotated[str, Field(pattern=r"^-?\d+(\.\d+)?$")] | None = None
    revision: Annotated[int, Field(ge=1)]
    final: bool
    late_events: Annotated[int, Field(ge=0)]


class IndicatorEvent(Envelope):
    """An output record: a structured-mode CloudEvent carrying one indicator window revision."""

    type: Literal["tradepulse.indicator.window"] = INDICATOR_TYPE  # type: ignore[assignment]
    data: IndicatorWindow


CASE_TYPE = "tradepulse.case.updated"
CaseStatus = Literal["open", "completed", "expired"]


class CaseRecord(ContractModel):
    """The current state of one case (docs/contract.md section 7), published when it changes."""

    model_config = examples(
        {
            "service": "customs",
            "case_id": "514120250000012345",
            "status": "completed",
            "milestones": {
                "lodged": "2025-03-01T08:30:00.000+08:00",
                "accepted": "2025-03-01T08:31:00.000+08:00",
                "released": "2025-03-01T08:45:00.000+08:00",
                "exited": "2025-03-02T10:00:00.000+08:00",
            },
            "measures": {"customs.release_time|customs_code=5141,ie_flag=E,transport_mode=5": 900.0},
            "attributes": {"ie_flag": "E", "customs_code": "5141", "transport_mode": "5"},
            "revision": 4,
        }
    )

    service: NonEmptyStr
    case_id: NonEmptyStr
    status: CaseStatus
    milestones: dict[str, Rfc3339]
    measures: dict[str, float | str]
    attributes: dict[str, Any]
    revision: Annotated[int, Field(ge=1)]


class CaseEvent(Envelope):
    """An output record: a structured-mode CloudEvent carrying one case's current state."""

    type: Literal["tradepulse.case.updated"] = CASE_TYPE  # type: ignore[assignment]
    data: CaseRecord


RELEASE_TYPE = "tradepulse.release.cell"


class ReleaseCell(Windowed):
    """One cell of the cross-border release (docs/contract.md section 8): rounded values of a final
    window, or only its suppression and the rule behind it. Nothing else: no extreme or tail value,
    no revision, no count of late events, never an identifier."""

    model_config = examples(
        {
            "indicator": "customs.release_time",
            "window": "P1D",
            "window_start": "2025-03-01T00:00:00+08:00",
            "window_end": "2025-03-02T00:00:00+08:00",
            "dimensions": {"customs_code": "5141", "ie_flag": "E"},
            "unit": "seconds",
            "status": "released",
            "count": 25,
            "mean": 1800,
            "p50": 1440,
            "p90": 3600,
            "policy": "gba-trade-facilitation-hk",
            "policy_version": "2025.1",
            "policy_sha256": "3f" * 32,
            "released_at": "2025-03-02T01:00:07+08:00",
        },
        {
            "indicator": "cips.settled_value",
            "window": "P1D",
            "window_start": "2025-03-01T00:00:00+08:00",
            "window_end": "2025-03-02T00:00:00+08:00",
            "dimensions": {"purpose": "goods"},
            "unit": "cny",
            "status": "suppressed",
            "reason": "dominance",
            "policy": "gba-trade-facilitation-hk",
            "policy_version": "2025.1",
            "policy_sha256": "3f" * 32,
            "released_at": "2025-03-02T01:00:07+08:00",
        },
    )

    window: Literal["P1D", "P1M"]
    status: Literal["released", "suppressed"]
    reason: Literal["min_cases", "min_contributors", "dominance", "secondary"] | None = None
    count: Annotated[int, Field(ge=0, multiple_of=5)] | None = None
    mean: NonNegative | None = None
    p50: NonNegative | None = None
    p90: NonNegative | None = None
    numerator: Annotated[int, Field(ge=0, multiple_of=5)] | None = None
    denominator: Annotated[int, Field(ge=0, multiple_of=5)] | None = None
    value: Annotated[float, Field(ge=0, le=1)] | None = None
    sum: Annotated[str, Field(pattern=r"^-?\d+(\.\d+)?$")] | None = None
    policy: NonEmptyStr
    policy_version: NonEmptyStr
    policy_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    released_at: Rfc3339

    @model_validator(mode="after")
    def _suppressed_carries_no_value(self) -> Self:
        values = (
            self.count,
            self.mean,
            self.p50,
            self.p90,
            self.numerator,
            self.denominator,
            self.value,
            self.sum,
        )
        if (self.status == "suppressed") != (self.reason is not None):
            msg = "a suppressed cell names its reason, and only a suppressed cell does"
            raise ValueError(msg)
        if self.status == "suppressed" and any(v is not None for v in values):
            msg = "a suppressed cell carries no value"
            raise ValueError(msg)
        return self


class ReleaseEvent(Envelope):
    """A record of ``release.<destination>.v1``: a structured-mode CloudEvent carrying one cell."""

    type: Literal["tradepulse.release.cell"] = RELEASE_TYPE  # type: ignore[assignment]
    data: ReleaseCell


WATCH_TYPE = "tradepulse.watch.updated"


class WatchFlag(ContractModel):
    """One case's SLA watch flag (docs/contract.md section 9), published when it changes."""

    model_config = examples(
        {
            "service": "taxrefund",
            "case_id": "R2025030100012",
            "rule": "refund_issue_categories_1_2",
            "state": "breached",
            "since": "2025-03-07T00:00:00.000+08:00",
            "due": "2025-03-07T00:00:00.000+08:00",
            "started": "2025-03-03T10:00:00.000+08:00",
            "reached": "breached",
            "milestones": {
                "declared": "2025-03-01T09:00:00.000+08:00",
                "accepted": "2025-03-03T10:00:00.000+08:00",
            },
            "attributes": {"mgmt_category": 1, "entry_ids": ["514120250000012345"]},
        }
    )

    service: NonEmptyStr
    case_id: NonEmptyStr
    rule: NonEmptyStr
    state: Literal["warning", "breached", "cleared", "expired"]
    since: Rfc3339
    due: Rfc3339
    started: Rfc3339
    reached: Literal["warning", "breached"]
    milestones: dict[str, Rfc3339]
    attributes: dict[str, Any]


class WatchEvent(Envelope):
    """An output record: a structured-mode CloudEvent carrying one case's watch flag."""

    type: Literal["tradepulse.watch.updated"] = WATCH_TYPE  # type: ignore[assignment]
    data: WatchFlag
