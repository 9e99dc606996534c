"""A plain batch computation of the CIPS indicators (the oracle), from contract 2.3 and 4;
amounts summed as exact decimals."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime
from decimal import Decimal
from typing import Any

from tests.batch_customs import window_key


def _t(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["time"]).timestamp()


def batch(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    unique = {(e["source"], e["id"]): e for e in events}.values()
    times: dict[str, dict[str, float]] = defaultdict(dict)
    initiated: dict[str, tuple[float, str, dict[str, Any]]] = {}
    for e in unique:
        uetr, name, at = e["data"]["uetr"], e["type"].rsplit(".", 1)[1], _t(e)
        times[uetr][name] = min(at, times[uetr].get(name, math.inf))
        if name == "initiated" and (at, e["id"]) < initiated.get(uetr, (math.inf, ""))[:2]:
            initiated[uetr] = (at, e["id"], e["data"])
    durations: dict[str, list[float]] = defaultdict(list)
    ratios: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    sums: dict[str, Decimal] = defaultdict(Decimal)
    for uetr, m in times.items():
        data = initiated.get(uetr, (0, "", {}))[2]
        msg, purpose = data.get("msg_type", "unknown"), data.get("purpose", "unknown")
        full = {"msg_type": msg, "purpose": purpose}
        for window in ("PT1H", "P1D"):
            if "initiated" in m and "credited" in m and m["credited"] >= m["initiated"]:
                seconds = round((m["credited"] - m["initiated"]) * 1000) / 1000
                for d in (full, {}):
                    durations[window_key("cips.credit_time", window, m["credited"], d)].append(seconds)
                for d in ({"msg_type": msg}, {}):
                    r = ratios[window_key("cips.credited_within_1h", window, m["credited"], d)]
                    r[0] += seconds <= 3600
                    r[1] += 1
            if "settled" in m and data:
                for d in (full, {}):
                    sums[window_key("cips.settled_value", window, m["settled"], d)] += Decimal(
                        data["amount"]["amount"]
                    )
    out: dict[str, dict[str, Any]] = {k: {"values": sorted(v)} for k, v in durations.items()}
    out.update({k: {"numerator": n, "denominator": d} for k, (n, d) in ratios.items()})
    out.update({k: {"sum": v} for k, v in sums.items()})
    return out
