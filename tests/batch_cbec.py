"""A plain batch computation of the CBEC indicators (the oracle), from contract 2.4 and 4."""

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
    first: dict[str, dict[str, float]] = defaultdict(dict)
    earliest: dict[tuple[str, str], tuple[float, str, dict[str, Any]]] = {}
    for e in unique:
        kind = e["type"].split(".")[1]
        name = f"s{e['data']['status']}" if kind == "list" and e["type"].endswith("status") else kind
        at = _t(e)
        first[e["subject"]][name] = min(at, first[e["subject"]].get(name, math.inf))
        if (at, e["id"]) < earliest.get((e["subject"], name), (math.inf, ""))[:2]:
            earliest[(e["subject"], name)] = (at, e["id"], e["data"])
    durations: dict[str, list[float]] = defaultdict(list)
    ratios: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for subject, t in first.items():
        lst = earliest.get((subject, "list"), (0, "", {}))[2]
        order = earliest.get((subject, "order"), (0, "", {}))[2]
        ie = lst.get("ie_flag") or order.get("ie_flag") or "unknown"
        dims = {"supervision_mode": lst.get("supervision_mode", "unknown"), "ie_flag": ie}
        for window in ("PT1H", "P1D"):
            if "s120" in t and "s800" in t and t["s800"] >= t["s120"]:
                for d in (dims, {}):
                    durations[window_key("cbec.release_time", window, t["s800"], d)].append(
                        round((t["s800"] - t["s120"]) * 1000) / 1000
                    )
            decision = min(t.get("s100", math.inf), t.get("s120", math.inf))
            if decision == math.inf:
                continue
            ok = t.get("order", math.inf) < decision and t.get("waybill", math.inf) < decision
            if ie in ("I", "unknown"):
                pay = earliest.get((subject, "payment"), (0, "", {}))[2]
                ok = ok and t.get("payment", math.inf) < decision
                ok = ok and bool(pay) and bool(order)
                ok = ok and Decimal(pay["amount"]["amount"]) == Decimal(order["goods_value"]["amount"])
            for d in (dims, {}):
                r = ratios[window_key("cbec.doc_match_rate", window, decision, d)]
                r[0] += ok
                r[1] += 1
    out: dict[str, dict[str, Any]] = {k: {"values": sorted(v)} for k, v in durations.items()}
    out.update({k: {"numerator": n, "denominator": d} for k, (n, d) in ratios.items()})
    return out
