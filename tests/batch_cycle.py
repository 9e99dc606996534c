"""A plain batch computation of the export cycle indicators (the oracle), from the raw events of
customs, CIPS and refunds and contract section 4, without the case topics in between."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime
from typing import Any

from services.workdays import WorkdayCalendar, local_date
from tests.batch_customs import window_key


def _t(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["time"]).timestamp()


def _earliest(
    events: list[dict[str, Any]], key: str, suffix: str
) -> dict[str, tuple[float, str, dict[str, Any]]]:
    """Per case: (time, id, data) of the earliest event of type ``*.<suffix>``."""
    out: dict[str, tuple[float, str, dict[str, Any]]] = {}
    for e in events:
        if e["type"].endswith("." + suffix):
            case, at = e["data"][key], _t(e)
            if (at, e["id"]) < out.get(case, (math.inf, ""))[:2]:
                out[case] = (at, e["id"], e["data"])
    return out


def batch(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    unique = list({(e["source"], e["id"]): e for e in events}.values())
    customs = [e for e in unique if e["type"].startswith("customs.") and "entry_id" in e["data"]]
    payments = [e for e in unique if e["type"].startswith("cips.")]
    refunds = [e for e in unique if e["type"].startswith("taxrefund.")]
    lodged = _earliest(customs, "entry_id", "lodged")
    released = {k: v[0] for k, v in _earliest(customs, "entry_id", "released").items()}
    exports = {k for k, (_, _, d) in lodged.items() if d["ie_flag"] == "E"}

    credit: dict[str, tuple[float, str]] = {}  # entry -> (earliest credit, payment)
    initiated = _earliest(payments, "uetr", "initiated")
    for uetr, (at, _, _) in _earliest(payments, "uetr", "credited").items():
        data = initiated.get(uetr, (0, "", {}))[2]
        if data.get("purpose") != "goods":
            continue
        for entry in data.get("linked_entry_ids") or []:
            credit[entry] = min(credit.get(entry, (math.inf, "")), (at, uetr))

    refund: dict[str, tuple[float, str, str]] = {}  # entry -> (earliest issue, refund, category)
    declared = _earliest(refunds, "refund_id", "declared")
    for refund_id, (at, _, _) in _earliest(refunds, "refund_id", "issued").items():
        data = declared.get(refund_id, (0, "", {}))[2]
        for entry in data.get("entry_ids") or []:
            candidate = (at, refund_id, str(data.get("mgmt_category", "unknown")))
            refund[entry] = min(refund.get(entry, (math.inf, "", "")), candidate)

    calendar = WorkdayCalendar()
    durations: dict[str, list[float]] = defaultdict(list)
    ratios: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for entry in exports & released.keys():
        rel = released[entry]
        code = {"customs_code": entry[:4]}
        for window in ("PT1H", "P1D"):
            if entry in credit:
                at = credit[entry][0]
                for d in (code, {}):
                    r = ratios[window_key("cycle.prepaid_rate", window, max(rel, at), d)]
                    r[0] += at < rel
                    r[1] += 1
                    if at >= rel:
                        durations[window_key("cycle.export_to_cash", window, at, d)].append(at - rel)
            if entry in refund:
                at, _, category = refund[entry]
                days = calendar.workdays_between(local_date(rel), local_date(at))
                if days >= 0:
                    for d in ({"mgmt_category": category}, {}):
                        key = window_key("cycle.export_to_refund", window, max(rel, at), d)
                        durations[key].append(float(days))
    out: dict[str, dict[str, Any]] = {k: {"values": sorted(v)} for k, v in durations.items()}
    out.update({k: {"numerator": n, "denominator": d} for k, (n, d) in ratios.items()})
    return out
