"""Release policies (docs/contract.md section 8): what may leave for one destination, and nothing else.

A policy is a YAML file an operator versions with the partnership's agreement. It names cells
(an indicator, a window of a day or a calendar month, a set of dimensions) and may tighten the
contract's disclosure rules, never loosen them. The negative list is checked before anything else
and always wins: a policy that names one of its fields does not load, whatever else it says, so a
mistake in a policy can only withhold data, never release it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.engine.domain import Domain
from services.engine.windows import IndicatorSpec
from services.runtime.kafka_admin import StartupError

__all__ = [
    "DEFAULT_RULES",
    "NEGATIVE_LIST",
    "RELEASED_VALUES",
    "Cell",
    "Policy",
    "PolicyError",
    "Releasable",
    "Rules",
    "load_policies",
    "load_policy",
    "negative_list",
    "releasable",
]

NEGATIVE_LIST: Mapping[str, str] = {
    **dict.fromkeys(
        ("entry_id", "bill_no", "refund_id", "uetr", "order_no", "invt_no", "logistics_no"),
        "a case id or document number",
    ),
    **dict.fromkeys(
        (
            "consignee_uscc",
            "taxpayer_uscc",
            "ebp_code",
            "ebc_code",
            "pay_code",
            "logistics_code",
            "debtor_agent",
            "creditor_agent",
        ),
        "an enterprise, bank or platform identifier",
    ),
    "credit_class": "a customs rating of named companies",
    **dict.fromkeys(("min", "max", "p95", "p99"), "a cell's extreme or tail value (one case's)"),
    **dict.fromkeys(("late_events", "revision"), "what tells one revision from another"),
}
"""Field -> why it never leaves (docs/contract.md section 8), whatever a policy says; with the
personal data of every catalog (:func:`negative_list`)."""


def negative_list(domains: Mapping[str, Domain]) -> dict[str, str]:
    """The negative list: the contract's fields and every field a catalog marks as personal data."""
    personal = {
        name: "personal data (contract section 6)"
        for d in domains.values()
        for spec in d.catalog.events.values()
        for name in spec.data_model.personal_fields()
    }
    return {**personal, **NEGATIVE_LIST}


RELEASED_VALUES: Mapping[str, tuple[str, ...]] = {
    "duration": ("count", "mean", "p50", "p90"),
    "ratio": ("numerator", "denominator", "value"),
    "amount": ("sum",),
}
"""The values a released cell carries, by the kind of its indicator (a policy may name fewer)."""

WINDOWS = ("P1D", "P1M")


class Rules(BaseModel):
    """The cell rules; the defaults are the contract's, and a policy may only tighten them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_cases: int = 10
    min_contributors: int = 3
    dominance_top1: float = 0.50
    dominance_top2: float = 0.67
    min_cases_quantile: int = 20

    def loosened(self) -> str | None:
        """The first rule looser than the contract's default, as words, or None."""
        d = DEFAULT_RULES
        for name in ("min_cases", "min_contributors", "min_cases_quantile"):
            if getattr(self, name) < getattr(d, name):
                return f"rules.{name} {getattr(self, name)} is below the contract's {getattr(d, name)}"
        for name in ("dominance_top1", "dominance_top2"):
            if getattr(self, name) > getattr(d, name):
                return f"rules.{name} {getattr(self, name)} is above the contract's {getattr(d, name)}"
        return None


DEFAULT_RULES = Rules()


class _CellFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    indicator: str
    window: str
    dimensions: list[str] = []
    values: list[str] | None = None


class _PolicyFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    destination: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,30}$")]
    name: Annotated[str, Field(min_length=1, max_length=100)]
    version: Annotated[str, Field(min_length=1, max_length=40)]
    description: str = ""
    rules: dict[str, Any] = {}
    cells: Annotated[list[dict[str, Any]], Field(min_length=1)]


@dataclass(frozen=True, slots=True)
class Releasable:
    """An indicator a policy may name: its spec and the domain whose case topic carries it."""

    spec: IndicatorSpec
    domain: Domain


def releasable(domains: Mapping[str, Domain]) -> dict[str, Releasable]:
    """Indicators whose cases can be placed in windows from their case records: those of domains
    with producers' input and a contributor, whose measure one milestone places."""
    return {
        spec.name: Releasable(spec, d)
        for d in domains.values()
        if not d.derived and d.contributor
        for spec in d.indicators
        if spec.milestone
    }


@dataclass(frozen=True, slots=True)
class Cell:
    """One line of a policy: an indicator at a window, by a set of dimensions (sorted)."""

    indicator: str
    window: Literal["P1D", "P1M"]
    dimensions: tuple[str, ...]
    values: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Policy:
    destination: str
    name: str
    version: str
    sha256: str
    rules: Rules
    cells: tuple[Cell, ...]
    path: str

    @property
    def indicators(self) -> frozenset[str]:
        return frozenset(c.indicator for c in self.cells)

    def releases(self, indicator: str, window: str) -> bool:
        return any(c.indicator == indicator and c.window == window for c in self.cells)

    def cells_of(self, indicator: str, window: str) -> list[tuple[str, ...]]:
        """The dimension sets released of one indicator at one window: each the policy names, and
        the rollup ``()`` over all (the total every finer cell adds up to)."""
        sets = {c.dimensions for c in self.cells if c.indicator == indicator and c.window == window}
        return sorted(sets | {()}, key=lambda s: (len(s), s))

    def values_of(self, indicator: str, window: str) -> tuple[str, ...]:
        """The values released of an indicator at a window (the union of what its lines name)."""
        names = {v for c in self.cells if c.indicator == indicator and c.window == window for v in c.values}
        return tuple(sorted(names))


