"""Customs lifecycle: any order and any duplication of a case's events gives the same measures;
arrivals join declarations by bill of lading in either order; measures follow docs/contract.md
sections 2.1 and 4."""

from __future__ import annotations

import asyncio
import random
from datetime import datetime
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from services.customs.domain import DOMAIN
from services.customs.events import CATALOG
from services.customs.lifecycle import Arrived, Bill, Declaration, Named
from services.customs.simulator import lifecycle, simulate
from services.engine.domain import Message
from services.engine.registers import evolve, from_json, to_json
from tests.batch_customs import batch, compare
from tests.folds import decoded, fold
from tests.wiring import Wiring

START = datetime.fromisoformat("2025-03-01T00:00:00+08:00").timestamp()


def _case(seed: int) -> list[dict[str, Any]]:
    return lifecycle(random.Random(seed), seed, START + seed * 37.0).events


def _measures(events: list[dict[str, Any]]) -> set[Any]:
    entry = next(e["data"]["entry_id"] for e in events if "entry_id" in e["data"])
    d = fold(Declaration(entry), decoded((e for e in events if "entry_id" in e["data"]), CATALOG))
    for e in events:
        if e["type"] == "customs.transport.arrived":
            d = d.receive(Arrived(datetime.fromisoformat(e["time"]).timestamp()))
    return set(d.measures())


def _run(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return Wiring(DOMAIN).run(events)


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
    assert compare(batch(events), _run(shuffled)) == []


def test_arrival_before_or_after_its_declaration_gives_the_same_release_time() -> None:
    events = simulate(cases=60, seed=5, start_s=START, span_s=3600)
    arrivals = [e for e in events if e["type"] == "customs.transport.arrived"]
    others = [e for e in events if e["type"] != "customs.transport.arrived"]
    assert arrivals
    expected = batch(events)
    assert compare(expected, _run(arrivals + others)) == []
    assert compare(expected, _run(others + arrivals)) == []


def _with(entry: str, **milestones: float) -> Declaration:
    d = Declaration(entry)
    for name, at in milestones.items():
        d = d.receive(Arrived(at)) if name == "arrived" else _marked(d, name, at)
    return d


def _marked(d: Declaration, name: str, at: float) -> Declaration:
    return evolve(d, milestones=d.milestones.earliest(name, at))


def _release(d: Declaration) -> Any:
    (release,) = [c for c in d.measures() if c.indicator == "customs.release_time"]
    return release


def test_import_release_time_counts_from_arrival_and_export_from_lodging() -> None:
    d = _with("516520251000000001", lodged=1000.0, released=5000.0)  # import
    assert _release(d).value == 4000.0
    d = d.receive(Arrived(400.0))
    assert _release(d).value == 4600.0
    assert dict(_release(d).dims)["transport_mode"] == "unknown"
    export = _with("514120250000000001", arrived=0.0, lodged=1000.0, released=1600.0)
    assert _release(export).value == 600.0


def test_negative_stage_is_not_counted() -> None:
    d = _with("516520251000000002", arrived=2000.0, lodged=1000.0)  # advance declaration
    assert not [c for c in d.measures() if dict(c.dims).get("stage") == "arrival_to_lodged"]


def test_a_declaration_that_names_a_bill_tells_the_bill_and_the_bill_answers() -> None:
    events = decoded(lifecycle(random.Random(7), 7, START).events, CATALOG)
    lodged = next(e for e in events if e.type == "customs.declaration.lodged")
    entry, bill_no = lodged.subject, lodged.data.bill_no  # type: ignore[attr-defined]
    d = Declaration(entry)
    after = d.apply(lodged)
    if bill_no is None:
        assert after.messages(d) == ()
        return
    assert after.messages(d) == (Message("bill", bill_no, Named(entry)),)
    bill = Bill(bill_no).receive(Named(entry))
    assert bill.messages(Bill(bill_no)) == ()  # not arrived: nothing to tell yet
    arrivals = [e for e in events if e.type == "customs.transport.arrived"]
    for arrival in arrivals:
        arrived = bill.apply(arrival)
        (told,) = arrived.messages(bill)
        assert (told.kind, told.key, told.body) == ("declaration", entry, Arrived(arrival.time_s))


def test_state_round_trips_through_json() -> None:
    events = _case(3)
    d = fold(Declaration(next(e["data"]["entry_id"] for e in events if "entry_id" in e["data"])),
             decoded((e for e in events if "entry_id" in e["data"]), CATALOG))  # fmt: skip
    assert from_json(Declaration, orjson.loads(orjson.dumps(to_json(d)))) == d
    bill = Bill("B1").receive(Named("x")).receive(Named("y"))
    assert from_json(Bill, orjson.loads(orjson.dumps(to_json(bill)))) == bill


def test_unfinished_declarations_expire_into_a_counter() -> None:
    def expired() -> float:
        return REGISTRY.get_sample_value("tradepulse_customs_cases_expired_total", {"ie_flag": "E"}) or 0.0

    lodged = next(e for e in _case(1) if e["type"] == "customs.declaration.lodged")
    data = {**lodged["data"], "entry_id": "514120250000000009", "customs_code": "5141", "ie_flag": "E"}
    data.pop("bill_no", None)
    stuck = {
        **lodged,
        "id": "stuck",
        "subject": data["entry_id"],
        "time": "2025-03-01T08:00:00+08:00",
        "data": data,
    }
    later_data = {**data, "entry_id": "514120250000000010"}
    later = {**stuck, "id": "later", "subject": later_data["entry_id"], "time": "2025-07-01T08:00:00+08:00",
             "data": later_data}  # fmt: skip
    w = Wiring(DOMAIN, partitions=1, settings=DOMAIN.settings(case_expiry_s=90 * 86400))
    before = expired()
    w.run([stuck, later])
    asyncio.run(w.tick(w.pipeline.housekeeping))
    assert expired() == before + 1
    assert {key for _, key, _ in w.pipeline.cases.cases("declaration")} == {later_data["entry_id"]}
