"""The SLA watch (docs/contract.md section 9): rule points in working days across a weekend and a
statutory holiday, states by the clock and by late events, the idle-partition clock, restart, and
the whole corpus against the batch oracle (tests/batch_watch.py), live and replayed."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import random
import uuid
from collections import defaultdict
from datetime import datetime
from typing import Any

import orjson
import pytest
from prometheus_client import REGISTRY

from services.cips.domain import DOMAIN as CIPS
from services.cips.simulator import simulate as simulate_cips
from services.contract.records import WatchEvent
from services.contract.topics import partition_for
from services.engine.domain import Domain
from services.engine.watch import WatchRule, flag_of
from services.runtime.pages import watch_query
from services.taxrefund.domain import DOMAIN as TAXREFUND
from services.taxrefund.simulator import simulate as simulate_refunds
from services.workdays import WorkdayCalendar
from tests.batch_watch import flags as oracle
from tests.wiring import TOPICS, Wiring

CAL = WorkdayCalendar()
WALL = 2_000_000_000.0  # the wall clock of these tests: far from the events' times, it must not matter


def _t(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def _refund_events(rid: str, category: int, **times: str) -> list[dict[str, Any]]:
    data: dict[str, Any] = {
        "refund_id": rid,
        "taxpayer_uscc": "91440101MA5C000001",
        "mgmt_category": category,
        "tax_office": "14401060000",
        "claimed_amount": {"amount": "100.00", "currency": "CNY"},
        "entry_ids": [],
    }
    amount = {"amount": "100.00", "currency": "CNY"}
    extra: dict[str, Any] = {
        "declared": data,
        "approved": {"approved_amount": amount},
        "issued": {"amount": amount},
        "credited": {"amount": amount},
    }
    return [
        {
            "specversion": "1.0",
            "id": f"{rid}-{name}",
            "source": "/etax/14401060000",
            "type": f"taxrefund.refund.{name}",
            "time": at,
            "subject": rid,
            "data": extra.get(name, {"refund_id": rid}) | {"refund_id": rid},
        }
        for name, at in times.items()
    ]


NAMES: dict[str, str] = {}  # a payment's uetr -> the name a test gave it


def _uetr(name: str) -> str:
    uetr = str(uuid.UUID(bytes=hashlib.md5(name.encode()).digest(), version=4))
    NAMES[uetr] = name
    return uetr


def _payment_events(name: str, **times: str) -> list[dict[str, Any]]:
    uetr = _uetr(name)
    initiated = {
        "uetr": uetr,
        "msg_type": "customer",
        "debtor_agent": "BKCHCNBJ",
        "creditor_agent": "HSBCHKHH",
        "participant_type": "direct",
        "amount": {"amount": "10.00", "currency": "CNY"},
        "purpose": "goods",
    }
    return [
        {
            "specversion": "1.0",
            "id": f"{uetr}-{name}",
            "source": "/cips/BKCHCNBJ",
            "type": f"cips.payment.{name}",
            "time": at,
            "subject": uetr,
            "data": initiated if name == "initiated" else {"uetr": uetr},
        }
        for name, at in times.items()
    ]


def _view(w: Wiring) -> dict[str, dict[str, Any]]:
    """The watch topic as a compacted table: case id -> the data of its latest record."""
    out: dict[str, dict[str, Any]] = {}
    for o in w.written(TOPICS.watch):
        key = (o.key or b"").decode()
        key = NAMES.get(key, key)
        if o.value is None:
            out.pop(key, None)
        else:
            out[key] = WatchEvent.model_validate_json(o.value).data.model_dump(mode="json")
    return out


def _states(w: Wiring) -> dict[str, tuple[str, str, float]]:
    return {k: (d["rule"], d["state"], _t(d["since"])) for k, d in _view(w).items()}


def _feed(w: Wiring, events: list[dict[str, Any]], wall_s: float = WALL) -> None:
    async def go() -> None:
        await w.take(w.event_records(events))
        await w.tick(lambda: w.pipeline.watch(wall_s))

    asyncio.run(go())


def _breached_payments() -> float | None:
    labels = {"service": "cips", "rule": "credit_within_1h", "state": "breached", "group": "customer"}
    return REGISTRY.get_sample_value("tradepulse_watch_cases", labels)


def _watch(w: Wiring, wall_s: float) -> None:
    asyncio.run(w.tick(lambda: w.pipeline.watch(wall_s)))


# -- rules --------------------------------------------------------------------------------------


def test_working_day_points_skip_the_weekend_and_national_day() -> None:
    """Accepted Tue 30 Sep 2025: 1-8 Oct are holidays, Sat 11 Oct is a working day. Working days
    after: Thu 9 (1), Fri 10 (2), Sat 11 (3), Mon 13 (4)."""
    rule = WatchRule("r", ("accepted",), ("issued",), 2, 3, "working_days")
    warning, due = rule.points(_t("2025-09-30T10:00:00+08:00"), CAL)
    assert warning == _t("2025-10-10T00:00:00+08:00")
    assert due == _t("2025-10-13T00:00:00+08:00")
    fri_26_sep = (datetime(2025, 9, 26).date() - datetime(1970, 1, 1).date()).days
    assert CAL.workday_start(fri_26_sep, 1) == _t("2025-09-28T00:00:00+08:00")  # a Sunday


def test_rules_are_checked_and_limits_overridable() -> None:
    with pytest.raises(ValueError, match="warning <= due"):
        WatchRule("r", ("a",), ("b",), 5, 3)
    with pytest.raises(ValueError, match="whole numbers"):
        WatchRule("r", ("a",), ("b",), 1.5, 3, "working_days")
    settings = CIPS.settings(watch_limits={"credit_within_1h": (1200, 1800)})
    (rule,) = CIPS.rules(settings)
    assert (rule.warning, rule.due) == (1200, 1800)
    with pytest.raises(ValueError, match="TRADEPULSE_CIPS_WATCH_LIMITS names rules cips does not have"):
        CIPS.rules(CIPS.settings(watch_limits={"credit_in_1h": (1, 2)}))


def test_the_flag_is_the_stage_the_case_is_at_and_a_calendar_gap_flags_nothing() -> None:
    w = Wiring(TAXREFUND, partitions=1)
    refund = w.pipeline.cases.kinds["refund"]
    case = refund.empty("R")
    for e in _refund_events(
        "R", 1, declared="2025-09-01T09:00:00+08:00", accepted="2025-09-04T09:00:00+08:00"
    ):
        case = case.apply(_decoded(e))
    rules = TAXREFUND.rules(TAXREFUND.settings())
    flag, next_s = flag_of(rules, case, _t("2025-09-05T12:00:00+08:00"), CAL)
    assert flag is not None
    assert (flag.rule, flag.state, flag.reached) == ("refund_acceptance", "cleared", "breached")
    assert next_s == _t("2025-09-08T00:00:00+08:00")  # Mon: working day 2 after Thu 4 Sep
    flag, _ = flag_of(rules, case, _t("2025-09-08T00:00:00+08:00"), CAL)
    assert flag is not None
    assert (flag.rule, flag.state) == ("refund_issue_categories_1_2", "warning")
    late = refund.empty("L")
    for e in _refund_events("L", 1, declared="2099-12-28T09:00:00+08:00"):
        late = late.apply(_decoded(e))
    assert flag_of(rules, late, _t("2100-02-01T00:00:00+08:00"), CAL) == (None, float("inf"))


def _decoded(event: dict[str, Any]) -> Any:
    from services.contract.codec import decode
    from services.taxrefund.events import CATALOG

    raw = orjson.dumps(event)
    return decode(
        raw, [("content-type", b"application/cloudevents+json")], catalog=CATALOG, max_bytes=len(raw)
    )


# -- the engine: clock, late events, idle partitions, restart -----------------------------------


def _clock_events(at: str, n: int = 1) -> list[dict[str, Any]]:
    """Payments that only move the watermark (credited at once, never flagged)."""
    return [e for i in range(n) for e in _payment_events(f"clock-{at}-{i}", initiated=at, credited=at)]


def test_a_payment_is_flagged_at_50_and_60_minutes_of_event_time_and_cleared_by_its_credit() -> None:
    w = Wiring(CIPS, partitions=1)  # out-of-orderness 600 s: the clock is the newest event less 10 min
    _feed(w, _payment_events("P1", initiated="2025-03-03T10:00:00+08:00"))
    assert _states(w) == {}
    _feed(w, _clock_events("2025-03-03T11:00:00+08:00"))  # clock 10:50
    assert _states(w) == {"P1": ("credit_within_1h", "warning", _t("2025-03-03T10:50:00+08:00"))}
    _feed(w, _clock_events("2025-03-03T11:10:00+08:00"))  # clock 11:00
    assert _states(w) == {"P1": ("credit_within_1h", "breached", _t("2025-03-03T11:00:00+08:00"))}
    assert _breached_payments() == 1
    _feed(w, _payment_events("P1", credited="2025-03-03T11:20:00+08:00"))
    (record,) = _view(w).values()
    assert (record["state"], record["reached"]) == ("cleared", "breached")
    assert (_t(record["since"]), _t(record["due"])) == (
        _t("2025-03-03T11:20:00+08:00"),
        _t("2025-03-03T11:00:00+08:00"),
    )
    assert "debtor_agent" in record["attributes"]
    assert _breached_payments() == 0
    assert [orjson.loads(o.value or b"")["data"]["state"] for o in w.written(TOPICS.watch)] == [
        "warning",
        "breached",
        "cleared",
    ]  # one record per change, none repeated


def test_a_late_event_showing_the_case_ended_before_its_warning_withdraws_the_flag() -> None:
    w = Wiring(CIPS, partitions=1)
    _feed(
        w,
        _payment_events("P1", initiated="2025-03-03T10:00:00+08:00")
        + _clock_events("2025-03-03T11:05:00+08:00"),
    )
    assert _states(w)["P1"][1] == "warning"
    _feed(w, _payment_events("P1", credited="2025-03-03T10:30:00+08:00"))  # late: credited after 30 min
    assert _states(w) == {}
    assert w.written(TOPICS.watch)[-1].value is None  # a tombstone on the compacted topic


def test_an_idle_partition_runs_on_with_wall_time_only_as_far_as_the_bound() -> None:
    """A producer outage: no event after 10:00. Wall time moves the clock of the idle partition, at
    most WATCH_IDLE_MAX_S (here 30 min) past its watermark (09:50): what falls due by 10:20 is
    flagged, nothing later, however long the outage lasts."""
    settings = CIPS.settings(watch_idle_max_s=1800.0, idle_after_s=60.0)
    w = Wiring(CIPS, partitions=1, settings=settings)
    events = (
        _payment_events("P-early", initiated="2025-03-03T09:25:00+08:00")
        + _payment_events("P-late", initiated="2025-03-03T09:40:00+08:00")
        + _clock_events("2025-03-03T10:00:00+08:00")
    )
    _feed(w, events, wall_s=WALL)
    assert _states(w) == {}  # clock 09:50: P-early's warning point is 10:15
    _watch(w, WALL + 30)  # not idle yet
    assert _states(w) == {}
    _watch(w, WALL + 20 * 60)  # idle 20 min: clock 10:10
    assert _states(w) == {}
    _watch(w, WALL + 3 * 86400)  # idle three days: clock 10:20, no further
    assert _states(w) == {"P-early": ("credit_within_1h", "warning", _t("2025-03-03T10:15:00+08:00"))}
    assert w.pipeline.cases.clock() == _t("2025-03-03T10:20:00+08:00")
    _feed(w, _clock_events("2025-03-03T10:41:00+08:00"), wall_s=WALL + 3 * 86400 + 1)  # events again: 10:31
    assert _states(w) == {
        "P-early": ("credit_within_1h", "breached", _t("2025-03-03T10:25:00+08:00")),
        "P-late": ("credit_within_1h", "warning", _t("2025-03-03T10:30:00+08:00")),
    }


def test_refunds_stall_at_each_stage_across_a_weekend_and_national_day() -> None:
    """Declared Fri 26 Sep 2025 (Sun 28 and Sat 11 Oct are working days; 1-8 Oct holidays)."""
    w = Wiring(TAXREFUND, partitions=1)  # out-of-orderness 1 h
    stalled = (
        _refund_events("R-accept", 3, declared="2025-09-26T15:00:00+08:00")
        + _refund_events(
            "R-issue12", 2, declared="2025-09-25T09:00:00+08:00", accepted="2025-09-30T10:00:00+08:00"
        )
        + _refund_events(
            "R-issue", 4, declared="2025-09-25T09:00:00+08:00", accepted="2025-09-29T10:00:00+08:00"
        )
        + _refund_events(
            "R-credit",
            1,
            declared="2025-09-22T09:00:00+08:00",
            accepted="2025-09-23T09:00:00+08:00",
            issued="2025-09-30T16:00:00+08:00",
        )
    )
    stalled.sort(key=lambda e: _t(e["time"]))

    def at(day: str) -> dict[str, tuple[str, str, float]]:
        """The flags once the clock reaches 00:00 of ``day`` (events up to then fed first)."""
        while stalled and _t(stalled[0]["time"]) < _t(f"{day}T01:00:00+08:00"):
            _feed(w, [stalled.pop(0)])
        _feed(
            w,
            _refund_events(
                f"clock-{day}",
                3,
                declared=f"{day}T01:00:00+08:00",
                accepted=f"{day}T01:00:00+08:00",
                issued=f"{day}T01:00:00+08:00",
                credited=f"{day}T01:00:00+08:00",
            ),
        )
        return {k: (r, s, since) for k, (r, s, since) in _states(w).items() if not k.startswith("clock")}

    def day(text: str) -> float:
        return _t(f"{text}T00:00:00+08:00")

    assert at("2025-09-28")["R-accept"] == ("refund_acceptance", "warning", day("2025-09-28"))  # a Sunday
    assert at("2025-09-30")["R-accept"] == ("refund_acceptance", "breached", day("2025-09-30"))
    # Over National Day no working day starts: each refund shows the stage it finished last.
    assert at("2025-10-08") == {
        "R-accept": ("refund_acceptance", "breached", day("2025-09-30")),
        "R-issue12": ("refund_acceptance", "cleared", _t("2025-09-30T10:00:00+08:00")),
        "R-issue": ("refund_acceptance", "cleared", _t("2025-09-29T10:00:00+08:00")),
        "R-credit": ("refund_issue_categories_1_2", "cleared", _t("2025-09-30T16:00:00+08:00")),
    }
    assert at("2025-10-09")["R-credit"] == ("refund_credit", "warning", day("2025-10-09"))
    assert at("2025-10-10")["R-issue12"] == ("refund_issue_categories_1_2", "warning", day("2025-10-10"))
    day11 = at("2025-10-11")  # a Saturday, and a working day
    assert day11["R-issue"] == ("refund_issue", "warning", day("2025-10-11"))
    assert day11["R-credit"] == ("refund_credit", "breached", day("2025-10-11"))
    assert at("2025-10-13")["R-issue12"] == ("refund_issue_categories_1_2", "breached", day("2025-10-13"))
    assert at("2025-10-14")["R-issue"] == ("refund_issue", "breached", day("2025-10-14"))
    _feed(
        w,
        _refund_events(
            "R-issue12", 2, issued="2025-10-13T11:00:00+08:00", credited="2025-10-13T12:00:00+08:00"
        ),
    )
    record = _view(w)["R-issue12"]  # issued late, credited an hour later: the credit rule never flagged it
    assert (record["rule"], record["state"], record["reached"]) == (
        "refund_issue_categories_1_2",
        "cleared",
        "breached",
    )
    assert not w.written(TOPICS.dlq)


def test_a_restart_keeps_the_flags_and_publishes_none_again() -> None:
    w = Wiring(CIPS, partitions=2)
    _feed(
        w,
        _payment_events("P1", initiated="2025-03-03T10:00:00+08:00")
        + _clock_events("2025-03-03T11:30:00+08:00", 8),
    )
    written = len(w.written(TOPICS.watch))
    assert written >= 1
    again = Wiring(CIPS, partitions=2, store=w.store)  # a new worker on the same state, as after kill -9
    _watch(again, WALL + 5)
    _feed(again, _clock_events("2025-03-03T11:31:00+08:00", 8), wall_s=WALL + 6)
    assert len(again.written(TOPICS.watch)) == written


# -- the corpus against the oracle, live and replayed -------------------------------------------


def _partition_clocks(domain: Domain, events: list[dict[str, Any]], partitions: int) -> dict[int, float]:
    ooo = domain.settings().out_of_orderness_s
    newest: dict[int, float] = defaultdict(lambda: float("-inf"))
    for e in events:
        p = partition_for(e["subject"], partitions)
        newest[p] = max(newest[p], _t(e["time"]))
    return {p: t - ooo for p, t in newest.items()}


def _expected(service: str, domain: Domain, events: list[dict[str, Any]], partitions: int) -> dict[str, Any]:
    out = {}
    for p, clock in _partition_clocks(domain, events, partitions).items():
        mine = [e for e in events if partition_for(e["subject"], partitions) == p]
        out.update(oracle(service, mine, clock))
    return out


@pytest.mark.parametrize(("service", "domain", "simulate", "cases", "span_s", "cut_s"), [
    ("taxrefund", TAXREFUND, simulate_refunds, 300, 40 * 86400, 29.5 * 86400),  # Tue 30 Sep, noon
    ("cips", CIPS, simulate_cips, 3000, 86400, 15.5 * 3600),  # cut at 15:30, within the operating day
])  # fmt: skip
@pytest.mark.parametrize("seed", [1, 2])
def test_the_corpus_cut_short_gives_the_oracle_s_flags_live_and_replayed(
    service: str, domain: Domain, simulate: Any, cases: int, span_s: float, cut_s: float, seed: int
) -> None:
    start = _t("2025-09-01T00:00:00+08:00")
    everything = simulate(cases=cases, seed=seed, start_s=start, span_s=span_s)
    cut = start + cut_s  # cases still under way at the cut stall
    events = [e for e in everything if _t(e["time"]) <= cut]
    rnd = random.Random(seed)
    shuffled = events + [rnd.choice(events) for _ in range(20)]
    rnd.shuffle(shuffled)  # out of order and duplicated, within the retention
    expected = _expected(service, domain, events, 4)
    assert {s for _, s, _ in expected.values()} >= {"warning", "breached", "cleared"}

    live = Wiring(domain, partitions=4)
    for i in range(0, len(shuffled), 50):
        _feed(live, shuffled[i : i + 50])
    replayed = Wiring(domain, partitions=4)
    replayed.run(shuffled, batch=len(shuffled))
    _watch(replayed, WALL)
    assert _states(live) == expected
    assert _view(replayed) == _view(live)


def test_a_flagged_case_dropped_unfinished_is_expired_at_its_expiry() -> None:
    settings = CIPS.settings(case_expiry_s=7200.0)
    w = Wiring(CIPS, partitions=1, settings=settings)
    _feed(
        w,
        _payment_events("P1", initiated="2025-03-03T10:00:00+08:00")
        + _clock_events("2025-03-03T11:20:00+08:00"),
    )
    assert _states(w)["P1"][1] == "breached"
    _feed(w, _clock_events("2025-03-03T13:30:00+08:00"))
    asyncio.run(w.tick(w.pipeline.housekeeping))
    record = _view(w)["P1"]
    assert (record["state"], record["reached"]) == ("expired", "breached")
    assert _t(record["since"]) == _t("2025-03-03T12:00:00+08:00")  # its last event + the case expiry
    assert _breached_payments() == 0


def _due_hours(w: Wiring, name: str) -> list[float]:
    """The hours (as instants) under which the due index holds the payment ``name``."""
    names = (n.split("|") for p in range(w.partitions) for n, _ in w.store.items(p, "due"))
    return [int(hour) * 3600.0 for hour, kind, key in names if kind == "payment" and NAMES.get(key) == name]


def test_an_open_case_keeps_its_place_in_the_due_index_until_the_clock_reaches_it() -> None:
    """An event in a new hour moves an open case's expiry; its entry in the due index stays where
    it is (earlier than needed: no write, no tombstone) until the clock reaches that hour, when the
    watch's timer moves it. Housekeeping expires the case at its expiry all the same."""
    w = Wiring(CIPS, partitions=1, settings=CIPS.settings(case_expiry_s=7200.0))
    _feed(
        w, _payment_events("P1", initiated="2025-03-03T10:00:00+08:00", submitted="2025-03-03T10:30:00+08:00")
    )
    assert _due_hours(w, "P1") == [_t("2025-03-03T13:00:00+08:00")]  # its expiry (12:30), rounded up
    _feed(w, _payment_events("P1", settled="2025-03-03T11:20:00+08:00"))  # expiry 13:20
    assert _due_hours(w, "P1") == [_t("2025-03-03T13:00:00+08:00")]
    _feed(w, _clock_events("2025-03-03T13:20:00+08:00"))  # the clock (13:10) reaches the hour held
    assert _due_hours(w, "P1") == [_t("2025-03-03T14:00:00+08:00")]
    asyncio.run(w.tick(w.pipeline.housekeeping))
    assert _view(w)["P1"]["state"] == "breached"
    _feed(w, _clock_events("2025-03-03T14:10:00+08:00"))
    asyncio.run(w.tick(w.pipeline.housekeeping))
    record = _view(w)["P1"]
    assert (record["state"], _t(record["since"])) == ("expired", _t("2025-03-03T13:20:00+08:00"))
    assert _due_hours(w, "P1") == []


