"""A batch computation of the cross-border release (docs/contract.md section 8), written from the
contract's words and not from services/release: the test oracle of tests/integration/test_release.py.

Input: facts (one per case and indicator: where it counts, its value, its contributor) and the
policy file read as plain YAML. Output: every cell of every window, with its status, reason and
rounded values, as the release topic must carry them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import yaml

CST = timezone(timedelta(hours=8))
KINDS = {
    "customs.release_time": ("duration", "seconds"),
    "taxrefund.processing_time": ("duration", "working_days"),
    "taxrefund.within_limit": ("ratio", "ratio"),
    "cips.credited_within_1h": ("ratio", "ratio"),
    "cips.settled_value": ("amount", "cny"),
    "cbec.release_time": ("duration", "seconds"),
}
DEFAULTS = {
    "min_cases": 10,
    "min_contributors": 3,
    "dominance_top1": 0.5,
    "dominance_top2": 0.67,
    "min_cases_quantile": 20,
}


@dataclass(frozen=True)
class Fact:
    indicator: str
    at: datetime
    dims: dict[str, str]
    value: float  # seconds, working days, or 1/0
    contributor: str
    amount: Decimal = Decimal(0)


def _start(window: str, at: datetime) -> datetime:
    local = at.astimezone(CST)
    if window == "P1D":
        return datetime(local.year, local.month, local.day, tzinfo=CST)
    return datetime(local.year, local.month, 1, tzinfo=CST)


def _key(indicator: str, window: str, start: datetime, dims: dict[str, str]) -> str:
    return f"{indicator}|{window}|{start.isoformat()}|{','.join(f'{k}={v}' for k, v in sorted(dims.items()))}"


def _round(x: Decimal, step: Decimal) -> Decimal:
    return (x / step).quantize(Decimal(1), rounding=ROUND_HALF_UP) * step


def release(policy_file: Path, facts: list[Fact]) -> dict[str, dict[str, Any]]:
    """Cell key -> {status, reason, values...} for every window the facts touch."""
    policy = yaml.safe_load(policy_file.read_text())
    rules = {**DEFAULTS, **(policy.get("rules") or {})}
    levels: dict[tuple[str, str], set[tuple[str, ...]]] = {}
    for c in policy["cells"]:
        levels.setdefault((c["indicator"], c["window"]), {()}).add(tuple(sorted(c.get("dimensions") or [])))
    out: dict[str, dict[str, Any]] = {}
    for (indicator, window), sets in levels.items():
        kind, unit = KINDS[indicator]
        mine = [f for f in facts if f.indicator == indicator]
        for start in sorted({_start(window, f.at) for f in mine}):
            inside = [f for f in mine if _start(window, f.at) == start]
            cells: dict[tuple[tuple[str, str], ...], list[Fact]] = {}
            for f in inside:
                for names in sets:
                    cells.setdefault(tuple((n, f.dims[n]) for n in names), []).append(f)
            status = {dims: _primary(kind, fs, rules) for dims, fs in cells.items()}
            _secondary(cells, status)
            for dims, fs in cells.items():
                cell: dict[str, Any] = {"status": "suppressed" if status[dims] else "released"}
                if status[dims]:
                    cell["reason"] = status[dims]
                else:
                    cell.update(_values(kind, unit, fs, rules["min_cases_quantile"]))
                out[_key(indicator, window, start, dict(dims))] = cell
    return out


def _primary(kind: str, facts: list[Fact], rules: dict[str, Any]) -> str | None:
    if len(facts) < rules["min_cases"]:
        return "min_cases"
    if len({f.contributor for f in facts}) < rules["min_contributors"]:
        return "min_contributors"
    if kind == "amount":
        per: dict[str, Decimal] = {}
        for f in facts:
            per[f.contributor] = per.get(f.contributor, Decimal(0)) + f.amount
        shares = sorted(per.values(), reverse=True)
        total = sum(shares)
        if shares[0] / total > Decimal(str(rules["dominance_top1"])):
            return "dominance"
        if sum(shares[:2]) / total > Decimal(str(rules["dominance_top2"])):
            return "dominance"
    return None


def _under(total: tuple[tuple[str, str], ...], cell: tuple[tuple[str, str], ...]) -> bool:
    names = {k for k, _ in cell}
    return {k for k, _ in total} < names and set(total) <= set(cell)


def _secondary(cells: dict[Any, list[Fact]], status: dict[Any, str | None]) -> None:
    """Until no released total has exactly one suppressed cell under it, among the cells of any
    one finer dimension set."""
    while True:
        for total in sorted(cells):
            if status[total]:
                continue
            finer = {tuple(k for k, _ in c) for c in cells if _under(total, c)}
            hit = False
            for names in sorted(finer):
                group = [c for c in cells if tuple(k for k, _ in c) == names and _under(total, c)]
                off = [c for c in group if status[c]]
                if len(off) == 1:
                    on = sorted((c for c in group if not status[c]), key=lambda c: (len(cells[c]), c))
                    status[on[0] if on else total] = "secondary"
                    hit = True
                    break
            if hit:
                break
        else:
            return


def _values(kind: str, unit: str, facts: list[Fact], quantile: int) -> dict[str, Any]:
    n = len(facts)
    five = Decimal(5)
    if kind == "amount":
        total = sum((f.amount for f in facts), Decimal(0))
        exponent = total.adjusted() - 2
        return {"sum": format(_round(total, Decimal(1).scaleb(exponent)), "f")}
    if kind == "ratio":
        num = int(_round(Decimal(sum(1 for f in facts if f.value)), five))
        den = int(_round(Decimal(n), five))
        return {
            "numerator": num,
            "denominator": den,
            "value": float(_round(Decimal(num) / Decimal(den), Decimal("0.01"))),
        }

    def shown(v: float) -> float | int:
        if unit == "seconds":
            return int(_round(Decimal(repr(v)), Decimal(360)))
        return float(_round(Decimal(repr(v)), Decimal("0.1")))

    values = sorted(f.value for f in facts)
    out: dict[str, Any] = {"count": int(_round(Decimal(n), five)), "mean": shown(sum(values) / n)}
    if n >= quantile:
        out["p50"] = shown(values[math.ceil(0.5 * n) - 1])
        out["p90"] = shown(values[math.ceil(0.9 * n) - 1])
    return out


def recoverable(cells: dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
    """(total, cell) pairs where a suppressed cell is alone under a released total at its level."""
    parsed: dict[str, tuple[tuple[str, str, str], Any, str]] = {}
    for key, cell in cells.items():
        indicator, window, start, dims = key.split("|", 3)
        pairs = tuple(sorted(tuple(p.split("=", 1)) for p in dims.split(","))) if dims else ()
        parsed[key] = ((indicator, window, start), pairs, cell["status"])
    found = []
    for tkey, (twin, tdims, tstatus) in parsed.items():
        if tstatus != "released":
            continue
        groups: dict[tuple[str, ...], list[str]] = {}
        for key, (win, cell_dims, _) in parsed.items():
            if win == twin and _under(tdims, cell_dims):
                groups.setdefault(tuple(k for k, _ in cell_dims), []).append(key)
        for keys in groups.values():
            off = [k for k in keys if parsed[k][2] == "suppressed"]
            if len(off) == 1:
                found.append((tkey, off[0]))
    return found


__all__ = ["Fact", "recoverable", "release"]
