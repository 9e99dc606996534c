"""docs/contract.md is the contract in prose: everything the code publishes or accepts is named
there, and it agrees with the product owner's contract (../shared/docs/contract.md) when that is
beside the checkout."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from services.contract.topics import dlq_topic, indicator_topic
from services.engine.metrics import gauge_name
from services.registry import DOMAINS, EVENT_TYPES

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = (ROOT / "docs" / "contract.md").read_text()
SHARED = ROOT.parent / "shared" / "docs" / "contract.md"


def _metric_names() -> set[str]:
    """Every metric the services register (their metrics modules imported), by exposed name, and the
    gauges that mirror their indicators."""
    for name in DOMAINS:
        importlib.import_module(f"services.{name}.metrics")
    names = {gauge_name(spec) for d in DOMAINS.values() for spec in d.indicators}
    for family in REGISTRY.collect():
        if family.name.startswith("tradepulse_"):
            names.add(family.name + ("_total" if family.type == "counter" else ""))
    return names


def _indicators() -> set[str]:
    return {spec.name for d in DOMAINS.values() for spec in d.indicators}


@pytest.mark.parametrize(
    ("what", "names"),
    [
        ("event type", set(EVENT_TYPES)),
        ("input topic", {d.topic for d in DOMAINS.values()}),
        ("dead-letter topic pattern", {dlq_topic("<input topic>")}),
        ("indicator topic", {indicator_topic(n) for n in DOMAINS}),
        ("indicator", _indicators()),
        ("metric", _metric_names()),
    ],
)
def test_everything_the_code_names_is_in_the_contract(what: str, names: set[str]) -> None:
    missing = sorted(n for n in names if f"`{n}`" not in CONTRACT and n not in CONTRACT)
    assert names
    assert missing == [], f"{what}s missing from docs/contract.md"


def _rows(text: str) -> dict[str, set[str]]:
    """Table rows by their first cell's name: the set of `code` tokens in the rest of the row."""
    rows = {}
    for line in text.splitlines():
        cells = line.split("|")
        if line.startswith("| `") and len(cells) > 3:
            first = re.findall(r"`([^`]+)`", cells[1])
            if first:
                rows[first[0]] = set(re.findall(r"`([^`]+)`", "|".join(cells[2:])))
    return rows


@pytest.mark.skipif(not SHARED.exists(), reason="../shared/docs/contract.md not beside the checkout")
def test_every_row_of_the_owners_contract_is_here_with_the_same_names() -> None:
    ours = _rows(CONTRACT)
    theirs = _rows(SHARED.read_text())
    missing = sorted(set(theirs) - set(ours))
    assert missing == []
    differing = {k: sorted(v ^ ours[k]) for k, v in theirs.items() if not v <= ours[k]}
    assert differing == {}


SECTION_8 = CONTRACT.split("## 8.", 1)[1]


def test_section_8_names_the_negative_list_the_rules_and_the_reasons_the_code_applies() -> None:
    """The release's constants, read from the code, against section 8 of docs/contract.md."""
    from services.release.disclosure import REASONS
    from services.release.policy import DEFAULT_RULES, NEGATIVE_LIST, RELEASED_VALUES, releasable
    from services.release.service import RELEASE_TYPE, release_topic

    negative = SECTION_8.split("**Negative list", 1)[1].split("**Contributor", 1)[0]
    named = set(re.findall(r"`([^`]+)`", negative))
    assert named == set(NEGATIVE_LIST)
    contributors = SECTION_8.split("**Contributor**", 1)[1].split("**Rules", 1)[0]
    declared = {d.contributor for d in DOMAINS.values() if d.contributor}
    assert declared == set(re.findall(r"`([^`]+)`", contributors))
    rules = _rows(SECTION_8)
    assert f"{DEFAULT_RULES.min_cases} cases" in SECTION_8
    assert "min_cases" in rules
    assert f"{DEFAULT_RULES.min_contributors} distinct contributors" in SECTION_8
    assert f"{DEFAULT_RULES.min_cases_quantile} cases" in SECTION_8
    top1, top2 = round(DEFAULT_RULES.dominance_top1 * 100), round(DEFAULT_RULES.dominance_top2 * 100)
    assert f"<= {top1} %" in SECTION_8
    assert f"<= {top2} %" in SECTION_8
    assert all(f"`{r}`" in SECTION_8 for r in REASONS)
    assert all(f"`{v}`" in SECTION_8 for values in RELEASED_VALUES.values() for v in values)
    assert f"`{release_topic('<destination>')}`" in SECTION_8
    assert f"`{RELEASE_TYPE}`" in SECTION_8
    assert all(f"`{name}`" in SECTION_8 for name in releasable(DOMAINS))
