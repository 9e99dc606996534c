"""Windows and aggregates: Shanghai alignment, corrections, merges, lateness."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from services.common.windows import (
    SHANGHAI,
    Agg,
    Contribution,
    IndicatorSpec,
    Partials,
    indicator_key,
    window_start,
)

SPECS = {
    "t.duration": IndicatorSpec("t.duration", "seconds", "duration", ("d",), grace_s=3600),
    "t.ratio": IndicatorSpec("t.ratio", "ratio", "ratio", ("d",)),
    "t.amount": IndicatorSpec("t.amount", "cny", "amount", ("d",)),
}


def _ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_day_windows_start_at_shanghai_midnight() -> None:
    at = _ts("2025-03-01T23:30:00+08:00")
    start = window_start(at, 86400)
    assert datetime.fromtimestamp(start, SHANGHAI).isoformat() == "2025-03-01T00:00:00+08:00"
    assert datetime.fromtimestamp(window_start(_ts("2025-03-01T00:00:00+08:00"), 86400), SHANGHAI).day == 1


def test_hour_windows_align_to_shanghai_hours() -> None:
    start = window_start(_ts("2025-03-01T08:59:59.999+08:00"), 3600)
    assert datetime.fromtimestamp(start, SHANGHAI).isoformat() == "2025-03-01T08:00:00+08:00"


def test_key_matches_the_contract_format() -> None:
    start = int(_ts("2025-03-01T08:00:00+08:00"))
    key = indicator_key("customs.release_time", "PT1H", start, (("transport_mode", "2"), ("ie_flag", "I")))
    assert key == "customs.release_time|PT1H|2025-03-01T08:00:00+08:00|ie_flag=I,transport_mode=2"
    assert indicator_key("x", "P1D", start, ()).endswith("|")


def _c(
    value: float, at: str = "2025-03-01T08:30:00+08:00", d: str = "a", name: str = "t.duration"
) -> Contribution:
    return Contribution(name, _ts(at), (("d", d),), value)


def test_each_contribution_reaches_both_windows_and_the_rollup() -> None:
    partials = Partials(SPECS)
    partials.apply([], [_c(10.0)])
    assert len(partials.aggs) == 4
    assert all(a.count == 1 for a in partials.aggs.values())


def test_replacing_a_contribution_corrects_instead_of_double_counting() -> None:
    partials = Partials(SPECS)
    applied = partials.apply([], [_c(10.0)])
    applied = partials.apply(applied, [_c(30.0)])
    for agg in partials.aggs.values():
        assert agg.count == 1
        assert agg.fields("duration")["mean"] == 30.0


def test_a_correction_can_move_a_case_to_another_window() -> None:
    partials = Partials(SPECS)
    applied = partials.apply([], [_c(10.0, at="2025-03-01T08:30:00+08:00")])
    partials.apply(applied, [_c(10.0, at="2025-03-01T09:30:00+08:00")])
    hour8 = indicator_key("t.duration", "PT1H", int(_ts("2025-03-01T08:00:00+08:00")), ())
    hour9 = indicator_key("t.duration", "PT1H", int(_ts("2025-03-01T09:00:00+08:00")), ())
    assert partials.aggs[hour8].count == 0
    assert partials.aggs[hour9].count == 1


@given(st.lists(st.integers(min_value=0, max_value=10**9), min_size=1, max_size=50))
def test_mean_is_exact_over_millisecond_durations(ms: list[int]) -> None:
    agg = Agg()
    for m in ms:
        agg.add(_c(m / 1000), "duration")
    assert agg.sum_ms == sum(ms)
    assert agg.fields("duration")["mean"] == sum(ms) / 1000 / len(ms)


@given(st.lists(st.lists(st.integers(min_value=0, max_value=10**7), max_size=20), min_size=3, max_size=3))
def test_aggregate_merge_is_associative_and_commutative(parts: list[list[int]]) -> None:
    def agg(ms: list[int]) -> Agg:
        a = Agg()
        for m in ms:
            a.add(_c(m / 1000), "duration")
        return a

    x, y, z = (agg(p) for p in parts)
    left = agg(parts[0])
    left.merge(y)
    left.merge(z)
    right = agg(parts[2])
    right.merge(y)
    right.merge(x)
    assert left.to_json() == right.to_json()
    assert left.to_json() == agg(parts[0] + parts[1] + parts[2]).to_json()


def test_ratio_and_amount_fields() -> None:
    ratio, amount = Agg(), Agg()
    for hit in (1.0, 0.0, 0.0, 1.0):
        ratio.add(_c(hit, name="t.ratio"), "ratio")
    for value in ("0.10", "0.20"):
        amount.add(Contribution("t.amount", 0.0, (), amount=value), "amount")
    assert ratio.fields("ratio") == {"numerator": 2.0, "denominator": 4.0, "value": 0.5}
    assert amount.fields("amount") == {"sum": "0.30"}
    assert amount.amount == Decimal("0.30")


def test_contribution_after_the_window_closed_is_late_and_kept() -> None:
    partials = Partials(SPECS, out_of_orderness_s=0)
    partials.observe(_ts("2025-03-01T12:00:00+08:00"))
    applied = partials.apply([], [_c(5.0, at="2025-03-01T08:30:00+08:00")])
    assert applied[0][1] == ("PT1H",)
    hour = indicator_key("t.duration", "PT1H", int(_ts("2025-03-01T08:00:00+08:00")), ())
    assert partials.aggs[hour].late == 1
    assert partials.aggs[hour].count == 1


def test_restore_rebuilds_the_same_aggregates() -> None:
    live = Partials(SPECS)
    a = live.apply([], [_c(5.0), _c(7.0, d="b")])
    rebuilt = Partials(SPECS)
    rebuilt.restore(a)
    assert {k: v.to_json() for k, v in rebuilt.aggs.items()} == {k: v.to_json() for k, v in live.aggs.items()}