def test_the_watch_page_lists_flagged_cases_oldest_first_across_partitions() -> None:
    w = Wiring(CIPS, partitions=4)
    stalled = [
        e for i in range(6) for e in _payment_events(f"S{i}", initiated=f"2025-03-03T10:0{i}:00+08:00")
    ]
    _feed(w, stalled + [e for i in range(40) for e in _clock_events(f"2025-03-03T11:3{i % 10}:00+08:00", 1)])
    rules, states = ["credit_within_1h"], ["warning", "breached"]
    pages, after = [], ""
    while True:
        page = w.pipeline.watching(rules, states, after, 4)
        pages.append([NAMES[c["case_id"]] for c in page["cases"]])
        if page["next"] is None:
            break
        after = page["next"]
    assert pages == [["S0", "S1", "S2", "S3"], ["S4", "S5"]]
    assert w.pipeline.watching(rules, ["warning"], "", 10)["cases"] == []


def _payments_read(w: Wiring) -> list[str]:
    """From now on, the payments ``w``'s engine reads from its store (a list that grows)."""
    reads: list[str] = []
    get = w.store.get

    def counting(partition: int, kind: str, name: str) -> bytes | None:
        if kind == "payment":
            reads.append(name)
        return get(partition, kind, name)

    w.store.get = counting  # type: ignore[method-assign]
    return reads


