"""Stage one: the cases of the partitions this worker owns, and everything the engine does around a
domain's pure folds.

For each change it computes the case's new state and new contributions *before* committing
anything: a change that would touch a window older than the retention raises :class:`TooLate`
and leaves the case as it was. Otherwise it replaces the case's contributions in the partition's
aggregates (a correction moves a case, never counts it twice), counts late contributions, tells
the domain's observer, and marks the case for the state store.

What a partition keeps, all in the state store (services.engine.state) and written with the
batch that changed it, so that none of it is ever rebuilt by reading every case:

- each case, with the contributions it counts (exactly as counted: a context that changed since,
  a calendar year added say, cannot make the aggregates disagree with their cases);
- each window key's aggregate (``agg``), the watermark (``meta``) and the tallies (``tally``:
  open cases by group, and what domains count of their cases for their gauges);
- a *due index* (``due``): every case, and every dropped case's key, under the hour when
  housekeeping must look at it again, so expiry costs what is due, not what is kept;
- a *park index* (``park``): cases whose measures wait for the context (a calendar year), so
  that the context's arrival revisits those and nothing else;
- *clocks* (``clock``): cases under the times they name (an open payment under its initiation),
  so the earliest is one read (the oldest open payment's age), not a scan; the SLA watch's flagged
  cases under their start, by rule and state (the oldest case's age, the /watch page's order);
- a *watch index* (``watch``): cases under the instant their watch flag changes by the clock alone,
  so the clock moving looks at the cases due, nothing else (services.engine.watch).

In memory: a bounded cache of decoded cases, the cases changed since the last stage, and the
aggregates and tallies (which grow with windows and labels, never with cases).
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import Counter, OrderedDict
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field, replace
from functools import lru_cache
from typing import Any

import orjson

from services.engine.aggregations import aggregation_of
from services.engine.domain import NO_MESSAGES, Case, Domain, EngineSettings, Message, Observer, Survey
from services.engine.metrics import MeasureHistograms, WatchGauges
from services.engine.partials import Applied, Partials
from services.engine.registers import from_json, to_json
from services.engine.state import StateStore
from services.engine.watch import ACTIVE, WATCHED, Flag, clock_name, flag_of
from services.engine.windows import WINDOWS, Contribution, IndicatorSpec, WindowKey, measure_name

__all__ = [
    "AGG",
    "CLOCK",
    "DUE",
    "DUE_BUCKET_S",
    "META",
    "PARK",
    "RETIRED",
    "TALLY",
    "WATCH",
    "CaseEngine",
    "Change",
    "Entry",
    "PartitionState",
    "TooLate",
]

AGG = "agg"  # state kind: the partition's aggregate of one window key
CLOCK = "clock"  # state kind: `<kind>|<clock>|<ms>|<key>`, a case under a time it names
DUE = "due"  # state kind: `<hour>|<kind>|<key>`, when housekeeping must look at a case again
PARK = "park"  # state kind: `<token>|<kind>|<key>`, a case whose measures wait for the context
RETIRED = "retired"  # state kind: the domain's own cases the engine dropped, with the watermark then
TALLY = "tally"  # state kind: the partition's tallies of one case kind
META = "meta"  # state kind: the partition's watermark and watch clock
WATCH = "watch"  # state kind: `<ms>|<key>`, a case under the instant its watch flag changes
OPEN = "open"  # the tally of open cases by group
PARKED = "parked"  # the tally of parked cases by token
DUE_BUCKET_S = 3600  # housekeeping sees a case within an hour of its due time
LOAD_STEP = 2000  # values read between two yields of a partition's load
_DAY = WINDOWS["P1D"]
_NAME_DIGITS = 10
NON_STR_KEYS = orjson.OPT_NON_STR_KEYS  # aggregates' sketches have integer keys (Sketch.to_json)

Tally = tuple[str, ...]


class TooLate(ValueError):
    """A change the engine can no longer make: to a window older than the retention, or to a case it
    has dropped. The event (or the one that sent the message) is dead-lettered."""


@dataclass(slots=True)
class Entry:
    """A case as the engine keeps it: the domain's value plus the engine's bookkeeping."""

    case: Any
    applied: Applied = ()
    last_s: float = float("-inf")  # the latest event time that reached the case
    revision: int = 0  # grows with every change (the case record's revision)
    tallies: tuple[Tally, ...] = ()  # what it counts in the partition's tallies
    due: int = 0  # the hour it is indexed under in the due index (0: not yet)
    park: tuple[str, ...] = ()  # the tokens it is indexed under in the park index
    clocks: tuple[tuple[str, float], ...] = ()  # the times it is indexed under (Case.clocks)
    flag: Flag | None = None  # its watch flag as last published
    flag_at: float = math.inf  # when the flag changes by the clock (the watch index's entry)
    flag_next: float | None = math.inf  # the same, as computed (None: not yet, after a decode)
    due_watch: bool = False  # ``due`` is for the watch (the hour its flag changes), not its expiry


@dataclass(frozen=True, slots=True)
class Change:
    """A committed change of a case of the domain's own kind (for its case record)."""

    partition: int
    key: str
    entry: Entry
    status: str | None = None  # the case's own unless the engine decided (expired)


