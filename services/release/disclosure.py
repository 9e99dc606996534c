"""Disclosure control of one window (docs/contract.md section 8), pure: cases in, decisions out.

A window (one indicator, a day or a calendar month) is decided whole, once it is final, because the
rules join its cells: a total with exactly one suppressed cell under it would give that cell away
by subtraction, so secondary suppression must see every cell of the window at once. The steps:

1. group the window's cases into the cells the policy names, plus the rollup over all;
2. exact values per cell (count, distinct contributors, mean and nearest-rank percentiles, ratio
   numerator and denominator, exact decimal sum and the shares of the largest contributors);
3. primary suppression: ``min_cases``, then ``min_contributors``, then ``dominance`` (amounts);
4. secondary suppression until no released total has exactly one suppressed cell under it at any
   finer level the policy releases: the smallest released cell there (by count, then key) goes
   too, or the total itself when nothing else is under it;
5. rounding of what is released (counts to 5, seconds to 360, working days to 0.1, yuan to three
   significant digits, ratios recomputed from the rounded counts); ``p50``/``p90`` only from
   ``min_cases_quantile`` cases.

The rounding uses decimal arithmetic with halves rounded up, so a partner (or a test oracle)
recomputing a value gets the same digits.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from services.engine.windows import SHANGHAI, Dims, Kind, Unit
from services.release.policy import Policy

__all__ = ["REASONS", "Decision", "Member", "WindowId", "decide", "month_window", "window_of"]

DAY = 86400
REASONS = ("min_cases", "min_contributors", "dominance", "secondary")
"""Why a cell is suppressed, in the order the rules are tried (secondary last)."""


@dataclass(frozen=True, slots=True)
class Member:
    """One case's measure, as the release needs it: where it counts and for whom."""

    at_s: float
    dims: Dims
    value: float  # a duration in the indicator's unit, or 1/0 for a ratio's numerator
    amount: Decimal
    contributor: str


@dataclass(frozen=True, slots=True, order=True)
class WindowId:
    indicator: str
    window: str  # P1D or P1M
    start: int  # epoch seconds, Shanghai midnight
    end: int

    def cell_key(self, dims: Dims) -> str:
        """The record key of one of its cells, as in docs/contract.md section 4."""
        start = datetime.fromtimestamp(self.start, SHANGHAI).isoformat()
        return f"{self.indicator}|{self.window}|{start}|{','.join(f'{k}={v}' for k, v in dims)}"


