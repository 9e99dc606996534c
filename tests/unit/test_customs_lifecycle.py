"""Customs lifecycle: any order and any duplication of a case's events gives the same measures;
arrivals join declarations by bill of lading in either order; measures follow contract 2.1/4."""

from __future__ import annotations

import random
from datetime import datetime
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.codec import decode
from services.customs.lifecycle import Declaration, contributions
from services.customs.simulator import lifecycle, simulate
from tests.batch_customs import batch, compare
from tests.pipeline_memory import run

START = datetime.fromisoformat("2025-03-01T00:00:00+08:00").timestamp()
TOPIC = "customs.events.v1"


def _case(seed: int) -> list[dict[str, Any]]:
    return lifecycle(random.Random(seed), seed, START + seed * 37.0).events


def _measures(events: list[dict[str, Any]]) -> set[Any]:
    entry = next(e["data"]["entry_id"] for e in events if "entry_id" in e["data"])
    d = Declaration(entry)
    arrival = [e for e in events if e["type"] == "customs.transport.arrived"]
    for e in events:
        if e["type"] != "customs.transport.arrived":
            ev = decode(orjson.dumps(e), [], topic=TOPIC)
            d.apply(ev.type, ev.data, ev.time.timestamp(), ev.id)
    for e in arrival:
        d.mark("arrival", datetime.fromisoformat(e["time"]).timestamp())
    return set(contributions(d))


@given(st.integers(0, 10_000), st.randoms(use_true_random=False), st.integers(0, 3))
@settings(max_examples=60, deadline=None)
def test_any_permutation_and_duplication_gives_the_same_measures(
    seed: int, rnd: random.Random, copies: int
) -> None:
    events = _case(seed)
    shuffled = events + [rnd.choice(events) for _ in range(copies)]
    rnd.shuffle(shuffled)
    assert _measures(shuffled) == _measures(events)


@given(st.integers(0, 10_000), st.randoms(use_true_random=False))
@settings(max_examples=25, deadline=None)
def test_pipeline_in_any_order_equals_the_batch_computation(seed: int, rnd: random.Random) -> None:
    events = simulate(cases=20, seed=seed, start_s=START, span_s=6 * 3600)
    shuffled = list(events)
    rnd.shuffle(shuffled)
    assert compare(batch(events), run(shuffled)) == []


def test_arrival_before_or_after_its_declaration_gives_the_same_release_time() -> None:
    events = simulate(cases=60, seed=5, start_s=START, span_s=3600)
    arrivals = [e for e in events if e["type"] == "customs.transport.arrived"]
    others = [e for e in events if e["type"] != "customs.transport.arrived"]
    assert arrivals
    expected = batch(events)
    assert compare(expected, run(arrivals + others)) == []
    assert compare(expected, run(others + arrivals)) == []


def test_import_release_time_counts_from_arrival_and_export_from_lodging() -> None:
    d = Declaration("516520251000000001")  # import
    d.mark("lodged", 1000.0)
    d.mark("released", 5000.0)
    (release,) = [c for c in contributions(d) if c.indicator == "customs.release_time"]
    assert release.value == 4000.0
    d.mark("arrival", 400.0)
    (release,) = [c for c in contributions(d) if c.indicator == "customs.release_time"]
    assert release.value == 4600.0
    assert dict(release.dims)["transport_mode"] == "unknown"
    export = Declaration("514120250000000001")
    export.mark("arrival", 0.0)
    export.mark("lodged", 1000.0)
    export.mark("released", 1600.0)
    (release,) = [c for c in contributions(export) if c.indicator == "customs.release_time"]
    assert release.value == 600.0


def test_negative_stage_is_not_counted() -> None:
    d = Declaration("516520251000000002")
    d.mark("arrival", 2000.0)
    d.mark("lodged", 1000.0)  # advance declaration: lodged before arrival
    assert not [c for c in contributions(d) if dict(c.dims).get("stage") == "arrival_to_lodged"]


def test_state_round_trips_through_json() -> None:
    events = _case(3)
    d = Declaration(next(e["data"]["entry_id"] for e in events if "entry_id" in e["data"]))
    for e in events:
        if e["type"] != "customs.transport.arrived":
            ev = decode(orjson.dumps(e), [], topic=TOPIC)
            d.apply(ev.type, ev.data, ev.time.timestamp(), ev.id)
    d.applied = [(c, ("PT1H",) if i == 0 else ()) for i, c in enumerate(contributions(d))]  # as applied
    assert Declaration.from_json(orjson.loads(orjson.dumps(d.to_json()))) == d
