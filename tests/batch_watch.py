"""A plain batch computation of the SLA watch (the oracle), from docs/contract.md section 9 directly:
for every case of a corpus, its flag (rule, state, since) at a clock. Working days are counted with
chinese-calendar itself, one day at a time; the rules are the contract's table, written out here."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from typing import Any

import chinese_calendar

CST = timezone(timedelta(hours=8))
HOUR, MINUTE = 3600.0, 60.0

Rule = tuple[str, tuple[str, ...], tuple[str, ...], float, float, str, Callable[[dict[str, Any]], bool]]

RULES: dict[str, list[Rule]] = {
    "taxrefund": [
        ("refund_acceptance", ("declared",), ("accepted", "rejected"), 1, 2, "wd", lambda a: True),
        ("refund_issue_categories_1_2", ("accepted",), ("issued", "rejected"), 2, 3, "wd",
         lambda a: a.get("mgmt_category") in (1, 2)),
        ("refund_issue", ("accepted",), ("issued", "rejected"), 4, 5, "wd",
         lambda a: a.get("mgmt_category") not in (1, 2)),
        ("refund_credit", ("issued",), ("credited",), 1, 2, "wd", lambda a: True),
    ],
    "cips": [
        ("credit_within_1h", ("initiated",), ("credited", "rejected", "returned"), 50 * MINUTE, 60 * MINUTE,
         "s", lambda a: True),
    ],
}  # fmt: skip
SUBJECT = {"taxrefund": "refund_id", "cips": "uetr"}
FIRST = {"taxrefund": "declared", "cips": "initiated"}  # the event whose data carries the attributes


def _workday_begins(start_s: float, n: int) -> float:
    """00:00 (UTC+8) of the n-th working day after the date of ``start_s``."""
    d: date = datetime.fromtimestamp(start_s, CST).date()
    seen = 0
    while seen < n:
        d += timedelta(days=1)
        if chinese_calendar.is_workday(d):
            seen += 1
    return datetime(d.year, d.month, d.day, tzinfo=CST).timestamp()


def flags(service: str, events: list[dict[str, Any]], clock_s: float) -> dict[str, tuple[str, str, float]]:
    """Case id -> (rule, state, since) of every case flagged at ``clock_s``."""
    unique = {(e["source"], e["id"]): e for e in events}.values()
    times: dict[str, dict[str, float]] = defaultdict(dict)
    first: dict[str, tuple[float, str, dict[str, Any]]] = {}
    for e in unique:
        case, name = e["subject"], e["type"].rsplit(".", 1)[1]
        at = datetime.fromisoformat(e["time"]).timestamp()
        times[case][name] = min(at, times[case].get(name, math.inf))
        if name == FIRST[service] and (at, e["id"]) < first.get(case, (math.inf, "", {}))[:2]:
            first[case] = (at, e["id"], e["data"])
    out: dict[str, tuple[str, str, float]] = {}
    for case, m in times.items():
        attributes = first[case][2] if case in first else {}
        candidates = []
        for name, starts, ends, warning, due, unit, when in RULES[service]:
            start = next((m[s] for s in starts if s in m), None)
            if start is None or not when(attributes):
                continue
            if unit == "s":
                warn_at, due_at = start + warning, start + due
            else:
                warn_at, due_at = _workday_begins(start, int(warning)), _workday_begins(start, int(due) + 1)
            end = min((m[e] for e in ends if e in m), default=None)
            if end is not None:
                if end >= warn_at:
                    candidates.append((start, name, "cleared", end))
            elif clock_s >= due_at:
                candidates.append((start, name, "breached", due_at))
            elif clock_s >= warn_at:
                candidates.append((start, name, "warning", warn_at))
        if candidates:
            latest = max(c[0] for c in candidates)
            start, name, state, since = next(c for c in candidates if c[0] == latest)
            out[case] = (name, state, since)
    return out