def test_the_clock_reads_only_the_cases_whose_flag_changes() -> None:
    """2,000 open payments and 10 started earlier: moving the clock past the early ones' warning and
    deadline reads those 10 cases and no other (the watch index, not a scan); the others' warning
    falls in a later hour, where the due index keeps them until the clock's hour reaches it."""
    w = Wiring(CIPS, partitions=2)
    early = [e for i in range(10) for e in _payment_events(f"E{i}", initiated="2025-03-03T08:20:00+08:00")]
    late = [e for i in range(2000) for e in _payment_events(f"L{i}", initiated="2025-03-03T09:15:00+08:00")]
    _feed(w, early + late)  # clock 09:05: E warns at 09:10, L at 10:05
    assert _states(w) == {}
    engine = w.pipeline.cases
    engine.cache = type(engine.cache)(engine.cache.capacity)  # nothing decoded: every case read counts
    reads = _payments_read(w)
    assert engine.settings.watch_idle_max_s > 2400 > engine.settings.idle_after_s
    _watch(w, WALL + 2400)  # idle 40 min: the clock runs on from 09:05 to 09:45
    assert sorted(NAMES.get(r, r) for r in reads) == sorted(f"E{i}" for i in range(10))
    assert {s for _, s, _ in _states(w).values()} == {"breached"}
    reads.clear()
    _watch(w, WALL + 3600)  # 10:05: the hour of L's warning (woken, read once) and L's warning itself
    assert len(reads) == 2000
    assert {s for _, s, _ in _states(w).values()} == {"breached", "warning"}


