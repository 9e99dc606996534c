"""The cross-border release's policies and disclosure control, without a broker (the service on the
real broker and PostgreSQL: tests/integration/test_release.py)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from services.contract.records import ReleaseEvent
from services.registry import DOMAINS
from services.release.disclosure import Member, decide, month_window, window_of
from services.release.policy import DEFAULT_RULES, PolicyError, load_policies, load_policy
from services.release.service import record_of

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "deploy" / "release").glob("*.yaml"))
BASE = """destination: hk
name: test
version: "1"
cells:
  - {indicator: customs.release_time, window: P1D, dimensions: [customs_code, ie_flag]}
"""


def _policy(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return path


def test_the_shipped_policies_load_one_per_destination() -> None:
    policies = load_policies(SHIPPED, DOMAINS)
    assert {p.destination for p in policies} == {"hk", "mo"}
    assert all(len(p.sha256) == 64 and p.rules.min_cases >= DEFAULT_RULES.min_cases for p in policies)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ("dimensions: [customs_code, credit_class]", "credit_class"),
        ("dimensions: [entry_id]", "entry_id"),
        ("dimensions: [consignee_uscc]", "consignee_uscc"),
        ("dimensions: [ie_flag], values: [count, max]", "max"),
        ("dimensions: [ie_flag], values: [p99]", "p99"),
        ("dimensions: [ie_flag], buyer_name: x", "buyer_name"),
    ],
)
def test_the_negative_list_wins_wherever_a_policy_names_its_fields(
    tmp_path: Path, change: str, named: str
) -> None:
    text = BASE.replace("dimensions: [customs_code, ie_flag]", change)
    with pytest.raises(PolicyError, match=f"names {named}, .*negative list") as info:
        load_policy(_policy(tmp_path, text), DOMAINS)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (BASE + "rules: {min_cases: 5}\n", "rules.min_cases 5 is below the contract's 10"),
        (BASE + "rules: {dominance_top1: 0.6}\n", "rules.dominance_top1 0.6 is above the contract's 0.5"),
        (BASE + "rules: {min_cases_quantile: 19}\n", "min_cases_quantile 19 is below"),
        (BASE.replace("window: P1D", "window: PT1H"), "window 'PT1H' is not P1D or P1M"),
        (
            BASE.replace("customs.release_time", "customs.release_speed"),
            "unknown indicator 'customs.release_speed'",
        ),
        (BASE.replace("customs.release_time", "cycle.export_to_cash"), "unknown indicator"),
        (BASE.replace("[customs_code, ie_flag]", "[purpose]"), "has no dimension 'purpose'"),
        (BASE.replace("version", "versoin"), "versoin"),
        ("- just a list\n", "expected a mapping"),
    ],
)
def test_a_policy_that_loosens_or_names_what_does_not_exist_is_one_line(
    tmp_path: Path, text: str, problem: str
) -> None:
    with pytest.raises(PolicyError) as info:
        load_policy(_policy(tmp_path, text), DOMAINS)
    assert problem in str(info.value)
    assert "\n" not in str(info.value)


def test_tightening_is_allowed(tmp_path: Path) -> None:
    text = BASE + "rules: {min_cases: 30, min_contributors: 5, dominance_top1: 0.4, min_cases_quantile: 50}\n"
    policy = load_policy(_policy(tmp_path, text), DOMAINS)
    assert policy.rules.min_cases == 30


def _members(cells: dict[tuple[str, str], list[str]], value: float = 600.0) -> list[Member]:
    """(port, ie) -> contributors, one case each, on 2025-03-03 noon."""
    at = window_of("customs.release_time", "P1D", 1740974400).start + 43200
    return [
        Member(
            at, (("customs_code", port), ("ie_flag", ie), ("transport_mode", "2")), value + i, Decimal(0), who
        )
        for (port, ie), whos in cells.items()
        for i, who in enumerate(whos)
    ]


def _firms(n: int, k: int) -> list[str]:
    return [f"firm{i % k}" for i in range(n)]


def test_a_total_with_one_suppressed_cell_loses_its_smallest_released_cell_too(tmp_path: Path) -> None:
    policy = load_policy(_policy(tmp_path, BASE), DOMAINS)
    members = _members(
        {("5141", "E"): _firms(25, 5), ("5165", "E"): _firms(12, 4), ("5130", "E"): _firms(4, 4)}
    )
    w = window_of("customs.release_time", "P1D", members[0].at_s)
    cells = {
        dict(d.dims).get("customs_code", "all"): d for d in decide(policy, w, "duration", "seconds", members)
    }
    assert (cells["5130"].status, cells["5130"].reason) == ("suppressed", "min_cases")
    assert (cells["5165"].status, cells["5165"].reason) == ("suppressed", "secondary")
    assert cells["5141"].status == "released"
    assert cells["all"].status == "released"
    # 600 ... 624 s: mean 612, nearest-rank p50 612 (13th), p90 622 (23rd), each to 2 x 360 s
    assert cells["5141"].released == {"count": 25, "mean": 720, "p50": 720, "p90": 720}


def test_a_total_whose_only_cell_is_suppressed_is_suppressed_itself(tmp_path: Path) -> None:
    policy = load_policy(_policy(tmp_path, BASE), DOMAINS)
    members = _members({("5141", "E"): _firms(12, 2)})
    w = window_of("customs.release_time", "P1D", members[0].at_s)
    decided = {d.dims: (d.status, d.reason) for d in decide(policy, w, "duration", "seconds", members)}
    assert decided == {
        (("customs_code", "5141"), ("ie_flag", "E")): ("suppressed", "min_contributors"),
        (): ("suppressed", "min_contributors"),
    }


def test_rounding_and_the_quantile_rule(tmp_path: Path) -> None:
    policy = load_policy(_policy(tmp_path, BASE), DOMAINS)
    members = _members({("5141", "E"): _firms(12, 4)}, value=1000.0)  # 1000 ... 1011 s
    w = window_of("customs.release_time", "P1D", members[0].at_s)
    cell = next(d for d in decide(policy, w, "duration", "seconds", members) if d.dims)
    assert cell.released == {"count": 10, "mean": 1080}  # 12 -> 10; 1005.5 s -> 3 x 360; no p50/p90 under 20


def test_amounts_round_to_three_significant_digits_and_dominance_counts_contributors(tmp_path: Path) -> None:
    text = BASE.replace("customs.release_time", "cips.settled_value").replace(
        "[customs_code, ie_flag]", "[purpose]"
    )
    policy = load_policy(_policy(tmp_path, text), DOMAINS)
    at = 1740974400 + 3600
    dims = (("msg_type", "customer"), ("purpose", "goods"))
    even = [Member(at, dims, 0.0, Decimal("123456.78"), f"bank{i % 4}") for i in range(12)]
    w = window_of("cips.settled_value", "P1D", at)
    rollup = next(d for d in decide(policy, w, "amount", "cny", even) if not d.dims)
    assert rollup.released == {"sum": "1480000"}  # 1,481,481.36
    one_bank = [*even, Member(at, dims, 0.0, Decimal("9000000"), "bank0")]
    rollup = next(d for d in decide(policy, w, "amount", "cny", one_bank) if not d.dims)
    assert (rollup.status, rollup.reason) == ("suppressed", "dominance")


def test_months_are_calendar_months_in_shanghai() -> None:
    start, end = month_window(1740758400 + 3600)  # 2025-03-01T00:00+08:00 plus an hour
    assert (end - start) / 86400 == 31
    assert window_of("x", "P1M", start - 1).end == start


def test_every_record_is_a_valid_release_event(tmp_path: Path) -> None:
    policy = load_policy(_policy(tmp_path, BASE), DOMAINS)
    members = _members(
        {("5141", "E"): _firms(25, 5), ("5130", "E"): _firms(3, 3), ("5165", "E"): _firms(12, 4)}
    )
    w = window_of("customs.release_time", "P1D", members[0].at_s)
    for d in decide(policy, w, "duration", "seconds", members):
        record = record_of(policy, d, "seconds", "2025-03-04T01:00:00+08:00")
        event = ReleaseEvent.model_validate(record, strict=False)
        assert event.subject == event.data.key == d.key
