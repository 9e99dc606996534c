"""Realistic customs declaration lifecycles for the simulator, tests and benchmarks (pure).

Numbers from docs/simulation.md (modelling assumptions and their anchors), as named constants:
ports Nansha 5165 (sea), Baiyun airport 5141 (air), Huangpu 52xx (sea, road), rail 5130; 60 %
exports; firms 5 % AEO, 94 % general, 1 % discredited; inspection 0.5 % / 3 % / 80 % by credit
class, document review 5 %; rejections 1.5 %; 30 % of imports declared in advance of arrival;
lognormal durations calibrated by median and 90th percentile.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.engine.windows import SHANGHAI
from services.simulation import CaseEvents, Shipment, pick, shipment

__all__ = ["PORTS", "Case", "lifecycle", "simulate"]

HOUR, MINUTE, DAY = 3600.0, 60.0, 86400.0

# (customs_code, transport_mode, weight)
PORTS = [
    ("5165", "2", 0.40),
    ("5141", "5", 0.30),
    ("5208", "2", 0.12),
    ("5201", "4", 0.10),
    ("5130", "3", 0.08),
]
CREDIT = [("aeo", 0.05), ("general", 0.94), ("discredited", 0.01)]
INSPECTION_RATE = {"aeo": 0.005, "general": 0.03, "discredited": 0.80}
DOCUMENT_REVIEW = 0.05
REJECTION = 0.015
EXPORT_SHARE = 0.60
ADVANCE_SHARE = 0.30
TRADE_MODES = [("0110", 0.8), ("0615", 0.1), ("1210", 0.05), ("9610", 0.05)]


def _lognormal(rng: random.Random, median: float, p90: float) -> float:
    sigma = math.log(p90 / median) / 1.2816
    return min(rng.lognormvariate(math.log(median), sigma), 5 * p90)  # no absurd tails


@dataclass(frozen=True, slots=True)
class Case:
    entry_id: str
    events: list[dict[str, Any]]


def lifecycle(
    rng: random.Random,
    serial: int,
    start_s: float,
    source: str = "/singlewindow",
    export: Shipment | None = None,
    ie: str | None = None,
) -> Case:
    """One declaration's events (CloudEvent dicts), in event-time order; ``export``: the export
    shipment of the shared plan it declares (services/simulation.py), so that payments and refunds
    can name it; ``ie``: import or export (drawn when not given)."""
    code, mode, _ = PORTS[[p[0] for p in PORTS].index(pick(rng, [(p[0], p[2]) for p in PORTS]))]
    drawn = "E" if rng.random() < EXPORT_SHARE else "I"
    ie = ie or drawn
    year = datetime.fromtimestamp(start_s, SHANGHAI).year
    entry = f"{code}{year}{'1' if ie == 'I' else '0'}{serial % 10**9:09d}"
    if export is not None:
        ie, code, entry, start_s = "E", export.office, export.entry_id, export.lodged_s
        mode = next(m for c, m, _ in PORTS if c == code)
    credit = pick(rng, CREDIT)
    bill = (
        f"{'COSU' if mode == '2' else 'AWB'}{rng.randrange(10**10):010d}"
        if ie == "I" or mode == "2"
        else None
    )
    events = CaseEvents(entry, f"{source}/{code}")
    emit = events.emit

    lodged = start_s
    if ie == "I":
        if rng.random() < ADVANCE_SHARE:
            arrival = lodged + rng.uniform(0, 24 * HOUR)
            kind = "advance"
        else:
            arrival = lodged - _lognormal(rng, 6 * HOUR, 48 * HOUR)
            kind = "one_time"
        assert bill is not None  # an import always has its bill of lading
        events.emit_as(
            bill,
            "customs.transport.arrived",
            arrival,
            bill_no=bill,
            customs_code=code,
            ie_flag=ie,
            transport_mode=mode,
        )
    else:
        arrival, kind = lodged, "one_time"
    value = f"{_lognormal(rng, 600_000, 3_000_000):.2f}"
    emit(
        "customs.declaration.lodged",
        lodged,
        entry_id=entry,
        bill_no=bill,
        customs_code=code,
        ie_flag=ie,
        trade_mode=pick(rng, TRADE_MODES),
        transport_mode=mode,
        credit_class=credit,
        declared_value={"amount": value, "currency": "CNY"},
        consignee_uscc="91440101MA5C000" + f"{serial % 1000:03d}",
        declaration_kind=kind,
    )
    if rng.random() < REJECTION:
        emit(
            "customs.declaration.rejected",
            lodged + _lognormal(rng, MINUTE, 10 * MINUTE),
            entry_id=entry,
            reason_code=rng.choice(["R001", "R012", "R107"]),
        )
        return Case(entry, events)
    accepted = lodged + _lognormal(rng, MINUTE, 12 * MINUTE)
    emit("customs.declaration.accepted", accepted, entry_id=entry)
    risk = accepted + rng.uniform(1, 30)
    roll = rng.random()
    channel = (
        "inspection"
        if roll < INSPECTION_RATE[credit]
        else "document_review"
        if roll < INSPECTION_RATE[credit] + DOCUMENT_REVIEW
        else "auto_release"
    )
    emit("customs.declaration.risk_decided", risk, entry_id=entry, channel=channel)
    ready = max(risk, arrival) if ie == "I" else risk
    if channel == "inspection":
        ordered = max(risk, arrival) + rng.uniform(MINUTE, 30 * MINUTE)
        emit("customs.inspection.ordered", ordered, entry_id=entry)
        done = ordered + _lognormal(rng, 18 * HOUR, 72 * HOUR)
        emit(
            "customs.inspection.completed",
            done,
            entry_id=entry,
            outcome="pass" if rng.random() < 0.93 else "discrepancy",
        )
        ready = done
    elif channel == "document_review":
        ready += _lognormal(rng, 2 * HOUR, 8 * HOUR)
    if ie == "I":
        paid = accepted + _lognormal(rng, 2 * HOUR, 10 * HOUR)
        emit(
            "customs.duty.paid",
            paid,
            entry_id=entry,
            amount={"amount": f"{float(value) * 0.13:.2f}", "currency": "CNY"},
            method=rng.choice(["auto", "guarantee", "cash"]),
        )
        ready = max(ready, paid)
    released = ready + _lognormal(rng, 10 * MINUTE, HOUR)
    emit("customs.declaration.released", released, entry_id=entry)
    exited = released + (
        _lognormal(rng, 12 * HOUR, 72 * HOUR) if ie == "I" else rng.uniform(24 * HOUR, 96 * HOUR)
    )
    emit("customs.goods.exited", exited, entry_id=entry)
    events.sort(key=lambda e: e["time"])
    return Case(entry, events)


def simulate(*, cases: int, seed: int, start_s: float, span_s: float) -> list[dict[str, Any]]:
    """Every event of ``cases`` declarations lodged uniformly over ``span_s``, in event-time order.
    Exports are the shipments of the shared plan (services/simulation.py), in plan order, so that
    the CIPS and refund simulators' payments and refunds name them."""
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []
    exports = 0
    for _ in range(cases):  # random serials: another seed gives other declarations
        serial, lodged = rng.randrange(10**9), start_s + rng.uniform(0, span_s)
        plan = None
        if rng.random() < EXPORT_SHARE:
            plan, exports = shipment(seed, exports, start_s, span_s), exports + 1
        events.extend(lifecycle(rng, serial, lodged, export=plan, ie="E" if plan else "I").events)
    events.sort(key=lambda e: datetime.fromisoformat(e["time"]).timestamp())
    return events
