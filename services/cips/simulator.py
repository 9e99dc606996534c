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

__all__ = ["lifecycle", "simulate"]

PURPOSES = [("goods", 0.60), ("services", 0.20), ("capital", 0.15), ("other", 0.05)]
BANKS = ["ICBKCNBJGDG", "BKCHCNBJ400", "PCBCCNBJGDG", "CMBCCNBS", "HSBCHKHHHKH", "DEUTDEFF", "CITIUS33"]
# (upper bound of credit time in seconds, cumulative share)
SPEED = [(300, 0.40), (1800, 0.55), (3600, 0.75), (86400, 0.95), (3 * 86400, 1.0)]
REJECTED, RETURNED = 0.0075, 0.002


def _credit_seconds(rng: random.Random) -> float:
    roll, low = rng.random(), 20.0
    for high, share in SPEED:
        if roll <= share:
            return rng.uniform(low, high)
        low = high
    return rng.uniform(low, SPEED[-1][0])


def _iso(at_s: float) -> str:
    return datetime.fromtimestamp(at_s, SHANGHAI).isoformat(timespec="milliseconds")


def _operating_day(rng: random.Random, day_start_s: float) -> float:
    """A moment of a Beijing day: 80 % in business hours, the rest in the night windows."""
    if rng.random() < 0.8:
        return day_start_s + rng.uniform(8.5 * 3600, 17 * 3600)
    return day_start_s + rng.choice([rng.uniform(17 * 3600, 24 * 3600), rng.uniform(0, 8.5 * 3600)])


def lifecycle(rng: random.Random, initiated_s: float) -> list[dict[str, Any]]:
    uetr = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    fi = rng.random() < 0.30
    median = 10_000_000 if fi else 1_000_000
    amount = f"{min(rng.lognormvariate(math.log(median), 2.1), 5e10):.2f}"
    events: list[dict[str, Any]] = []

    def emit(type_: str, at_s: float, **data: Any) -> None:
        events.append({
            "specversion": "1.0", "id": f"{uetr}-{len(events)}", "source": "/cips/gateway",
            "type": type_, "time": _iso(at_s), "subject": uetr, "data": {"uetr": uetr, **data},
        })  # fmt: skip

    money = {"amount": amount, "currency": "CNY"}
    linked = [f"5165{2025}0{rng.randrange(10**9):09d}"] if rng.random() < 0.6 else None
    emit("cips.payment.initiated", initiated_s, msg_type="fi" if fi else "customer",
         debtor_agent=rng.choice(BANKS), creditor_agent=rng.choice(BANKS),
         participant_type=rng.choice(["direct", "indirect"]), amount=money,
         purpose=rng.choices([p for p, _ in PURPOSES], [w for _, w in PURPOSES])[0],
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


def simulate(*, cases: int, seed: int, start_s: float, span_s: float) -> list[dict[str, Any]]:
    """Every event of ``cases`` payments initiated over ``span_s``, shaped by the operating day."""
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []
    first_day = datetime.fromtimestamp(start_s, SHANGHAI).replace(hour=0, minute=0, second=0, microsecond=0)
    days = max(1, round(span_s / 86400))
    for _ in range(cases):
        day = first_day + timedelta(days=rng.randrange(days))
        events.extend(lifecycle(rng, _operating_day(rng, day.timestamp())))
    events.sort(key=lambda e: datetime.fromisoformat(e["time"]).timestamp())
    return events
