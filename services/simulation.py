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
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache

__all__ = ["EXPORT_OFFICES", "Shipment", "shipment"]

# customs offices that declare exports, with their share (docs/simulation.md: the customs ports)
EXPORT_OFFICES = [("5165", 0.40), ("5141", 0.30), ("5208", 0.12), ("5201", 0.10), ("5130", 0.08)]
_CHINA = timezone(timedelta(hours=8))
_GOLDEN = 0.6180339887498949


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
