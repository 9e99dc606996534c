"""Windows, keys and aggregations: Shanghai alignment, corrections, merges, lateness."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.engine.aggregations import Aggregation, Amounts, Durations, Ratios
from services.engine.partials import Partials
from services.engine.windows import SHANGHAI, Contribution, IndicatorSpec, WindowKey, window_start

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


def test_key_matches_the_contract_format_and_parses_back() -> None:
    start = int(_ts("2025-03-01T08:00:00+08:00"))
    key = WindowKey("customs.release_time", "PT1H", start, (("ie_flag", "I"), ("transport_mode", "2")))
    assert key.text == "customs.release_time|PT1H|2025-03-01T08:00:00+08:00|ie_flag=I,transport_mode=2"
    assert WindowKey.parse(key.text) == key
    assert WindowKey("x", "P1D", start, ()).text.endswith("|")
    assert WindowKey.parse(WindowKey("x", "P1D", start, ()).text).dims == ()


def test_a_contribution_s_dimensions_are_sorted_into_its_keys() -> None:
    partials = Partials(SPECS)
    partials.apply(
        (), [Contribution("t.duration", _ts("2025-03-01T08:30:00+08:00"), (("z", "1"), ("d", "a")), 1.0)]
    )
    assert {k.dims for k in partials.aggs} == {(("d", "a"), ("z", "1")), ()}


def _c(
    value: float, at: str = "2025-03-01T08:30:00+08:00", d: str = "a", name: str = "t.duration"
) -> Contribution:
    return Contribution(name, _ts(at), (("d", d),), value)


def test_each_contribution_reaches_both_windows_and_the_rollup() -> None:
    partials = Partials(SPECS)
    partials.apply((), [_c(10.0)])
    assert len(partials.aggs) == 4
    assert all(a.count == 1 for a in partials.aggs.values())


def test_replacing_a_contribution_corrects_instead_of_double_counting() -> None:
    partials = Partials(SPECS)
    applied, _ = partials.apply((), [_c(10.0)])
    partials.apply(applied, [_c(30.0)])
    for agg in partials.aggs.values():
        assert agg.count == 1
        assert agg.fields()["mean"] == 30.0


def test_a_correction_can_move_a_case_to_another_window() -> None:
    partials = Partials(SPECS)
    applied, _ = partials.apply((), [_c(10.0, at="2025-03-01T08:30:00+08:00")])
    partials.apply(applied, [_c(10.0, at="2025-03-01T09:30:00+08:00")])
    hour8 = WindowKey("t.duration", "PT1H", int(_ts("2025-03-01T08:00:00+08:00")), ())
    hour9 = WindowKey("t.duration", "PT1H", int(_ts("2025-03-01T09:00:00+08:00")), ())
    assert partials.aggs[hour8].count == 0
    assert partials.aggs[hour9].count == 1


@given(st.lists(st.integers(min_value=0, max_value=10**9), min_size=1, max_size=50))
def test_mean_is_exact_over_millisecond_durations(ms: list[int]) -> None:
    agg = Durations()
    for m in ms:
        agg.add(Durations.prepare(_c(m / 1000)), 1)
    assert agg.sum_ms == sum(ms)
    assert agg.fields()["mean"] == sum(ms) / 1000 / len(ms)


@given(st.lists(st.lists(st.integers(min_value=0, max_value=10**7), max_size=20), min_size=3, max_size=3))
def test_aggregate_merge_is_associative_and_commutative(parts: list[list[int]]) -> None:
    def agg(ms: list[int]) -> Durations:
        a = Durations()
        for m in ms:
            a.add(Durations.prepare(_c(m / 1000)), 1)
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
    ratio, amount = Ratios(), Amounts()
    for hit in (1.0, 0.0, 0.0, 1.0):
        ratio.add(Ratios.prepare(_c(hit, name="t.ratio")), 1)
    for value in ("0.10", "0.20"):
        amount.add(Amounts.prepare(Contribution("t.amount", 0.0, (), amount=value)), 1)
    assert ratio.fields() == {"numerator": 2.0, "denominator": 4.0, "value": 0.5}
    assert amount.fields() == {"sum": "0.30"}
    assert amount.total == Decimal("0.30")


def test_extremes_are_within_one_percent_and_the_same_whatever_the_order_of_corrections() -> None:
    """The case the HTTP gateway test found: add 8234.205 and 15014.852, take out 15014.852, add
    16594.773, take out 8234.205. The minimum is 16594.773, not the first value's estimate."""
    steps = [(8234.205, 1), (15014.852, 1), (15014.852, -1), (16594.773, 1), (8234.205, -1), (25730.564, 1)]
    agg = Durations()
    for seconds, sign in steps:
        agg.add(Durations.prepare(_c(seconds)), sign)
    direct = Durations()
    for seconds in (16594.773, 25730.564):
        direct.add(Durations.prepare(_c(seconds)), 1)
    fields = agg.fields()
    assert fields == direct.fields()
    assert abs(fields["min"] - 16594.773) <= 0.01 * 16594.773
    assert abs(fields["max"] - 25730.564) <= 0.01 * 25730.564


@pytest.mark.parametrize("agg_type", [Durations, Ratios, Amounts])
def test_every_aggregation_round_trips_through_json(agg_type: type[Aggregation]) -> None:
    agg = agg_type()
    agg.add(agg_type.prepare(Contribution("t", 0.0, (), 1.0, amount="12.5")), 1)
    agg.late = 1
    assert agg_type.from_json(agg.to_json()) == agg


def test_contribution_after_the_window_closed_is_late_and_kept() -> None:
    partials = Partials(SPECS, out_of_orderness_s=0)
    partials.observe(_ts("2025-03-01T12:00:00+08:00"))
    applied, late = partials.apply((), [_c(5.0, at="2025-03-01T08:30:00+08:00")])
    assert applied[0][1] == ("PT1H",)
    assert late == 1
    hour = WindowKey("t.duration", "PT1H", int(_ts("2025-03-01T08:00:00+08:00")), ())
    assert partials.aggs[hour].late == 1
    assert partials.aggs[hour].count == 1
