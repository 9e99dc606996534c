"""What a domain gives the engine: one :class:`Domain` value.

A domain is its input topic's event catalog, its case types (pure folds, :class:`Case`), how an
event finds its case (``route``), its indicators, its settings and an observer for its metrics.
The engine does the rest: partitions, lateness, windows, state, corrections, outputs and commit
order (docs/design.md). A case type may receive *messages* from other cases; that is how a join
works (customs: an arrival, keyed by bill of lading, reaches the declarations that name the bill).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, ClassVar, Literal, NamedTuple, Self, cast

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.contract.catalog import Catalog
from services.contract.envelope import Event
from services.engine.registers import Milestones, evolve
from services.engine.watch import WatchRule
from services.engine.windows import Contribution, IndicatorSpec

__all__ = ["NO_MESSAGES", "Case", "Domain", "EngineSettings", "Message", "Observer", "Status", "by_subject"]

Status = Literal["open", "completed"]


class Message(NamedTuple):
    """A change one case sends another: delivered (through the internal ``links`` topic) to the
    case ``key`` of kind ``kind``, which folds ``body`` (a frozen dataclass of the domain's
    ``messages``) with :meth:`Case.receive`."""

    kind: str
    key: str
    body: Any


NO_MESSAGES: tuple[Message, ...] = ()


class Case:
    """Base of case types: frozen dataclasses built from registers (services.engine.registers),
    whose first field is the case's key, so that ``CaseType(key)`` is a case of which nothing is
    known yet.

    Every method is pure. :meth:`apply` and :meth:`receive` return the case itself when nothing
    changed; the engine then does nothing more. The defaults suit a case without measures, links
    or backlog.
    """

    __slots__ = ()

    @classmethod
    def empty(cls, key: str) -> Self:
        """The case of which nothing is known yet."""
        case: Self = cast(Any, cls)(key)
        return case

    def apply(self, event: Event) -> Self:
        """The case after one of its events."""
        raise NotImplementedError

    def noted(self, milestone: str, event: Event, **offers: Any) -> Self:
        """The usual fold of one event: ``milestone`` at the event's time (if the earliest), and each
        named register (an :class:`EarliestWins` field) offered its value by the event. Only for case
        types with a ``milestones: Milestones`` field."""
        at, by = event.time_s, event.id
        milestones = cast(Milestones, self.milestones).earliest(milestone, at)
        return evolve(
            self, milestones=milestones, **{n: getattr(self, n).offer(v, at, by) for n, v in offers.items()}
        )

    def receive(self, message: Any) -> Self:
        """The case after a message from another case."""
        msg = f"{type(self).__name__} takes no message {type(message).__name__}"
        raise TypeError(msg)

    def measures(self, context: Any) -> Sequence[Contribution]:
        """Every measure the case has completed, from its state alone (``context``: the domain's
        configuration, e.g. the working-day calendar)."""
        return ()

    def messages(self, before: Self) -> Sequence[Message]:
        """What the change from ``before`` to this case tells other cases."""
        return NO_MESSAGES

    @property
    def milestones(self) -> Mapping[str, float]:
        """Milestone name to the earliest event time of it (the case record's milestones)."""
        return {}

    @property
    def group(self) -> str:
        """The label of the open-cases gauge (``ie_flag``, ``mgmt_category``, ...)."""
        return "all"

    @property
    def open(self) -> bool:
        """Part of the backlog the open-cases gauge counts."""
        return False

    @property
    def completed(self) -> bool:
        """Every measure is known: nothing later can change it but a correction. Completed cases are
        dropped once their windows leave the retention; others after the case expiry."""
        return False

    @property
    def status(self) -> Status:
        return "completed" if self.completed else "open"

    def attributes(self) -> Mapping[str, Any]:
        """Dimensions and links for the case record (docs/contract.md section 7); never personal data."""
        return {}

    def tallies(self, context: Any) -> Sequence[tuple[str, ...]]:
        """What the case counts in its partition's tallies, besides being open in its group: the
        engine keeps each tally's count over the cases (stored with them, restored without reading
        a case) and hands the counts to the observer, for gauges that would otherwise need every
        case (the backlog by age, say). Values from closed or bounded sets only."""
        return ()

    CLOCKS: ClassVar[tuple[str, ...]] = ()
    """The names of the clocks the case type may be under (:meth:`clocks`)."""

    def clocks(self, context: Any) -> Sequence[tuple[str, float]]:
        """(clock, time) pairs the case is indexed under, clocks named in :attr:`CLOCKS`: the engine
        tells the observer the earliest time under each (the oldest open payment), with one read."""
        return ()

    def parked(self, context: Any) -> Sequence[str]:
        """Tokens of the context the case's measures wait for (``calendar:2027``: a year the
        working-day calendar lacks). The engine indexes such cases and measures them again when
        :attr:`Domain.resolves` says a token is there, without reading any other case."""
        return ()


class Survey(NamedTuple):
    """What housekeeping tells an observer of one kind's cases on this worker."""

    tallies: Mapping[tuple[str, ...], int]
    """Cases by :meth:`Case.tallies` (``("open", group)`` and ``("parked", token)`` included)."""
    earliest: Mapping[str, float]
    """The earliest time under each of the kind's clocks (:meth:`Case.clocks`)."""
    newest_event_s: float
    """The newest event time of the worker's partitions."""


class Observer:
    """Domain metrics, as an observer of changes the engine made (the defaults observe nothing).

    ``kind`` is the case kind's name; ``added`` the contributions a change gave the case that it
    did not have before (histograms observe each measure once)."""

    def changed(self, kind: str, before: Any, after: Any, added: Sequence[Contribution]) -> None:
        """A case changed (``before`` is a new, empty case when it was not known yet)."""

    def expired(self, kind: str, case: Any) -> None:
        """An unfinished case was dropped after the case expiry."""

    def open_cases(self, kind: str, by_group: Mapping[str, int]) -> None:
        """Open cases of this worker, by group, after every change of them."""

    def housekeeping(self, kind: str, survey: Survey) -> None:
        """Called every housekeeping interval with what the engine knows of the kind's cases on
        this worker without reading them (:class:`Survey`)."""


class EngineSettings(BaseSettings):
    """Settings of the engine, per domain. A domain's :class:`Domain` value derives the class it
    reads (:func:`domain_settings`): prefix ``TRADEPULSE_<NAME>_`` from its name, its own defaults.
    A domain with settings of its own subclasses this and names the subclass in its ``Domain``."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    out_of_orderness_s: Annotated[float, Field(ge=0)] = 600.0
    grace_s: Annotated[float, Field(ge=0)] = 3600.0
    # Together they bound event-to-indicator latency (about their sum plus two batch hops): with
    # 0.25 s each, p99 0.66 s at 500 events/s; with 1 s each, 2.1 s (docs/performance.md). Faster
    # cadence cost no measurable throughput: bundles and records carry only what changed.
    indicator_interval_s: Annotated[float, Field(gt=0, le=3600)] = 0.25
    partials_interval_s: Annotated[float, Field(gt=0, le=60)] = 0.25
    idle_after_s: Annotated[float, Field(gt=0)] = 60.0
    window_retention_s: Annotated[float, Field(gt=0)] = 35 * 86400.0
    case_expiry_s: Annotated[float, Field(gt=0)] = 90 * 86400.0
    housekeeping_interval_s: Annotated[float, Field(gt=0)] = 60.0
    # The SLA watch (docs/design.md "SLA watch"): how often the clock is read, how far past its
    # watermark an idle partition's clock may run with wall time, and rule limits replacing the
    # domain's (rule name -> [warning, due], in the rule's unit).
    watch_interval_s: Annotated[float, Field(gt=0, le=3600)] = 5.0
    watch_idle_max_s: Annotated[float, Field(ge=0)] = 3600.0
    watch_limits: dict[str, tuple[Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)]]] = Field(
        default_factory=dict
    )


def domain_settings(
    name: str, base: type[EngineSettings], defaults: Mapping[str, Any]
) -> type[EngineSettings]:
    """``base`` read from the environment with the prefix ``TRADEPULSE_<NAME>_``, its defaults
    replaced by ``defaults`` (each keeps its field's type and bounds)."""
    unknown = sorted(set(defaults) - set(base.model_fields))
    if unknown:
        msg = f"{name}: defaults for settings that do not exist: {unknown}"
        raise TypeError(msg)
    annotations = {}
    for key in defaults:
        info = base.model_fields[key]
        annotations[key] = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
    namespace: dict[str, Any] = {
        "__module__": base.__module__,
        "__qualname__": f"{name.title()}Settings",
        "__annotations__": annotations,
        "model_config": SettingsConfigDict(
            env_prefix=f"TRADEPULSE_{name.upper()}_", extra="ignore", frozen=True
        ),
        **defaults,
    }
    return type(f"{name.title()}Settings", (base,), namespace)


def _no_context(settings: Any) -> None:
    return None


def _never(context: Any, token: str) -> bool:
    return False


def by_subject(kind: str) -> Callable[[Event], tuple[str, str]]:
    """The route of a domain with one case kind: every event belongs to the case its ``subject`` names."""

    def route(event: Event) -> tuple[str, str]:
        return kind, event.subject

    return route


@dataclass(frozen=True, slots=True)
class Domain:
    """One service, declared once.

    ``kinds`` maps each case kind's name to its type; the first is the domain's own case (the one
    with measures and a case record). ``route`` names the (kind, key) an input event belongs to,
    or None for an event the domain takes no interest in (counted as accepted, then ignored).

    A *derived* domain reads TradePulse's own case topics instead of producers' events: the topic of
    its catalog and ``inputs``, all decoded with the one catalog. It skips deduplication: its input
    records are revisions of states, which its folds take any number of times, and an upstream
    restart may publish a revision again with more in it under the same id.
    """

    name: str
    catalog: Catalog
    kinds: Mapping[str, type[Case]]
    route: Callable[[Event], tuple[str, str] | None]
    indicators: Sequence[IndicatorSpec]
    port: int
    settings: type[EngineSettings] = EngineSettings
    """Replaced, when the value is made, by the class the domain reads (:func:`domain_settings`)."""
    defaults: Mapping[str, Any] = field(default_factory=dict)
    """The domain's own defaults of its settings (how long its cases are kept, say)."""
    messages: Sequence[type] = ()
    context: Callable[[Any], Any] = _no_context
    observer: Callable[[Any], Observer] = field(default=lambda settings: Observer())
    """Builds the domain's metrics observer from its settings."""
    inputs: Sequence[str] = ()
    """More input topics, read with the same catalog (a derived domain's other case topics)."""
    derived: bool = False
    resolves: Callable[[Any, str], bool] = _never
    """Whether the context now has what a parked case waits for (:meth:`Case.parked`)."""
    contributor: str = ""
    """The case attribute naming whom a case is about (an enterprise, bank or platform): the unit
    the cross-border release's disclosure control protects (docs/contract.md section 8)."""
    watch: Sequence[WatchRule] = ()
    """The SLA watch's rules on the domain's own cases (services.engine.watch); their limits are
    settings (``watch_limits``)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "settings", domain_settings(self.name, self.settings, self.defaults))

    @property
    def topic(self) -> str:
        return self.catalog.topic

    @property
    def topics(self) -> tuple[str, ...]:
        """Every input topic: the catalog's first."""
        return (self.catalog.topic, *self.inputs)

    @property
    def primary(self) -> str:
        """The kind of the domain's own cases (the first of ``kinds``)."""
        return next(iter(self.kinds))

    def rules(self, settings: EngineSettings) -> tuple[WatchRule, ...]:
        """The watch rules with the limits of ``settings``; a limit for a rule the domain lacks is
        refused (a typo would otherwise leave the default in force, silently)."""
        names = {r.name for r in self.watch}
        unknown = sorted(set(settings.watch_limits) - names)
        if unknown:
            msg = (
                f"TRADEPULSE_{self.name.upper()}_WATCH_LIMITS names rules {self.name} does not have: "
                f"{unknown} (its rules: {sorted(names)})"
            )
            raise ValueError(msg)
        limits = settings.watch_limits
        return tuple(
            replace(r, warning=limits[r.name][0], due=limits[r.name][1]) if r.name in limits else r
            for r in self.watch
        )

    def specs(self, settings: EngineSettings) -> dict[str, IndicatorSpec]:
        """The indicators with the grace of ``settings``."""
        return {s.name: replace(s, grace_s=settings.grace_s) for s in self.indicators}
