"""The cycle's input: the case records of customs, CIPS and refunds (docs/contract.md section 7),
one catalog for the three topics. The cycle imports no other service's code: what it needs of a
case (a milestone time, a few attributes) is in the record."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from services.contract.catalog import Catalog
from services.contract.fields import DataModel, NonEmptyStr, Rfc3339, examples
from services.contract.records import CASE_TYPE
from services.contract.topics import case_topic

__all__ = ["CATALOG", "INPUTS", "CaseUpdate"]


class CaseUpdate(DataModel):
    """A case's current state, as its service publishes it."""

    service: NonEmptyStr
    case_id: NonEmptyStr
    status: NonEmptyStr
    milestones: dict[str, Rfc3339]
    attributes: dict[str, Any]
    revision: int
    model_config = examples(
        {
            "service": "customs",
            "case_id": "514120250000012345",
            "status": "open",
            "milestones": {
                "lodged": "2025-03-01T08:30:00.000+08:00",
                "released": "2025-03-01T09:45:00.000+08:00",
            },
            "measures": {},
            "attributes": {"ie_flag": "E", "customs_code": "5141"},
            "revision": 3,
        }
    )
    subject_field = "case_id"

    def at(self, milestone: str) -> float | None:
        """The time of ``milestone`` (epoch seconds), None while unknown."""
        when: datetime | None = self.milestones.get(milestone)
        return when.timestamp() if when is not None else None

    def entries(self, attribute: str) -> tuple[str, ...]:
        """A list attribute of entry numbers (``linked_entry_ids``, ``entry_ids``)."""
        value = self.attributes.get(attribute) or ()
        return tuple(sorted({str(v) for v in value})) if isinstance(value, list | tuple) else ()


CATALOG = Catalog.of(case_topic("customs"), {CASE_TYPE: CaseUpdate})
INPUTS = (case_topic("cips"), case_topic("taxrefund"))
"""Read with the same catalog as ``cases.customs.v1``."""
