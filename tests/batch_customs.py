"""A plain batch computation of the customs indicators over a list of CloudEvents: the oracle the
streaming pipeline is checked against. Written from docs/contract.md sections 2.1 and 4 directly, not
from the service's code."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

CST = timezone(timedelta(hours=8))
WINDOWS = {"PT1H": 3600, "P1D": 86400}
STAGES = {
    "lodged_to_accepted": ("lodged", "accepted"),
    "accepted_to_released": ("accepted", "released"),
    "inspection": ("inspection_ordered", "inspection_completed"),
    "released_to_exited": ("released", "exited"),
    "arrival_to_lodged": ("arrival", "lodged"),
}
MILESTONE = {
    "customs.declaration.lodged": "lodged",
    "customs.declaration.accepted": "accepted",
    "customs.declaration.rejected": "rejected",
    "customs.declaration.risk_decided": "risk",
    "customs.inspection.ordered": "inspection_ordered",
    "customs.inspection.completed": "inspection_completed",
    "customs.duty.paid": "duty_paid",
    "customs.declaration.released": "released",
    "customs.goods.exited": "exited",
}


def _t(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["time"]).timestamp()


def window_key(indicator: str, window: str, at: float, dims: dict[str, str]) -> str:
    size = WINDOWS[window]
    start = math.floor((at + 8 * 3600) / size) * size - 8 * 3600
    iso = datetime.fromtimestamp(start, CST).isoformat()
    return f"{indicator}|{window}|{iso}|{','.join(f'{k}={v}' for k, v in sorted(dims.items()))}"


def batch(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Expected indicator values per key: durations as sorted value lists, ratios as (num, den)."""
    unique = {(e["source"], e["id"]): e for e in events}.values()
    arrival: dict[str, float] = {}
    times: dict[str, dict[str, float]] = defaultdict(dict)
    lodged: dict[str, tuple[float, str, dict[str, Any]]] = {}
    channel: dict[str, tuple[float, str, str]] = {}
    for e in unique:
        at, d = _t(e), e["data"]
        if e["type"] == "customs.transport.arrived":
            arrival[d["bill_no"]] = min(at, arrival.get(d["bill_no"], math.inf))
            continue
        m = times[d["entry_id"]]
        name = MILESTONE[e["type"]]
        m[name] = min(at, m.get(name, math.inf))
        if (
            e["type"] == "customs.declaration.lodged"
            and (at, e["id"]) < lodged.get(d["entry_id"], (math.inf, ""))[:2]
        ):
            lodged[d["entry_id"]] = (at, e["id"], d)
        if (
            e["type"] == "customs.declaration.risk_decided"
            and (at, e["id"]) < channel.get(d["entry_id"], (math.inf, ""))[:2]
        ):
            channel[d["entry_id"]] = (at, e["id"], d["channel"])
    durations: dict[str, list[float]] = defaultdict(list)
    ratios: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for entry, m in times.items():
        ie = "I" if entry[8] == "1" else "E"
        attrs = lodged.get(entry, (0, "", {}))[2]
        bill = attrs.get("bill_no")
        if bill in arrival:
            m["arrival"] = arrival[bill]
        start = m.get("arrival") if ie == "I" and "arrival" in m else m.get("lodged")
        measures: list[tuple[str, float, dict[str, str], float]] = []
        if "released" in m and start is not None and m["released"] >= start:
            dims = {
                "ie_flag": ie,
                "customs_code": entry[:4],
                "transport_mode": attrs.get("transport_mode", "unknown"),
            }
            measures.append(("customs.release_time", m["released"], dims, m["released"] - start))
        for stage, (a, b) in STAGES.items():
            if a in m and b in m and m[b] >= m[a]:
                measures.append(("customs.stage_time", m[b], {"stage": stage, "ie_flag": ie}, m[b] - m[a]))
        for indicator, at, dims, value in measures:
            for window in WINDOWS:
                for d in (dims, {}):
                    durations[window_key(indicator, window, at, d)].append(round(value * 1000) / 1000)
        if entry in channel and "risk" in m:
            dims = {"ie_flag": ie, "credit_class": attrs.get("credit_class", "unknown")}
            for window in WINDOWS:
                for d in (dims, {}):
                    r = ratios[window_key("customs.inspection_rate", window, m["risk"], d)]
                    r[0] += channel[entry][2] == "inspection"
                    r[1] += 1
    out: dict[str, dict[str, Any]] = {k: {"values": sorted(v)} for k, v in durations.items()}
    out.update({k: {"numerator": n, "denominator": d} for k, (n, d) in ratios.items()})
    return out


def compare(expected: dict[str, dict[str, Any]], latest: dict[str, dict[str, Any]]) -> list[str]:
    """Differences between the oracle and the latest indicator records (empty when they agree)."""
    problems = []
    for key, want in expected.items():
        got = latest.get(key)
        if got is None:
            problems.append(f"{key}: no record")
            continue
        if "values" in want:
            xs = want["values"]
            if got["count"] != len(xs):
                problems.append(f"{key}: count {got['count']} != {len(xs)}")
                continue
            mean = sum(xs) / len(xs)
            if not math.isclose(got["mean"], mean, rel_tol=1e-9, abs_tol=1e-9):
                problems.append(f"{key}: mean {got['mean']} != {mean}")
            for q, field in ((0.5, "p50"), (0.9, "p90"), (0.95, "p95"), (0.99, "p99")):
                exact = xs[math.floor(q * (len(xs) - 1))]
                if abs(got[field] - exact) > 0.01 * exact + 1e-9:
                    problems.append(f"{key}: {field} {got[field]} not within 1% of {exact}")
        elif "sum" in want:
            if Decimal(got["sum"]) != want["sum"]:
                problems.append(f"{key}: sum {got['sum']} != {want['sum']}")
        elif (got["numerator"], got["denominator"]) != (want["numerator"], want["denominator"]):
            problems.append(
                f"{key}: {got['numerator']}/{got['denominator']} != {want['numerator']}/{want['denominator']}"
            )
    for key, got in latest.items():
        if key not in expected and got["count"] != 0:
            problems.append(f"{key}: unexpected record with count {got['count']}")
    return problems