def month_window(at_s: float) -> tuple[int, int]:
    """Start and end (epoch seconds) of the Shanghai calendar month holding ``at_s``."""
    t = datetime.fromtimestamp(at_s, SHANGHAI)
    start = datetime(t.year, t.month, 1, tzinfo=SHANGHAI)
    end = datetime(t.year + t.month // 12, t.month % 12 + 1, 1, tzinfo=SHANGHAI)
    return int(start.timestamp()), int(end.timestamp())


def window_of(indicator: str, window: str, at_s: float) -> WindowId:
    if window == "P1M":
        start, end = month_window(at_s)
        return WindowId(indicator, window, start, end)
    start = int((at_s + 8 * 3600) // DAY * DAY - 8 * 3600)
    return WindowId(indicator, window, start, start + DAY)


@dataclass(slots=True)
class Decision:
    """One cell's fate: the exact values (for the audit only) and what is released of them."""

    window: WindowId
    dims: Dims
    exact: dict[str, Any]
    status: str = "released"
    reason: str | None = None
    released: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.window.cell_key(self.dims)

    @property
    def count(self) -> int:
        return int(self.exact["count"])


def decide(
    policy: Policy, window: WindowId, kind: Kind, unit: Unit, members: Iterable[Member]
) -> list[Decision]:
    """Every cell of a final window, decided (steps 1 to 5 of the module's docstring)."""
    sets = policy.cells_of(window.indicator, window.window)
    groups: dict[Dims, list[Member]] = defaultdict(list)
    for m in members:  # 1
        have = dict(m.dims)
        for names in sets:
            groups[tuple((n, have.get(n, "unknown")) for n in names)].append(m)
    cells = {dims: Decision(window, dims, _exact(kind, ms)) for dims, ms in sorted(groups.items())}  # 2
    rules = policy.rules
    for c in cells.values():  # 3
        c.reason = _primary(
            kind, c.exact, rules.min_cases, rules.min_contributors, rules.dominance_top1, rules.dominance_top2
        )
        c.status = "released" if c.reason is None else "suppressed"
    _secondary(cells, sets)  # 4
    values = policy.values_of(window.indicator, window.window)
    for c in cells.values():  # 5
        if c.status == "released":
            c.released = _rounded(kind, unit, c.exact, values, rules.min_cases_quantile)
    return list(cells.values())


def _exact(kind: Kind, members: Sequence[Member]) -> dict[str, Any]:
    n = len(members)
    by: Counter[str] = Counter()
    out: dict[str, Any] = {"count": n}
    if kind == "amount":
        total = sum((m.amount for m in members), Decimal(0))
        shares: dict[str, Decimal] = defaultdict(Decimal)
        for m in members:
            shares[m.contributor] += m.amount
        top = sorted(shares.values(), reverse=True)
        out["sum"] = str(total)
        out["top1_share"] = float(top[0] / total) if total > 0 else 1.0
        out["top2_share"] = float(sum(top[:2]) / total) if total > 0 else 1.0
        out["contributors"] = len(shares)
        return out
    by.update(m.contributor for m in members)
    out["contributors"] = len(by)
    if kind == "ratio":
        num = sum(1 for m in members if m.value >= 1)
        out.update(numerator=num, denominator=n, value=num / n)
        return out
    values = sorted(m.value for m in members)
    out.update(mean=sum(values) / n, p50=_rank(values, 0.5), p90=_rank(values, 0.9))
    return out


def _rank(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile: the smallest value with at least ``q`` of the values at or below."""
    return values[max(0, math.ceil(q * len(values)) - 1)]


def _primary(
    kind: Kind, exact: Mapping[str, Any], min_cases: int, min_contributors: int, top1: float, top2: float
) -> str | None:
    if exact["count"] < min_cases:
        return "min_cases"
    if exact["contributors"] < min_contributors:
        return "min_contributors"
    if kind == "amount" and (exact["top1_share"] > top1 or exact["top2_share"] > top2):
        return "dominance"
    return None


def _secondary(cells: dict[Dims, Decision], sets: Sequence[tuple[str, ...]]) -> None:
    by_set: dict[tuple[str, ...], list[Decision]] = defaultdict(list)
    for c in cells.values():
        by_set[tuple(k for k, _ in c.dims)].append(c)
    changed = True
    while changed:
        changed = False
        for total in cells.values():
            if total.status != "released":
                continue
            own = dict(total.dims)
            for names in sets:
                if not set(own) < set(names):
                    continue
                under = [c for c in by_set[names] if all(dict(c.dims)[k] == v for k, v in own.items())]
                if sum(c.status == "suppressed" for c in under) != 1:
                    continue
                released = [c for c in under if c.status == "released"]
                victim = min(released, key=lambda c: (c.count, c.dims)) if released else total
                victim.status, victim.reason, changed = "suppressed", "secondary", True
                if victim is total:
                    break


def _half_up(value: Decimal, step: Decimal) -> Decimal:
    return (value / step).quantize(Decimal(1), rounding=ROUND_HALF_UP) * step


def _count(n: int) -> int:
    return int(_half_up(Decimal(n), Decimal(5)))


def _duration(unit: Unit, v: float) -> float | int:
    if unit == "seconds":
        return int(_half_up(Decimal(repr(v)), Decimal(360)))
    return float(Decimal(repr(v)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))


def _cny(text: str) -> str:
    d = Decimal(text)
    if d == 0:
        return "0"
    step = Decimal(1).scaleb(d.adjusted() - 2)
    return format(d.quantize(step, rounding=ROUND_HALF_UP) if step < 1 else _half_up(d, step), "f")


def _rounded(
    kind: Kind, unit: Unit, exact: Mapping[str, Any], values: Sequence[str], quantile: int
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if kind == "amount":
        out["sum"] = _cny(exact["sum"])
    elif kind == "ratio":
        num, den = _count(exact["numerator"]), _count(exact["denominator"])
        out.update(
            numerator=num,
            denominator=den,
            value=float(_half_up(Decimal(num) / Decimal(den), Decimal("0.01"))),
        )
    else:
        out.update(count=_count(exact["count"]), mean=_duration(unit, exact["mean"]))
        if exact["count"] >= quantile:
            out.update(p50=_duration(unit, exact["p50"]), p90=_duration(unit, exact["p90"]))
    return {k: v for k, v in out.items() if k in values}