@dataclass(slots=True)
class PartitionState:
    partition: int
    partials: Partials
    tallies: dict[str, Counter[Tally]]
    dirty: dict[tuple[str, str], Entry] = field(default_factory=dict)
    dirty_tallies: set[str] = field(default_factory=set)
    stored_max_s: float = float("-inf")  # the watermark's event time as stored
    clock_s: float = float("-inf")  # the watch clock (never goes back; stored)
    stored_clock_s: float = float("-inf")
    seen_max_s: float = float("-inf")  # the newest event time when the watch last looked
    moved_wall_s: float = 0.0  # the wall time it last saw the partition's event time move
    woken: str = ""  # the due-index name up to which the watch has woken cases (CaseEngine.watch)
    sweep: str | None = None  # the case after which the watch's one pass over every case goes on
    swept: bool = False  # that pass ended: the rules' fingerprint is stored with the next stage

    @property
    def now_s(self) -> float:
        """The time flags are computed at: the watch clock, or the watermark where events moved it
        on since the timer last ran."""
        return max(self.clock_s, self.partials.watermark_s)


class CaseCache:
    """Decoded cases, least recently used first out; the store holds every case, so an evicted one
    costs a read and a decode the next time, nothing more."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self._entries: OrderedDict[tuple[int, str, str], Entry] = OrderedDict()

    def get(self, key: tuple[int, str, str]) -> Entry | None:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def put(self, key: tuple[int, str, str], entry: Entry) -> None:
        self._entries[key] = entry
        self._entries.move_to_end(key)
        if len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def pop(self, key: tuple[int, str, str]) -> None:
        self._entries.pop(key, None)

    def forget(self, partitions: set[int]) -> None:
        for key in [k for k in self._entries if k[0] in partitions]:
            del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)


@dataclass
class CaseEngine:
    """Stage one of one domain on this worker."""

    domain: Domain
    _: KW_ONLY
    settings: EngineSettings
    context: Any
    store: StateStore
    observer: Observer
    late_events: Callable[[int], None] = lambda n: None
    cache_cases: int = 100_000
    housekeeping_budget: int = 5_000  # cases dropped or revisited per partition per pass

    def __post_init__(self) -> None:
        self.kinds = self.domain.kinds
        # what each case type adds to the engine's bookkeeping (most add nothing: skip the calls)
        self._counts_more = {k: c.tallies is not Case.tallies or c.parked is not Case.parked
                             for k, c in self.kinds.items()}  # fmt: skip
        self.primary = self.domain.primary
        self.specs: dict[str, IndicatorSpec] = self.domain.specs(self.settings)
        self.measured = MeasureHistograms(self.specs)
        self.states: dict[int, PartitionState] = {}
        self.cache = CaseCache(self.cache_cases)
        self.changes: list[Change] = []  # of the domain's own cases, since the last stage()
        self.rules = self.domain.rules(self.settings)
        self.calendar = getattr(self.context, "calendar", None)  # for rules in working days
        self.flagged: list[Change] = []  # watch flags changed since the last stage()
        self._watch_clocks = tuple(clock_name(r.name, s) for r in self.rules for s in ACTIVE)
        # A rule's flag depends on its milestones and on what `when` reads, which the start
        # milestone's event brings (services.engine.watch.WatchRule).
        self._watched_milestones = tuple(sorted({m for r in self.rules for m in (*r.start, *r.ends)}))
        self._rules_print = orjson.dumps(
            [[r.name, r.start, r.ends, r.warning, r.due, r.unit, r.when.__qualname__] for r in self.rules]
        )
        self.watch_gauges = WatchGauges(self.domain.name, self.rules)
        self.totals: dict[str, Counter[Tally]] = {kind: Counter() for kind in self.kinds}
        self._tallies_moved = False  # the gauges are told once per batch (stage), not per change

    # -- state per partition ------------------------------------------------------------------

    def state(self, p: int) -> PartitionState:
        """The partition's aggregates, tallies and watermark, loaded from the store the first time
        they are needed (bounded: windows and labels, not cases)."""
        st = self.states.get(p)
        if st is None:
            for _ in self.loading(p):
                pass
            st = self.states[p]
        return st

    def loading(self, p: int) -> Generator[None, None, None]:
        """Load the partition's state, yielding every :data:`LOAD_STEP` values read so that a caller
        can let its event loop turn (a month of hourly windows is tens of thousands of aggregates)."""
        if p in self.states:
            return
        partials = Partials(self.specs, self.settings.out_of_orderness_s)
        for i, (text, raw) in enumerate(self.store.items(p, AGG), 1):
            wkey = WindowKey.parse(text)
            spec = self.specs.get(wkey.indicator)
            if spec is not None:
                partials.aggs[wkey] = aggregation_of(spec.kind, orjson.loads(raw))
            if i % LOAD_STEP == 0:
                yield
        watermark = self.store.get(p, META, "max_event_s")
        if watermark is not None:
            partials.max_event_s = float(watermark)
        stored_clock = self.store.get(p, META, "watch_clock")
        clock_s = float(stored_clock) if stored_clock is not None else float("-inf")
        # Cases kept from before the rules were what they are (the watch added to a running
        # service, a limit changed) are looked at once, in bounded passes (watch()).
        stale = bool(self.rules) and self.store.get(p, META, "watch_rules") != self._rules_print
        sweep = "" if stale and watermark is not None else None  # a new partition has no case
        tallies: dict[str, Counter[Tally]] = {}
        for kind in self.kinds:
            stored = self.store.get(p, TALLY, kind)
            counts: Counter[Tally] = Counter()
            for *key, n in orjson.loads(stored) if stored is not None else ():
                counts[tuple(key)] = n
            tallies[kind] = counts
        # What stage two holds of this partition may differ from what was stored: behind it
        # (partials go out on a timer), or ahead of it (a crash after a batch's outputs and before
        # its state: stage two kept aggregates of keys that the batch, redelivered in other
        # batches, may never touch again). The first handover is therefore whole: stage two
        # replaces this partition's partials by it and forgets the ones it lacks.
        partials.whole = True
        if p in self.states:  # loaded meanwhile (state() while this was paused)
            return
        self.states[p] = PartitionState(
            p,
            partials,
            tallies,
            stored_max_s=partials.max_event_s,
            clock_s=clock_s,
            stored_clock_s=clock_s,
            sweep=sweep,
            swept=stale and sweep is None,
        )
        for kind, counts in tallies.items():
            self.totals[kind].update(counts)
        self._report()

    def forget(self, partitions: set[int]) -> None:
        """Drop revoked partitions (their next owner restores them from the store)."""
        for p in partitions:
            st = self.states.pop(p, None)
            if st is not None:
                for kind, counts in st.tallies.items():
                    self.totals[kind].subtract(counts)
        self.cache.forget(partitions)
        self.changes = [c for c in self.changes if c.partition not in partitions]
        self.flagged = [c for c in self.flagged if c.partition not in partitions]
        self._report()

    def entry(self, p: int, kind: str, key: str) -> Entry | None:
        """The case ``key`` of ``kind`` on partition ``p`` as the engine keeps it, or None."""
        st = self.state(p)
        entry = st.dirty.get((kind, key)) or self.cache.get((p, kind, key))
        if entry is None:
            raw = self.store.get(p, kind, key)
            if raw is None:
                return None
            entry = self._decode(kind, raw)
            self.cache.put((p, kind, key), entry)
        return entry

    def cases(self, kind: str) -> Iterator[tuple[int, str, Entry]]:
        """Every case of ``kind`` on this worker: (partition, key, entry). Reads the whole store:
        for tests and tools, never on a worker's path."""
        for p in sorted(self.store.owned()):
            for key, _ in list(self.store.items(p, kind)):
                entry = self.entry(p, kind, key)
                if entry is not None:
                    yield p, key, entry

    # -- changes ------------------------------------------------------------------------------

    def apply_event(self, p: int, kind: str, key: str, event: Any) -> Sequence[Message]:
        """Fold one input event into its case; returns the messages the change sends.
        Raises :class:`TooLate` (changing nothing) if it would touch a retired window."""
        st, entry, before = self._current(p, kind, key, event.time_s)
        return self._change(st, kind, key, entry, before, before.apply(event), event.time_s)

    def apply_message(self, p: int, message: Message, at_s: float) -> Sequence[Message]:
        """Fold a message from another case (sent because of an event at ``at_s``)."""
        kind, key = message.kind, message.key
        st, entry, before = self._current(p, kind, key, at_s)
        return self._change(st, kind, key, entry, before, before.receive(message.body), at_s)

    def _current(self, p: int, kind: str, key: str, at_s: float) -> tuple[PartitionState, Entry | None, Case]:
        """The partition (its watermark moved on by a change at ``at_s``) and the case as it is: its
        entry, or None and an empty case. A case the engine dropped takes nothing more (TooLate):
        folded into a new, empty case, the change would publish a record (revision 1, without the
        case's history) that replaces the case's own on the compacted case topic."""
        st = self.state(p)
        st.partials.observe(at_s)
        entry = self.entry(p, kind, key)
        if entry is not None:
            return st, entry, entry.case
        if kind == self.primary and self.store.get(p, RETIRED, key) is not None:
            msg = (
                f"{key}: the case was closed and dropped (completed and past window_retention_s, or "
                "no event for case_expiry_s); a later change cannot be applied to it"
            )
            raise TooLate(msg)
        return st, None, self.kinds[kind].empty(key)

    def _change(
        self,
        st: PartitionState,
        kind: str,
        key: str,
        entry: Entry | None,
        before: Case,
        after: Case,
        at_s: float,
    ) -> Sequence[Message]:
        if after is before:  # nothing changed; only the time of the case's latest event may have
            if entry is not None and at_s > entry.last_s:
                entry.last_s = at_s
                st.dirty[(kind, key)] = entry  # it decides when the case is due
            return NO_MESSAGES
        applied: Applied = () if entry is None else entry.applied
        new = tuple(after.measures(self.context))
        added: Sequence[Contribution] = ()
        if new or applied:
            old = tuple(c for c, _ in applied)
            if new != old:
                # 1. decide: refused before anything is touched
                self._refuse_if_retired(st, key, old, new)
                # 2. move the contributions
                applied, late = st.partials.apply(applied, new)
                if late:
                    self.late_events(late)  # this change reached windows after they were final
                if old:
                    known = {(c.indicator, c.dims) for c in old}
                    added = [c for c in new if (c.indicator, c.dims) not in known]
                else:
                    added = new
        # 3. commit the case
        if entry is None:
            entry = Entry(before)
            self.cache.put((st.partition, kind, key), entry)
        entry.case, entry.applied, entry.revision = after, applied, entry.revision + 1
        if at_s > entry.last_s:
            entry.last_s = at_s
        st.dirty[(kind, key)] = entry
        if kind == self.primary:
            if self.rules:
                self._watch_change(st, key, entry, before.milestones, after.milestones)
            self.changes.append(Change(st.partition, key, entry))
        self._retally(st, kind, entry)
        self.measured.observe(added)
        self.observer.changed(kind, before, after, added)
        return after.messages(before)

    def _refuse_if_retired(
        self, st: PartitionState, key: str, old: tuple[Contribution, ...], new: tuple[Contribution, ...]
    ) -> None:
        retention = self.settings.window_retention_s
        # Nothing within a day of the retention horizon: nothing can be retired (the common case).
        horizon = st.partials.watermark_s - retention - _DAY
        if all(c.at_s >= horizon for c in old) and all(c.at_s >= horizon for c in new):
            return
        moved = set(new).symmetric_difference(old)
        if any(st.partials.retired(c.at_s, retention) for c in moved):
            msg = f"{key}: the change falls in a window older than the retention (window_retention_s)"
            raise TooLate(msg)

    def _tallies_of(self, kind: str, case: Case) -> tuple[Tally, ...]:
        """What a case counts: open (by group), the domain's own tallies, and what it waits for."""
        if not self._counts_more[kind]:
            return ((OPEN, case.group),) if case.open else ()
        out: list[Tally] = [(OPEN, case.group)] if case.open else []
        out.extend(case.tallies(self.context))
        out.extend((PARKED, token) for token in case.parked(self.context))
        return tuple(out)

    def _retally(self, st: PartitionState, kind: str, entry: Entry) -> None:
        now = self._tallies_of(kind, entry.case)
        flag = entry.flag
        if flag is not None and flag.state in ACTIVE:
            now = (*now, (WATCHED, flag.rule, flag.state, entry.case.group))
        was = entry.tallies
        if now == was:
            return
        counts, totals = st.tallies[kind], self.totals[kind]
        for t in was:
            counts[t] -= 1
            totals[t] -= 1
        for t in now:
            counts[t] += 1
            totals[t] += 1
        entry.tallies = now
        st.dirty_tallies.add(kind)
        self._tallies_moved = True

    def _report(self) -> None:
        self._tallies_moved = False
        for kind, totals in self.totals.items():
            self.observer.open_cases(kind, {t[1]: n for t, n in totals.items() if t[0] == OPEN})
        if self.rules:
            self.watch_gauges.counts(self.totals[self.primary])

    def tallies(self, kind: str) -> Mapping[Tally, int]:
        """The tallies of ``kind`` over every partition this worker owns."""
        return {t: n for t, n in self.totals[kind].items() if n}

    # -- persistence and output ---------------------------------------------------------------

    def stage(self, partitions: set[int]) -> None:
        """Write changed cases, aggregates, tallies, the watermark and the indexes to the store."""
        if self._tallies_moved:
            self._report()
        for p in partitions:
            st = self.states.get(p)
            if st is None or not self.store.owns(p):
                continue
            for (kind, key), entry in st.dirty.items():
                self._index(p, kind, key, entry)
                self.store.put(p, kind, key, _encode(entry))
            st.dirty.clear()
            partials = st.partials
            for wkey in partials.dirty:
                agg = partials.aggs.get(wkey)
                if agg is not None:
                    self.store.put(p, AGG, wkey.text, orjson.dumps(agg.to_json(), option=NON_STR_KEYS))
                else:
                    self.store.delete(p, AGG, wkey.text)
            partials.dirty.clear()
            for kind in st.dirty_tallies:
                self.store.put(p, TALLY, kind, orjson.dumps(_tally_json(st.tallies[kind])))
            st.dirty_tallies.clear()
            if partials.max_event_s != st.stored_max_s:
                self.store.put(p, META, "max_event_s", repr(partials.max_event_s).encode())
                st.stored_max_s = partials.max_event_s
            if st.clock_s != st.stored_clock_s:
                self.store.put(p, META, "watch_clock", repr(st.clock_s).encode())
                st.stored_clock_s = st.clock_s
            if st.swept:
                self.store.put(p, META, "watch_rules", self._rules_print)
                st.swept = False

    def _index(self, p: int, kind: str, key: str, entry: Entry) -> None:
        """Keep the case's entries in the due, park and clock indexes where it is now."""
        due = self._due_hour(entry)
        if self.rules and kind == self.primary:
            due = self._index_watch(p, key, entry, due)
        if due != entry.due:
            if entry.due:
                self.store.delete(p, DUE, _due_name(entry.due, kind, key))
            self.store.put(p, DUE, _due_name(due, kind, key), b"")
            entry.due = due
        if not self._counts_more[kind] and not entry.park:
            park: tuple[str, ...] = ()
        else:
            park = tuple(t[1] for t in entry.tallies if t[0] == PARKED)
        if park != entry.park:
            for token in set(entry.park) - set(park):
                self.store.delete(p, PARK, f"{token}|{kind}|{key}")
            for token in set(park) - set(entry.park):
                self.store.put(p, PARK, f"{token}|{kind}|{key}", b"")
            entry.park = park
        flag = entry.flag
        watched = flag is not None and flag.state in ACTIVE
        if not self.kinds[kind].CLOCKS and not watched and not entry.clocks:
            return
        clocks = tuple(entry.case.clocks(self.context)) if self.kinds[kind].CLOCKS else ()
        if watched:
            assert flag is not None
            clocks = (*clocks, (clock_name(flag.rule, flag.state), flag.start))
        if clocks != entry.clocks:
            for name, at_s in set(entry.clocks) - set(clocks):
                self.store.delete(p, CLOCK, _clock_name(kind, name, at_s, key))
            for name, at_s in set(clocks) - set(entry.clocks):
                self.store.put(p, CLOCK, _clock_name(kind, name, at_s, key), b"")
            entry.clocks = clocks

    def _due_hour(self, entry: Entry) -> int:
        """The hour by which the case is due: completed cases leave when their windows left the
        retention (and a day more), others after the case expiry without an event."""
        if entry.case.completed:
            due_s = entry.last_s + self.settings.window_retention_s + 2 * _DAY
        else:
            due_s = entry.last_s + self.settings.case_expiry_s
        return _hour(due_s)

    def take_changes(self) -> list[Change]:
        """The domain's own cases changed since the last call."""
        changes, self.changes = self.changes, []
        return changes

    def partials(self) -> Iterator[tuple[int, float | None, dict[WindowKey, Any], bool]]:
        """(partition, watermark, changed aggregates, whether they are all it holds) of every owned
        partition that saw events or owes stage two a whole handover (watermark None: no event yet)."""
        for p, st in self.states.items():
            seen = st.partials.max_event_s != float("-inf")
            if self.store.owns(p) and (seen or st.partials.whole):
                yield p, st.partials.watermark_s if seen else None, *st.partials.take_changed()

    # -- housekeeping -------------------------------------------------------------------------

    def expire(self) -> bool:
        """One pass of housekeeping, bounded per partition: drop completed cases whose windows left
        the retention and unfinished ones past the case expiry (told to the observer), forget
        dropped keys after a case expiry, drop aggregates of windows past the retention, and
        revisit parked cases whose context arrived. Returns True if work was left for another pass."""
        more = False
        for p in sorted(self.store.owned()):
            st = self.state(p)
            budget = [self.housekeeping_budget]
            more |= self._expire_due(p, st, budget)
            more |= self._revisit(p, st, budget)
            horizon = st.partials.watermark_s - self.settings.window_retention_s
            for wkey in [k for k in st.partials.aggs if k.end_s + _DAY < horizon]:
                del st.partials.aggs[wkey]
                st.partials.dirty.add(wkey)
        newest = max((st.partials.max_event_s for st in self.states.values()), default=float("-inf"))
        for kind in self.kinds:
            self.observer.housekeeping(kind, Survey(self.tallies(kind), self.earliest(kind), newest))
        self._report()
        return more

    def earliest(self, kind: str) -> dict[str, float]:
        """Per clock of ``kind`` (:meth:`Case.clocks`), the earliest time a case on this worker is
        under: one read per partition."""
        out: dict[str, float] = {}
        for name in (*self.kinds[kind].CLOCKS, *(self._watch_clocks if kind == self.primary else ())):
            prefix = f"{kind}|{name}|"
            for p in self.states:
                if not self.store.owns(p):
                    continue
                first = next(self.store.items(p, CLOCK, start=prefix, stop=prefix[:-1] + "}"), None)
                if first is not None:
                    at_s = int(first[0][len(prefix) :].split("|", 1)[0]) / 1000
                    out[name] = min(out.get(name, at_s), at_s)
        return out

    def _expire_due(self, p: int, st: PartitionState, budget: list[int]) -> bool:
        wm = st.partials.watermark_s
        if wm == float("-inf"):
            return False
        now_hour = math.floor(wm / DUE_BUCKET_S)
        due = list(self.store.items(p, DUE, stop=f"{max(now_hour + 1, 0):0{_NAME_DIGITS}d}"))
        for name, _ in due:
            if budget[0] <= 0:
                return True
            budget[0] -= 1
            hour, kind, key = name.split("|", 2)
            if kind == RETIRED:  # a dropped case is remembered for one case expiry
                self.store.delete(p, RETIRED, key)
                self.store.delete(p, DUE, name)
                continue
            entry = self.entry(p, kind, key) if kind in self.kinds else None
            if entry is None or entry.due != int(hour):
                self.store.delete(p, DUE, name)  # left behind by a change (not expected)
                continue
            if self._due_hour(entry) > now_hour:
                continue  # due for the watch, or held early, not expired: the watch's timer takes it (_wake)
            case = entry.case
            if not case.completed:
                self.observer.expired(kind, case)
                if entry.flag is not None and entry.flag.state in ACTIVE:
                    expired = entry.flag.expired(entry.last_s + self.settings.case_expiry_s)
                    self.flagged.append(Change(p, key, replace(entry, flag=expired)))
            self._drop(st, kind, key, entry, wm)
            if not case.completed and kind == self.primary:
                entry.revision += 1
                self.changes.append(Change(p, key, entry, "expired"))
        return False

    def _drop(self, st: PartitionState, kind: str, key: str, entry: Entry, watermark_s: float) -> None:
        p = st.partition
        self.cache.pop((p, kind, key))
        st.dirty.pop((kind, key), None)
        self.store.delete(p, kind, key)
        if entry.due:
            self.store.delete(p, DUE, _due_name(entry.due, kind, key))
        for token in entry.park:
            self.store.delete(p, PARK, f"{token}|{kind}|{key}")
        for name, at_s in entry.clocks:
            self.store.delete(p, CLOCK, _clock_name(kind, name, at_s, key))
        if entry.flag_at != math.inf:
            self.store.delete(p, WATCH, _watch_name(entry.flag_at, key))
        counts, totals = st.tallies[kind], self.totals[kind]
        counts.subtract(entry.tallies)
        totals.subtract(entry.tallies)
        st.dirty_tallies.add(kind)
        self._tallies_moved = True
        if kind == self.primary:
            self.store.put(p, RETIRED, key, repr(watermark_s).encode())
            forget = _hour(watermark_s + self.settings.case_expiry_s)
            self.store.put(p, DUE, _due_name(forget, RETIRED, key), b"")

    def _revisit(self, p: int, st: PartitionState, budget: list[int]) -> bool:
        """Cases parked for a token the context now resolves get their measures again."""
        parked = {t[1] for counts in st.tallies.values() for t, n in counts.items() if n and t[0] == PARKED}
        for token in sorted(parked):
            if not self.domain.resolves(self.context, token):
                continue
            waiting = list(self.store.items(p, PARK, start=f"{token}|", stop=f"{token}}}"))
            for name, _ in waiting:
                if budget[0] <= 0:
                    return True
                budget[0] -= 1
                _, kind, key = name.split("|", 2)
                entry = self.entry(p, kind, key)
                if entry is None:
                    self.store.delete(p, PARK, name)
                    continue
                self._refresh(st, kind, key, entry)
        return False

    def _refresh(self, st: PartitionState, kind: str, key: str, entry: Entry) -> None:
        """Measure a case again with the context as it is now (its state unchanged)."""
        new = tuple(entry.case.measures(self.context))
        old = tuple(c for c, _ in entry.applied)
        if new != old:
            try:
                self._refuse_if_retired(st, key, old, new)
            except TooLate:
                new = old  # its windows are gone: it stays as counted, and stops waiting
            else:
                entry.applied, late = st.partials.apply(entry.applied, new)
                if late:
                    self.late_events(late)
                known = {(c.indicator, c.dims) for c in old}
                added = [c for c in new if (c.indicator, c.dims) not in known]
                self.measured.observe(added)
                self.observer.changed(kind, entry.case, entry.case, added)
            entry.revision += 1
            if kind == self.primary:
                self.changes.append(Change(st.partition, key, entry))
        if kind == self.primary and self.rules:
            self._watch(st, key, entry, moved=False)
        st.dirty[(kind, key)] = entry
        self._retally(st, kind, entry)

    # -- the SLA watch ------------------------------------------------------------------------

    def _watch_change(
        self,
        st: PartitionState,
        key: str,
        entry: Entry,
        before: Mapping[str, float],
        after: Mapping[str, float],
    ) -> None:
        """A change of a case: its flag is computed again only if a milestone some rule starts or
        ends with moved (most events move others: a customs inspection, a refund's approval); a
        flagged case is published again all the same, since its record carries the milestones
        (once a batch however often it moves: the pipeline keeps a case's latest)."""
        if before is not after:
            for name in self._watched_milestones:
                if before.get(name) != after.get(name):
                    self._watch(st, key, entry, moved=True)
                    return
        if entry.flag is not None:
            self.flagged.append(Change(st.partition, key, entry))

    def _watch(self, st: PartitionState, key: str, entry: Entry, *, moved: bool) -> None:
        """The case's flag at the partition's clock, published (take_flagged) if it changed, or if
        the case ``moved`` while flagged."""
        flag, entry.flag_next = flag_of(self.rules, entry.case, st.now_s, self.calendar)
        if flag != entry.flag or (moved and flag is not None):
            entry.flag = flag
            self.flagged.append(Change(st.partition, key, entry))

    def _index_watch(self, p: int, key: str, entry: Entry, due: int) -> int:
        """Index the case under the instant its flag changes, if that is within the clock's hour;
        otherwise the due index wakes it up in that instant's hour (``due`` returned: the earlier
        of the two), and the watch's timer indexes it then (:meth:`_wake`). Most cases end before
        their warning point: they never enter the watch index, and the due index, written on
        every change anyway, costs nothing more.

        An open case's entry for its expiry stays where it is while it is ahead of the clock and
        earlier than needed, rather than moving at every event of a new hour: the timer moves it
        when the clock reaches it, and housekeeping never expires a case early whatever hour
        holds it. An entry for the watch moves at once when the case ends its commitment (the
        timer would move it within hours), and so does a completed case's (no event follows)."""
        st = self.states[p]
        clock_hour = math.floor(st.now_s / DUE_BUCKET_S)
        if entry.flag_next == math.inf and entry.flag_at == math.inf:
            want = due  # nothing ahead by the clock (ended, or not started), nothing indexed
        else:
            if entry.flag_next is None:  # decoded and not changed since: not stored, computed again
                self._watch(st, key, entry, moved=False)
            next_s = entry.flag_next
            assert next_s is not None
            soon = next_s != math.inf and _watch_hour(next_s) <= clock_hour
            exact = next_s if soon else math.inf
            if exact != entry.flag_at:
                if entry.flag_at != math.inf:
                    self.store.delete(p, WATCH, _watch_name(entry.flag_at, key))
                if exact != math.inf:
                    self.store.put(p, WATCH, _watch_name(exact, key), b"")
                entry.flag_at = exact
            want = due if soon or next_s == math.inf else min(due, _watch_hour(next_s))
        held = 0 < entry.due < want and not entry.case.completed and not entry.due_watch
        if held and entry.due > clock_hour:
            return entry.due
        entry.due_watch = want != due
        return want

    def watch(self, wall_s: float) -> bool:
        """Move each owned partition's watch clock and flag the cases it reached (bounded per
        partition; True if work was left for another pass). The clock is the partition's
        watermark; a partition whose event time has not moved for ``idle_after_s`` of wall time
        runs on with wall time from its watermark, at most ``watch_idle_max_s`` past it, so a
        producer outage flags what falls due in that bound and no more (docs/design.md)."""
        if not self.rules:
            return False
        more = False
        for p in sorted(self.store.owned()):
            st = self.state(p)
            newest = st.partials.max_event_s
            if newest == float("-inf"):
                continue
            if newest != st.seen_max_s:
                st.seen_max_s, st.moved_wall_s = newest, wall_s
            idle_s = wall_s - st.moved_wall_s
            idle = idle_s >= self.settings.idle_after_s
            run_on = min(idle_s, self.settings.watch_idle_max_s) if idle else 0.0
            st.clock_s = max(st.clock_s, st.partials.watermark_s + run_on)
            if st.sweep is not None:
                more |= self._sweep(p, st)
            more |= self._wake(p, st)
            due = self.store.items(p, WATCH, stop=f"{max(0, math.floor(st.clock_s * 1000)):015d}}}")
            for n, (name, _) in enumerate(list(itertools.islice(due, self.housekeeping_budget + 1))):
                if n >= self.housekeeping_budget:
                    more = True
                    break
                key = name.split("|", 1)[1]
                entry = self.entry(p, self.primary, key)
                if entry is None or _watch_name(entry.flag_at, key) != name:
                    self.store.delete(p, WATCH, name)  # left behind (not expected)
                    continue
                self._look_again(st, key, entry)
        if self._tallies_moved:
            self._report()
        self.watch_gauges.oldest(self.clock(), self.earliest(self.primary))
        return more

    def _look_again(self, st: PartitionState, key: str, entry: Entry) -> None:
        """A case the clock (or a change of the rules) brought up: its flag now, staged and tallied."""
        self._watch(st, key, entry, moved=False)
        st.dirty[(self.primary, key)] = entry
        self._retally(st, self.primary, entry)

    def _sweep(self, p: int, st: PartitionState) -> bool:
        """One bounded part of the pass over every case of a partition whose cases were kept under
        other rules (or none): each gets its flag and its place in the indexes."""
        assert st.sweep is not None
        start = st.sweep + "\x00" if st.sweep else ""
        names = self.store.items(p, self.primary, start=start)
        for n, (key, _) in enumerate(list(itertools.islice(names, self.housekeeping_budget + 1))):
            if n >= self.housekeeping_budget:
                return True
            st.sweep = key
            entry = self.entry(p, self.primary, key)
            if entry is not None:
                self._look_again(st, key, entry)
        st.sweep, st.swept = None, True
        return False

    def _wake(self, p: int, st: PartitionState) -> bool:
        """Cases the due index holds for the watch in the clock's hour go into the watch index
        (:meth:`_index_watch`), and cases it holds earlier than needed go where they are due. The
        due index is read once, from where the last pass stopped: a case put there for the watch
        is always in an hour ahead of the clock's."""
        clock_hour = math.floor(st.clock_s / DUE_BUCKET_S)
        stop = f"{max(clock_hour + 1, 0):0{_NAME_DIGITS}d}"
        names = self.store.items(p, DUE, start=st.woken + "\x00" if st.woken else "", stop=stop)
        for n, (name, _) in enumerate(list(itertools.islice(names, self.housekeeping_budget + 1))):
            if n >= self.housekeeping_budget:
                return True
            st.woken = name
            hour, kind, key = name.split("|", 2)
            if kind != self.primary:
                continue
            entry = self.entry(p, kind, key)
            if entry is None or entry.due != int(hour):
                continue
            next_s = entry.flag_next
            if entry.flag_at == math.inf and (
                next_s is None or (next_s != math.inf and _watch_hour(next_s) <= clock_hour)
            ):
                self._look_again(st, key, entry)
            elif self._due_hour(entry) > entry.due:
                st.dirty[(kind, key)] = entry  # held early (:meth:`_index_watch`): stage moves it
        return False

    def clock(self) -> float:
        """The newest watch clock of this worker's partitions (-inf before any event)."""
        return max((st.clock_s for st in self.states.values()), default=float("-inf"))

    def flagged_cases(
        self, rules: Sequence[str], states: Sequence[str], after: str, limit: int
    ) -> list[tuple[str, str, Entry]]:
        """Up to ``limit`` cases this worker flags under ``rules`` in ``states``, oldest start first:
        (cursor, key, entry), ``cursor`` naming the case's place (``<start ms>|<key>``) for the next
        page (``after``). Reads the clock index and the cases returned, nothing else."""
        streams = []
        for p in sorted(self.store.owned()):
            for rule in rules:
                for state in states:
                    prefix = f"{self.primary}|{clock_name(rule, state)}|"
                    streams.append(self._flagged_in(p, prefix, after))
        out: list[tuple[str, str, Entry]] = []
        for cursor, p in heapq.merge(*streams):
            if cursor <= after:
                continue
            key = cursor.split("|", 1)[1]
            entry = self.entry(p, self.primary, key)
            if entry is not None and entry.flag is not None:
                out.append((cursor, key, entry))
                if len(out) >= limit:
                    break
        return out

    def _flagged_in(self, p: int, prefix: str, after: str) -> Iterator[tuple[str, int]]:
        for name, _ in self.store.items(p, CLOCK, start=prefix + after, stop=prefix[:-1] + "}"):
            yield name[len(prefix) :], p

    def take_flagged(self) -> list[Change]:
        """Watch flags changed since the last call (``entry.flag`` None: the flag is withdrawn)."""
        flagged, self.flagged = self.flagged, []
        return flagged

    # -- encoding -----------------------------------------------------------------------------

    def _decode(self, kind: str, raw: bytes) -> Entry:
        doc = orjson.loads(raw)
        case = from_json(self.kinds[kind], doc["c"])
        applied = tuple((_contribution(*a[:4]), tuple(a[4]) if len(a) > 4 else ()) for a in doc.get("a", ()))
        tallies = tuple(tuple(t) for t in doc.get("y", ()))
        park = tuple(t[1] for t in tallies if t[0] == PARKED)
        clocks = tuple((name, float(at_s)) for name, at_s in doc.get("k", ()))
        entry = Entry(case, applied, doc["t"], doc["r"], tallies, doc.get("d", 0), park, clocks)
        if "w" in doc:
            entry.flag = Flag(*doc["w"])
        entry.flag_at = doc.get("wa", math.inf)
        entry.flag_next = entry.flag_at if "wa" in doc else None  # computed when needed
        return entry


