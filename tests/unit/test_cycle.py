"""The export cycle join (docs/contract.md section 4), through the engine and commit path in memory:
case records of customs, CIPS and refunds, produced by those services' own pipelines from linked
simulations, in any order and any number of times, give the indicators a batch computation over
the raw events gives; and the contract's rules one by one on hand-made records."""

from __future__ import annotations

import asyncio
import random
from datetime import datetime
from functools import cache
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from services.cips.domain import DOMAIN as CIPS
from services.cips.simulator import simulate as simulate_cips
from services.contract.topics import partition_for
from services.customs.domain import DOMAIN as CUSTOMS
from services.customs.simulator import simulate as simulate_customs
from services.cycle.domain import DOMAIN as CYCLE
from services.cycle.lifecycle import Entry
from services.taxrefund.domain import DOMAIN as TAXREFUND
from services.taxrefund.simulator import simulate as simulate_refunds
from tests.batch_customs import compare
from tests.batch_cycle import batch
from tests.wiring import TOPICS, Wiring

START = datetime.fromisoformat("2025-03-03T00:00:00+08:00").timestamp()
SPAN = 8 * 86400.0
Pair = tuple[bytes, bytes]


def linked_corpus(seed: int) -> list[dict[str, Any]]:
    """Customs, CIPS and refund events of one shared plan: payments and refunds name exports."""
    return [
        *simulate_customs(cases=60, seed=seed, start_s=START, span_s=SPAN),
        *simulate_cips(cases=40, seed=seed, start_s=START, span_s=SPAN),
        *simulate_refunds(cases=12, seed=seed, start_s=START, span_s=SPAN),
    ]


@cache
def case_records(seed: int) -> tuple[Pair, ...]:
    """Every revision the three services publish on their case topics, from their own pipelines."""
    events = linked_corpus(seed)
    out: list[Pair] = []
    for domain in (CUSTOMS, CIPS, TAXREFUND):
        mine = [e for e in events if e["type"].startswith(domain.name + ".")]
        wiring = Wiring(domain)
        wiring.run(mine, batch=7)
        out += [(o.key or b"", o.value or b"") for o in wiring.written(TOPICS.cases)]
    return tuple(out)


def run_cycle(pairs: list[Pair], *, batch_size: int = 5, wiring: Wiring | None = None) -> dict[str, Any]:
    w = wiring or Wiring(CYCLE)

    async def go() -> dict[str, Any]:
        records = [w.record(value, key=key) for key, value in pairs]
        for i in range(0, len(records), batch_size):
            await w.take(records[i : i + batch_size])
        return await w.publish()

    return asyncio.run(go())


def test_the_simulators_link_exports_payments_and_refunds() -> None:
    events = linked_corpus(5)
    exports = {e["data"]["entry_id"] for e in events if e["type"] == "customs.declaration.lodged"
               and e["data"]["ie_flag"] == "E"}  # fmt: skip
    paid = {
        x
        for e in events
        if e["type"] == "cips.payment.initiated"
        for x in e["data"].get("linked_entry_ids", [])
    }
    claimed = {x for e in events if e["type"] == "taxrefund.refund.declared" for x in e["data"]["entry_ids"]}
    assert len(exports & paid) >= 10
    assert len(exports & claimed) >= 10
    expected = batch(events)
    assert any(k.startswith("cycle.export_to_cash|P1D") for k in expected)
    assert any(k.startswith("cycle.export_to_refund|P1D") for k in expected)
    assert any(v.get("numerator", 0) > 0 for k, v in expected.items() if k.startswith("cycle.prepaid_rate"))


