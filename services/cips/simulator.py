"""Realistic CIPS payments (pure), from docs/simulation.md (modelling assumptions and anchors):
customer transfers 70 % of count, FI transfers 30 % (larger values, heavy-tailed lognormal);
purposes goods 60 %, services 20 %, capital 15 %, other 5 %; initiation to credit: 40 % within
5 minutes, 55 % within 30, 75 % within an hour, 95 % within a business day, a tail to 3 days;
the CIPS leg settles in 1-10 s; 0.75 % rejected, 0.2 % returned; traffic follows the operating
day (most of it 08:30-17:00 Beijing time, smaller night windows)."""

from __future__ import annotations

import math
import random
import uuid
from datetime import datetime, timedelta
from typing import Any

from services.engine.windows import SHANGHAI
from services.simulation import CaseEvents, Shipment, shipment

__all__ = ["lifecycle", "simulate"]

PURPOSES = [("goods", 0.60), ("services", 0.20), ("capital", 0.15), ("other", 0.05)]
BANKS = ["ICBKCNBJGDG", "BKCHCNBJ400", "PCBCCNBJGDG", "CMBCCNBS", "HSBCHKHHHKH", "DEUTDEFF", "CITIUS33"]
# (upper bound of credit time in seconds, cumulative share)
SPEED = [(300, 0.40), (1800, 0.55), (3600, 0.75), (86400, 0.95), (3 * 86400, 1.0)]
REJECTED, RETURNED = 0.0075, 0.002
# payments for export shipments: share of cases, prepaid, naming two shipments, paid in instalments
LINKED, PREPAID, TWO_SHIPMENTS, INSTALMENTS = 0.5, 0.12, 0.1, 0.08


def _credit_seconds(rng: random.Random) -> float:
    roll, low = rng.random(), 20.0
    for high, share in SPEED:
        if roll <= share:
            return rng.uniform(low, high)
        low = high
    return rng.uniform(low, SPEED[-1][0])


def _operating_day(rng: random.Random, day_start_s: float) -> float:
    """A moment of a Beijing day: 80 % in business hours, the rest in the night windows."""
    if rng.random() < 0.8:
        return day_start_s + rng.uniform(8.5 * 3600, 17 * 3600)
    return day_start_s + rng.choice([rng.uniform(17 * 3600, 24 * 3600), rng.uniform(0, 8.5 * 3600)])


def lifecycle(
    rng: random.Random, initiated_s: float, linked: list[str] | None = None
) -> list[dict[str, Any]]:
    """One payment's events; ``linked``: the export entries a goods payment names."""
    uetr = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    fi = rng.random() < 0.30
    median = 10_000_000 if fi else 1_000_000
    amount = f"{min(rng.lognormvariate(math.log(median), 2.1), 5e10):.2f}"
    events = CaseEvents(uetr, "/cips/gateway", uetr=uetr)
    emit = events.emit

    money = {"amount": amount, "currency": "CNY"}
    purpose = rng.choices([p for p, _ in PURPOSES], [w for _, w in PURPOSES])[0]
    emit("cips.payment.initiated", initiated_s, msg_type="fi" if fi else "customer",
         debtor_agent=rng.choice(BANKS), creditor_agent=rng.choice(BANKS),
         participant_type=rng.choice(["direct", "indirect"]), amount=money,
         purpose="goods" if linked else purpose,
         **({"linked_entry_ids": linked} if linked else {}))  # fmt: skip
    submitted = initiated_s + rng.uniform(1, 60)
    emit("cips.payment.submitted", submitted)
    if rng.random() < REJECTED:
        emit(
            "cips.payment.rejected",
            submitted + rng.uniform(1, 30),
            reason_code=rng.choice(["AC04", "AM04", "RR04"]),
        )
        return events
    emit("cips.payment.settled", submitted + rng.uniform(1, 10))
    credited = initiated_s + max(_credit_seconds(rng), submitted - initiated_s + 11)
    emit("cips.payment.credited", credited)
    if rng.random() < RETURNED:
        emit(
            "cips.payment.returned",
            credited + rng.uniform(86400, 3 * 86400),
            reason_code="AC01",
            amount=money,
        )
    return events


def _for_exports(rng: random.Random, shipments: list[Shipment]) -> float:
    """When the goods payment for ``shipments`` starts: mostly days after the goods left (median a
    week, at most 20 days: the simulated month stays within the engine's window retention),
    sometimes before they were declared (prepaid)."""
    if rng.random() < PREPAID:
        return min(s.lodged_s for s in shipments) - rng.uniform(2 * 3600, 7 * 86400)
    return max(s.lodged_s for s in shipments) + min(rng.lognormvariate(math.log(7 * 86400), 0.7), 20 * 86400)


def simulate(*, cases: int, seed: int, start_s: float, span_s: float) -> list[dict[str, Any]]:
    """Every event of ``cases`` payments initiated over ``span_s``, shaped by the operating day.
    Half of them pay for export shipments of the shared plan (services/simulation.py), in plan
    order: one shipment, sometimes two, sometimes paid in two instalments."""
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []
    first_day = datetime.fromtimestamp(start_s, SHANGHAI).replace(hour=0, minute=0, second=0, microsecond=0)
    days = max(1, round(span_s / 86400))
    planned = 0
    for _ in range(cases):
        if rng.random() < LINKED:
            count = 2 if rng.random() < TWO_SHIPMENTS else 1
            shipments = [shipment(seed, planned + i, start_s, span_s) for i in range(count)]
            planned += count
            initiated = _for_exports(rng, shipments)
            linked = [s.entry_id for s in shipments]
            events.extend(lifecycle(rng, initiated, linked))
            if rng.random() < INSTALMENTS:  # the balance, later
                events.extend(lifecycle(rng, initiated + rng.uniform(86400, 5 * 86400), linked))
            continue
        day = first_day + timedelta(days=rng.randrange(days))
        events.extend(lifecycle(rng, _operating_day(rng, day.timestamp())))
    events.sort(key=lambda e: datetime.fromisoformat(e["time"]).timestamp())
    return events
