"""Realistic cross-border e-commerce orders (pure), from docs/simulation.md (assumptions, anchors):
55 % imports (1210 bonded 60 %, 9610 40 %), exports 9610 70 %, 9710 15 %, 9810 15 %; 98 % of lists
find their three documents in order at the first decision (the rest: a document late, or a payment
that differs, and the list is rejected, 100); list accepted (120) to released (800) median 30 s,
p95 10 min; inspection (500) 1 %, detention (501-599) 0.1 %, sent back (700) 0.05 %; 3 % of released
imports returned within 30 days; export lists closed (899) 4-48 h after release. Days that are
11 November carry four times the orders (the 11.11 peak) when the span covers one.
"""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta
from typing import Any

from services.contract.fields import resident_id_check
from services.engine.windows import SHANGHAI
from services.simulation import CaseEvents, pick

__all__ = ["fake_person", "lifecycle", "simulate"]

IMPORT_MODES = [("1210", 0.6), ("9610", 0.4)]
EXPORT_MODES = [("9610", 0.7), ("9710", 0.15), ("9810", 0.15)]
PLATFORMS = ["4401986ABC", "4401986XYZ", "4403966TMA", "3301961JDC"]
MISMATCH, INSPECTION, DETENTION, SENT_BACK, RETURN = 0.02, 0.01, 0.001, 0.0005, 0.03


def fake_person(order_no: str) -> dict[str, str]:
    """Buyer and consignee fields that are plainly fake but valid (contract 2.4): region 000000 in
    the identity card number (no such region), 100 mobile prefix (none issued), test names."""
    n = int(order_no[-8:]) if order_no[-8:].isdigit() else 0
    birth = datetime(1970, 1, 1) + timedelta(days=n % 15000)
    body = f"000000{birth:%Y%m%d}{n % 1000:03d}"
    return {
        "buyer_reg_no": f"TESTREG{n:08d}",
        "buyer_name": f"Test Buyer {n:08d}",
        "buyer_id_type": "1",
        "buyer_id_number": body + resident_id_check(body),
        "buyer_phone": f"100{n:08d}",
        "consignee_name": f"Test Consignee {n:08d}",
        "consignee_phone": f"100{(n * 7) % 10**8:08d}",
        "consignee_address": f"{n % 999 + 1} Example Road, Test District {n:08d}",
    }


def lifecycle(rng: random.Random, start_s: float) -> list[dict[str, Any]]:
    ie = "I" if rng.random() < 0.55 else "E"
    mode = pick(rng, IMPORT_MODES if ie == "I" else EXPORT_MODES)
    ebp, order_no = rng.choice(PLATFORMS), f"SO{rng.randrange(10**14):014d}"
    subject, invt = (
        f"{ebp}:{order_no}",
        f"5141{datetime.fromtimestamp(start_s).year}{ie}{rng.randrange(10**9):09d}",
    )
    value = f"{min(rng.lognormvariate(math.log(300 if ie == 'I' else 150), 0.9), 5000):.2f}"
    events = CaseEvents(subject, f"/ceb/{ebp}", order_no=order_no, ebp_code=ebp)
    emit = events.emit

    money = {"amount": value, "currency": "CNY"}
    listed = start_s + rng.uniform(60, 1800)
    decided = listed + rng.uniform(1, 60)
    fault = rng.choice(["waybill", "payment", "amount"]) if rng.random() < MISMATCH else None
    person = fake_person(order_no) if ie == "I" else {}  # import orders name their buyer
    emit("cbec.order.declared", start_s, ebc_code="4401960ABC", ie_flag=ie, goods_value=money, **person)
    if ie == "I":
        paid = decided + rng.uniform(1, 600) if fault == "payment" else start_s + rng.uniform(1, 60)
        amount = {"amount": f"{float(value) + 1:.2f}", "currency": "CNY"} if fault == "amount" else money
        emit("cbec.payment.declared", paid, pay_code="312226T001", amount=amount)
    in_time = start_s + rng.uniform(5, min(600.0, listed - start_s - 1))  # before the list is declared
    waybill = decided + rng.uniform(1, 600) if fault == "waybill" else in_time
    emit(
        "cbec.waybill.declared",
        waybill,
        logistics_code="4401984SFX",
        logistics_no=f"SF{rng.randrange(10**12)}",
    )
    emit("cbec.list.declared", listed, invt_no=invt, customs_code="5141", supervision_mode=mode, ie_flag=ie,
         total_value=money)  # fmt: skip
    if (fault in ("payment", "amount") and ie == "I") or fault == "waybill":
        emit("cbec.list.status", decided, invt_no=invt, status=100)
        return events
    emit("cbec.list.status", decided, invt_no=invt, status=120)
    release = decided + min(rng.lognormvariate(math.log(30), 1.8), 6 * 3600)
    roll = rng.random()
    if roll < SENT_BACK:
        emit("cbec.list.status", release, invt_no=invt, status=700)
        return events
    if roll < SENT_BACK + DETENTION:
        emit("cbec.list.status", decided + 60, invt_no=invt, status=rng.randint(501, 599))
        release += rng.uniform(86400, 5 * 86400)
    elif roll < SENT_BACK + DETENTION + INSPECTION:
        emit("cbec.list.status", decided + 30, invt_no=invt, status=500)
        release += rng.uniform(3600, 24 * 3600)
    emit("cbec.list.status", release, invt_no=invt, status=800)
    if ie == "E":
        emit("cbec.list.status", release + rng.uniform(4 * 3600, 48 * 3600), invt_no=invt, status=899)
    elif rng.random() < RETURN:
        emit("cbec.return.requested", release + rng.uniform(86400, 30 * 86400), invt_no=invt)
    events.sort(key=lambda e: e["time"])
    return events


def simulate(*, cases: int, seed: int, start_s: float, span_s: float) -> list[dict[str, Any]]:
    """Every event of ``cases`` orders over ``span_s``, with the 11.11 peak when it is covered."""
    rng = random.Random(seed)
    first = datetime.fromtimestamp(start_s, SHANGHAI)
    days = [first + timedelta(days=i) for i in range(max(1, math.ceil(span_s / 86400)))]
    weights = [4.0 if (d.month, d.day) == (11, 11) else 1.0 for d in days]
    events: list[dict[str, Any]] = []
    for _ in range(cases):
        day = rng.choices(days, weights)[0]
        events.extend(lifecycle(rng, day.timestamp() + rng.uniform(0, min(span_s, 86400))))
    events.sort(key=lambda e: datetime.fromisoformat(e["time"]).timestamp())
    return events