@given(st.sampled_from([5, 6, 7]), st.randoms(use_true_random=False), st.sampled_from([1, 4, 50]))
@settings(max_examples=12, deadline=None)
def test_case_records_in_any_order_and_repeated_give_the_batch_computation(
    seed: int, rnd: random.Random, batch_size: int
) -> None:
    pairs = list(case_records(seed))
    pairs += [rnd.choice(pairs) for _ in range(len(pairs) // 10)]  # redelivered revisions
    rnd.shuffle(pairs)
    got = run_cycle(pairs, batch_size=batch_size)
    assert compare(batch(linked_corpus(seed)), got) == []


# -- the rules, one by one ------------------------------------------------------------------------

ENTRY = "514120250000000001"


def _iso(hours: float) -> str:
    return datetime.fromtimestamp(START + hours * 3600).astimezone().isoformat(timespec="milliseconds")


def record(service: str, case_id: str, revision: int = 1, **fields: Any) -> Pair:
    milestones = {k: _iso(v) for k, v in fields.pop("milestones", {}).items()}
    data = {"service": service, "case_id": case_id, "status": "open", "milestones": milestones,
            "measures": {}, "attributes": fields, "revision": revision}  # fmt: skip
    event = {"specversion": "1.0", "id": f"{case_id}|r{revision}", "source": f"/tradepulse/{service}",
             "type": "tradepulse.case.updated", "time": max(milestones.values(), default=_iso(0)),
             "subject": case_id, "datacontenttype": "application/json", "data": data}  # fmt: skip
    return case_id.encode(), orjson.dumps(event)


def export(released_h: float, entry: str = ENTRY) -> Pair:
    return record("customs", entry, milestones={"lodged": released_h - 1, "released": released_h},
                  ie_flag="E", customs_code=entry[:4])  # fmt: skip


def payment(uetr: str, credited_h: float, *entries: str, purpose: str = "goods") -> Pair:
    return record("cips", uetr, milestones={"initiated": credited_h - 0.5, "credited": credited_h},
                  purpose=purpose, linked_entry_ids=list(entries or [ENTRY]))  # fmt: skip


def refund(refund_id: str, issued_h: float, category: int, *entries: str) -> Pair:
    return record("taxrefund", refund_id, milestones={"declared": issued_h - 100, "issued": issued_h},
                  mgmt_category=category, entry_ids=list(entries or [ENTRY]))  # fmt: skip


def _rollup(latest: dict[str, Any], indicator: str) -> dict[str, Any]:
    """The P1D rollup records of ``indicator`` with a non-zero count, merged by field."""
    found = [
        v for k, v in latest.items() if k.startswith(f"{indicator}|P1D|") and k.endswith("|") and v["count"]
    ]
    assert len(found) <= 1, found
    return found[0] if found else {"count": 0}


def test_a_payment_before_its_declaration_waits_in_the_entry() -> None:
    got = run_cycle([payment("p1", 30), export(10)], batch_size=1)
    cash = _rollup(got, "cycle.export_to_cash")
    assert (cash["count"], cash["mean"]) == (1, 20 * 3600)
    assert _rollup(got, "cycle.prepaid_rate")["numerator"] == 0


def test_an_earlier_credit_arriving_later_corrects_the_entry_never_counts_twice() -> None:
    got = run_cycle([export(10), payment("p2", 40), payment("p1", 20)], batch_size=1)
    cash = _rollup(got, "cycle.export_to_cash")
    assert (cash["count"], cash["mean"]) == (1, 10 * 3600)
    # a credit before the release decides first: prepaid, and no longer in export_to_cash
    got = run_cycle([export(10), payment("p2", 40), payment("p0", 5)], batch_size=1)
    assert _rollup(got, "cycle.export_to_cash")["count"] == 0
    prepaid = _rollup(got, "cycle.prepaid_rate")
    assert (prepaid["numerator"], prepaid["denominator"]) == (1, 1)


def test_a_credit_at_the_release_is_not_prepaid_and_counts_zero() -> None:
    got = run_cycle([export(10), payment("p1", 10)])
    assert _rollup(got, "cycle.prepaid_rate")["numerator"] == 0
    assert _rollup(got, "cycle.export_to_cash")["mean"] == 0


def test_only_goods_payments_count_and_a_payment_may_name_several_entries() -> None:
    other = "514120250000000002"
    pairs = [
        export(10),
        export(12, other),
        payment("p1", 30, ENTRY, other),
        payment("s1", 11, purpose="services"),
    ]
    cash = _rollup(run_cycle(pairs), "cycle.export_to_cash")
    assert (cash["count"], cash["mean"]) == (2, (20 + 18) * 3600 / 2)


def test_an_entry_in_two_refunds_counts_the_earliest_issue_with_its_category() -> None:
    pairs = [export(10), refund("r2", 10 + 24 * 20, 3), refund("r1", 10 + 24 * 9, 1)]
    got = run_cycle(pairs, batch_size=1)
    assert _rollup(got, "cycle.export_to_refund")["count"] == 1
    by_category = [v for k, v in got.items() if k.startswith("cycle.export_to_refund|P1D") and v["count"]]
    assert {k.split("|")[3] for k, v in got.items() if v in by_category} >= {"mgmt_category=1"}
    assert not any("mgmt_category=3" in k and v["count"] for k, v in got.items())


def test_a_refund_in_a_year_the_calendar_lacks_is_not_guessed() -> None:
    """Working days need the official calendar; 2003 is before its first year: the entry's time to
    refund stays unknown (its time to cash still counts)."""
    h = -22 * 365 * 24.0  # early 2003
    got = run_cycle([export(h), payment("p1", h + 20), refund("r1", h + 24 * 9, 1)])
    assert _rollup(got, "cycle.export_to_cash")["count"] == 1
    assert _rollup(got, "cycle.export_to_refund")["count"] == 0


def test_imports_unlinked_payments_and_open_cases_are_of_no_interest() -> None:
    w = Wiring(CYCLE)
    pairs = [
        record("customs", "514120251000000009", milestones={"released": 3}, ie_flag="I", customs_code="5141"),
        record("cips", "p9", milestones={"credited": 4}, purpose="goods"),
        record("cbec", "E1:SO1", milestones={"released": 5}),
    ]
    run_cycle(pairs, wiring=w)
    assert all(not list(w.pipeline.cases.cases(k)) for k in CYCLE.kinds)


def _entries(w: Wiring) -> dict[str, Entry]:
    return {k: e.case for _, k, e in w.pipeline.cases.cases("entry")}


def _on_the_partition_of(entry: str, count: int) -> list[str]:
    """Other entry numbers whose cases live on ``entry``'s partition (watermarks are per partition)."""
    home = partition_for(entry, 4)
    found = (f"5141202500{n:08d}" for n in range(2, 10_000))
    return [e for e in found if partition_for(e, 4) == home][:count]


def _expired_entries() -> float:
    return REGISTRY.get_sample_value("tradepulse_cycle_entries_total", {"outcome": "expired"}) or 0.0


def test_complete_entries_leave_after_the_retention_and_incomplete_ones_after_the_horizon() -> None:
    w = Wiring(CYCLE)
    done = ENTRY
    waiting, later, much_later = _on_the_partition_of(done, 3)
    run_cycle([export(10), payment("p1", 20), refund("r1", 200, 2), export(11, waiting)], wiring=w)
    assert _entries(w)[done].completed
    assert set(_entries(w)) == {done, waiting}
    retention_h, horizon_h = CYCLE.settings().window_retention_s / 3600, CYCLE.settings().case_expiry_s / 3600
    run_cycle([export(200 + retention_h + 24 * 5, later)], wiring=w)  # 200 h: the refund, its last news
    asyncio.run(w.tick(w.pipeline.housekeeping))
    assert done not in _entries(w)
    assert waiting in _entries(w)
    expired = _expired_entries()
    run_cycle([export(horizon_h + 24 * 5, much_later)], wiring=w)
    asyncio.run(w.tick(w.pipeline.housekeeping))
    assert waiting not in _entries(w)
    assert _expired_entries() == expired + 1
    assert later in _entries(w)


def test_an_open_entry_is_a_few_hundred_bytes() -> None:
    """The figure in docs/performance.md comes from `tradepulse bench cycle-memory`; this keeps the
    measurement honest (it builds real entries) and catches a state that balloons."""
    from services.tools.bench_memory import bytes_per_open_entry

    assert 100 < bytes_per_open_entry(2_000) < 2_000