def test_cases_kept_before_the_rules_are_flagged_once_the_watch_starts() -> None:
    """The watch added to a running service (or a limit changed): a partition whose cases were
    kept under other rules is gone through once, and its stalled cases are flagged without an event."""
    unwatched = Wiring(dataclasses.replace(CIPS, watch=()), partitions=2)
    _feed(
        unwatched,
        _payment_events("OLD", initiated="2025-03-03T08:00:00+08:00")
        + _clock_events("2025-03-03T10:00:00+08:00", 6),
    )
    assert unwatched.written(TOPICS.watch) == []
    watched = Wiring(CIPS, partitions=2, store=unwatched.store)
    _watch(watched, WALL)
    assert _states(watched) == {"OLD": ("credit_within_1h", "breached", _t("2025-03-03T09:00:00+08:00"))}
    stricter = Wiring(CIPS, partitions=2, store=unwatched.store,
                      settings=CIPS.settings(watch_limits={"credit_within_1h": (600, 1200)}))  # fmt: skip
    _watch(stricter, WALL)
    assert _states(stricter)["OLD"] == ("credit_within_1h", "breached", _t("2025-03-03T08:20:00+08:00"))
    again = Wiring(CIPS, partitions=2, store=unwatched.store,
                   settings=CIPS.settings(watch_limits={"credit_within_1h": (600, 1200)}))  # fmt: skip
    reads = _payments_read(again)
    _watch(again, WALL)
    assert reads == []  # the same rules: nothing gone through again


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ({"after": ""}, ValueError),  # present, so it must be a cursor (Schemathesis found it taken)
        ({"after": "12|x"}, ValueError),
        ({"limit": "0"}, ValueError),
        ({"limit": "²"}, ValueError),  # a digit to str.isdigit, not to int()
        ({"state": "cleared"}, ValueError),
        ({"rules": "x"}, ValueError),
        ({"rule": "nope"}, LookupError),
    ],
)
def test_the_watch_page_refuses_what_its_document_refuses(
    query: dict[str, str], error: type[Exception]
) -> None:
    with pytest.raises(error):
        watch_query(query, ["credit_within_1h"])
    assert watch_query({"after": "001796197322395|k", "limit": "7"}, ["r"]) == (
        ["r"],
        ["warning", "breached"],
        "001796197322395|k",
        7,
    )
