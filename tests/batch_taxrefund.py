"""A plain batch computation of the refund indicators (the oracle), from docs/contract.md 2.2 and 4
directly, with working days counted by chinese-calendar itself (A < d <= B)."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from typing import Any

import chinese_calendar

from tests.batch_customs import window_key

CST = timezone(timedelta(hours=8))
LIMITS = {1: 5, 2: 10, 3: 15, 4: 20}


def _t(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["time"]).timestamp()


def _workdays(a: date, b: date) -> int:
    return sum(chinese_calendar.is_workday(a + timedelta(days=i)) for i in range(1, (b - a).days + 1))


def batch(
    events: list[dict[str, Any]], workdays: Callable[[date, date], int] = _workdays
) -> dict[str, dict[str, Any]]:
    unique = {(e["source"], e["id"]): e for e in events}.values()
    times: dict[str, dict[str, float]] = defaultdict(dict)
    declared: dict[str, tuple[float, str, int]] = {}
    for e in unique:
        rid, name, at = e["data"]["refund_id"], e["type"].rsplit(".", 1)[1], _t(e)
        times[rid][name] = min(at, times[rid].get(name, math.inf))
        if name == "declared" and (at, e["id"]) < declared.get(rid, (math.inf, "", 0))[:2]:
            declared[rid] = (at, e["id"], e["data"]["mgmt_category"])
    durations: dict[str, list[float]] = defaultdict(list)
    ratios: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for rid, m in times.items():
        if "accepted" not in m or "issued" not in m:
            continue
        a = datetime.fromtimestamp(m["accepted"], CST).date()
        b = datetime.fromtimestamp(m["issued"], CST).date()
        if b < a:
            continue
        wd = workdays(a, b)
        category = declared[rid][2] if rid in declared else None
        dims = {"mgmt_category": str(category) if category else "unknown"}
        for window in ("PT1H", "P1D"):
            for d in (dims, {}):
                durations[window_key("taxrefund.processing_time", window, m["issued"], d)].append(float(wd))
                if "flagged" not in m and category in LIMITS:
                    r = ratios[window_key("taxrefund.within_limit", window, m["issued"], d)]
                    r[0] += wd <= LIMITS[category]
                    r[1] += 1
    out: dict[str, dict[str, Any]] = {k: {"values": sorted(v)} for k, v in durations.items()}
    out.update({k: {"numerator": n, "denominator": d} for k, (n, d) in ratios.items()})
    return out