class PolicyError(StartupError):
    """A policy that must not load; the message is one line naming the file and the problem."""


def load_policy(path: Path, domains: Mapping[str, Domain]) -> Policy:
    """Read, check and hash a policy file; PolicyError names the first problem."""
    where, indicators, negative = str(path), releasable(domains), negative_list(domains)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PolicyError(f"release policy {where}: cannot be read ({exc.strerror})") from None
    try:
        doc = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise PolicyError(f"release policy {where}: not YAML ({' '.join(str(exc).split())})") from None
    if not isinstance(doc, dict):
        raise PolicyError(
            f"release policy {where}: expected a mapping with destination, name, version, cells"
        )
    forbidden = _negative(doc, "", negative)
    if forbidden is not None:
        at, field = forbidden
        msg = f"release policy {where}: {at} names {field}, {negative[field]}: never released (negative list)"
        raise PolicyError(msg)
    try:
        top = _PolicyFile.model_validate(doc)
        rules = Rules.model_validate(top.rules)
    except ValidationError as exc:
        raise PolicyError(f"release policy {where}: {_first(exc)}") from None
    loose = rules.loosened()
    if loose is not None:
        raise PolicyError(f"release policy {where}: {loose} (a policy may tighten a rule, never loosen it)")
    cells = tuple(_cell(where, i, c, indicators) for i, c in enumerate(top.cells))
    return Policy(
        destination=top.destination,
        name=top.name,
        version=top.version,
        sha256=hashlib.sha256(raw).hexdigest(),
        rules=rules,
        cells=cells,
        path=where,
    )


def load_policies(paths: Sequence[Path], domains: Mapping[str, Domain]) -> list[Policy]:
    """Every policy, one per destination."""
    policies = [load_policy(p, domains) for p in paths]
    seen: dict[str, str] = {}
    for p in policies:
        if p.destination in seen:
            msg = f"release policy {p.path}: destination {p.destination!r} is also {seen[p.destination]}'s"
            raise PolicyError(msg)
        seen[p.destination] = p.path
    return policies


def _negative(doc: Any, at: str, negative: Mapping[str, str]) -> tuple[str, str] | None:
    """The first negative-list field a policy names anywhere (as a key or a value), with where."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            if isinstance(k, str) and k in negative:
                return (at + "." + k).lstrip("."), k
            found = _negative(v, f"{at}.{k}", negative)
            if found is not None:
                return found
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            found = _negative(v, f"{at}[{i}]", negative)
            if found is not None:
                return found
    elif isinstance(doc, str) and doc in negative:
        return at.lstrip("."), doc
    return None


def _first(exc: ValidationError) -> str:
    """The problem to name: an unknown field first (a typo also makes its right name missing)."""
    errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
    err = errors[0]
    loc = ".".join(str(p) for p in err["loc"]) or "the file"
    if err["type"] == "extra_forbidden":
        return f"unknown field {loc!r}"
    return f"{loc}: {err['msg']}"


def _cell(where: str, i: int, doc: Mapping[str, Any], indicators: Mapping[str, Releasable]) -> Cell:
    at = f"release policy {where}: cells[{i}]"
    try:
        c = _CellFile.model_validate(doc)
    except ValidationError as exc:
        raise PolicyError(f"{at}.{_first(exc)}") from None
    found = indicators.get(c.indicator)
    if found is None:
        known = ", ".join(sorted(indicators))
        raise PolicyError(f"{at}: unknown indicator {c.indicator!r} (releasable: {known})")
    if c.window not in WINDOWS:
        msg = f"{at}: window {c.window!r} is not P1D or P1M (nothing finer than a day leaves)"
        raise PolicyError(msg)
    spec = found.spec
    for name in c.dimensions:
        if name not in spec.dimensions:
            msg = f"{at}: {c.indicator} has no dimension {name!r} (it has {', '.join(spec.dimensions)})"
            raise PolicyError(msg)
    if len(set(c.dimensions)) != len(c.dimensions):
        raise PolicyError(f"{at}: a dimension is named twice")
    allowed = RELEASED_VALUES[spec.kind]
    values = tuple(c.values) if c.values is not None else allowed
    for v in values:
        if v not in allowed:
            msg = f"{at}: value {v!r} is not released for a {spec.kind} (only {', '.join(allowed)})"
            raise PolicyError(msg)
    window: Literal["P1D", "P1M"] = "P1D" if c.window == "P1D" else "P1M"
    return Cell(c.indicator, window, tuple(sorted(c.dimensions)), values)