def _hour(at_s: float) -> int:
    """The due hour holding ``at_s`` (rounded up: a case is never looked at before it is due)."""
    return max(1, math.ceil(at_s / DUE_BUCKET_S))


def _due_name(hour: int, kind: str, key: str) -> str:
    return f"{hour:0{_NAME_DIGITS}d}|{kind}|{key}"


def _watch_hour(at_s: float) -> int:
    """The due-index hour that wakes a case whose flag changes at ``at_s`` (rounded down: early)."""
    return max(1, math.floor(at_s / DUE_BUCKET_S))


def _watch_name(at_s: float, key: str) -> str:
    return f"{max(0, math.ceil(at_s * 1000)):015d}|{key}"


def _clock_name(kind: str, name: str, at_s: float, key: str) -> str:
    return f"{kind}|{name}|{max(0, round(at_s * 1000)):015d}|{key}"


@lru_cache(maxsize=65_536)
def _measure_parts(measure: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    indicator, _, dims = measure.partition("|")
    pairs = tuple(tuple(p.split("=", 1)) for p in dims.split(",")) if dims else ()
    return indicator, pairs  # type: ignore[return-value]


def _contribution(measure: str, at_s: float, value: float, amount: str) -> Contribution:
    indicator, dims = _measure_parts(measure)
    return Contribution(indicator, at_s, dims, value, amount)


def _encode(entry: Entry) -> bytes:
    """A case as stored: its fields, its contributions as counted (with the windows they reached
    late), the time of its latest event, its revision, its tallies, its due hour and its clocks."""
    doc: dict[str, Any] = {
        "c": to_json(entry.case),
        "a": [
            [measure_name(c.indicator, c.dims), c.at_s, c.value, c.amount, *([list(late)] if late else [])]
            for c, late in entry.applied
        ],
        "t": entry.last_s,
        "r": entry.revision,
        "d": entry.due,
    }
    if entry.tallies:
        doc["y"] = [list(t) for t in entry.tallies]
    if entry.clocks:
        doc["k"] = [list(c) for c in entry.clocks]
    if entry.flag is not None:
        doc["w"] = list(entry.flag)
    if entry.flag_at != math.inf:
        doc["wa"] = entry.flag_at
    return orjson.dumps(doc)


def _tally_json(counts: Mapping[Tally, int]) -> list[list[Any]]:
    """Tallies as stored: ``[[*tally, count], ...]`` (counts of zero left out)."""
    return [[*t, n] for t, n in sorted(counts.items()) if n]
