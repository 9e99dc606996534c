"""What the simulators share so that their records link across services (the export cycle,
docs/contract.md section 4): export shipments, which the customs simulator declares, the CIPS
simulator's goods payments name in ``linked_entry_ids`` and the refund simulator's refunds list
in ``entry_ids``.

Shipment ``i`` depends only on (seed, i, start, span), never on how many cases a simulator makes:
simulators run with the same seed, start and span name the same entries, whatever their counts.
Lodging times follow a golden-ratio sequence, so the first n shipments spread evenly over the span.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache
from typing import Any

from services.contract.envelope import cloud_event

__all__ = ["EXPORT_OFFICES", "CaseEvents", "Shipment", "iso", "pick", "shipment"]

# customs offices that declare exports, with their share (docs/simulation.md: the customs ports)
EXPORT_OFFICES = [("5165", 0.40), ("5141", 0.30), ("5208", 0.12), ("5201", 0.10), ("5130", 0.08)]
_CHINA = timezone(timedelta(hours=8))
_GOLDEN = 0.6180339887498949


def iso(at_s: float) -> str:
    """An event time as producers write it: RFC 3339 in China time, to the millisecond."""
    return datetime.fromtimestamp(round(at_s, 3), _CHINA).isoformat(timespec="milliseconds")


def pick(rng: random.Random, items: Sequence[tuple[Any, float]]) -> Any:
    """One of the (value, weight) ``items``."""
    return rng.choices([value for value, _ in items], [weight for _, weight in items])[0]


class CaseEvents(list[dict[str, Any]]):
    """The events of one simulated case, as CloudEvent dicts: ids ``<subject>-<n>``, one source,
    and fields every event's ``data`` carries (the case's key)."""

    def __init__(self, subject: str, source: str, **key: Any) -> None:
        super().__init__()
        self.subject, self.source, self.key = subject, source, key

    def emit(self, type_: str, at_s: float, **data: Any) -> None:
        self.emit_as(self.subject, type_, at_s, **data)

    def emit_as(self, subject: str, type_: str, at_s: float, **data: Any) -> None:
        """An event whose subject is another entity (an arrival is keyed by its bill of lading)."""
        data = {**self.key, **data}
        self.append(cloud_event(f"{self.subject}-{len(self)}", self.source, type_, iso(at_s), subject, data))


@dataclass(frozen=True, slots=True)
class Shipment:
    """One export declaration of the shared plan."""

    index: int
    entry_id: str
    office: str
    lodged_s: float


@lru_cache(maxsize=65_536)
def shipment(seed: int, index: int, start_s: float, span_s: float) -> Shipment:
    """Export shipment ``index`` of the plan ``seed`` lodged within [start_s, start_s + span_s)."""
    rng = random.Random(seed * 1_000_003 + index)
    lodged_s = start_s + span_s * ((index * _GOLDEN) % 1.0)
    office = rng.choices([o for o, _ in EXPORT_OFFICES], [w for _, w in EXPORT_OFFICES])[0]
    year = datetime.fromtimestamp(lodged_s, UTC).astimezone(_CHINA).year
    return Shipment(index, f"{office}{year}0{rng.randrange(10**9):09d}", office, lodged_s)
