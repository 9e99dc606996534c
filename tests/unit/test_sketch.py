"""The quantile sketch: 1 % relative accuracy, exact merges, removals that undo additions."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from services.engine.sketch import RELATIVE_ACCURACY, Sketch

values = st.lists(st.floats(min_value=0.001, max_value=3e7, allow_nan=False), min_size=1, max_size=300)
QS = (0.0, 0.5, 0.9, 0.95, 0.99, 1.0)


def _exact(xs: list[float], q: float) -> float:
    return sorted(xs)[math.floor(q * (len(xs) - 1))]


@given(values)
def test_quantiles_are_within_one_percent_of_the_exact_lower_quantile(xs: list[float]) -> None:
    sketch = Sketch.of(xs)
    for q in QS:
        got, want = sketch.quantile(q), _exact(xs, q)
        assert got is not None
        assert abs(got - want) <= RELATIVE_ACCURACY * want * 1.0000001


@given(values, values)
def test_merging_equals_sketching_the_union(xs: list[float], ys: list[float]) -> None:
    merged = Sketch.of(xs)
    merged.merge(Sketch.of(ys))
    assert merged == Sketch.of(xs + ys)


@given(st.lists(values, min_size=3, max_size=3))
def test_merge_is_associative_and_commutative(parts: list[list[float]]) -> None:
    a, b, c = (Sketch.of(p) for p in parts)
    left = Sketch.of(parts[0])
    left.merge(b)
    left.merge(c)
    right = Sketch.of(parts[2])
    right.merge(b)
    right.merge(a)
    assert left == right


@given(values, values)
def test_removing_values_undoes_adding_them(keep: list[float], drop: list[float]) -> None:
    sketch = Sketch.of(keep + drop)
    for x in drop:
        sketch.remove(x)
    assert sketch == Sketch.of(keep)
    assert sketch.count == len(keep)


def test_zero_is_counted_exactly() -> None:
    sketch = Sketch.of([0.0, 0.0, 5.0])
    assert sketch.quantile(0.5) == 0.0
    assert sketch.quantile(0.0) == 0.0


def test_empty_sketch_has_no_quantile() -> None:
    assert Sketch().quantile(0.5) is None


def test_json_round_trip() -> None:
    sketch = Sketch.of([1.0, 2.5, 0.0, 86400.0])
    assert Sketch.from_json(sketch.to_json()) == sketch
