"""The building blocks of cases: immutable registers whose merge is order- and duplicate-insensitive,
and the JSON form of any case, derived from its fields.

A case is a frozen dataclass made of these. Folding an event into it returns a new case (or the
same object when nothing changed, which is how the engine knows there is nothing to do). Because
every register keeps the *earliest* thing it was offered (ties broken by event id), any order and
any number of repetitions of the same events give the same case: that is what makes duplicates,
redelivery and shuffled input harmless.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any, Generic, NoReturn, TypeVar, cast

__all__ = ["EarliestWins", "Milestones", "evolve", "from_json", "to_json"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class EarliestWins(Generic[T]):
    """A value that the earliest event offering one decides: the smallest (time, event id) wins."""

    value: T | None = None
    at_s: float = math.inf
    by: str = ""

    def offer(self, value: T, at_s: float, by: str) -> EarliestWins[T]:
        """This register, or a new one holding ``value`` if (``at_s``, ``by``) comes first."""
        if at_s < self.at_s or (at_s == self.at_s and by < self.by):
            return EarliestWins(value, at_s, by)
        return self

    @property
    def known(self) -> bool:
        return self.at_s != math.inf


class Milestones(dict[str, float]):
    """Milestone name to the earliest event time seen for it. Immutable: :meth:`earliest` returns
    new milestones (or these, when nothing changed). A dict subclass, so reads run at dict speed and
    orjson writes it as it is."""

    __slots__ = ()

    def earliest(self, name: str, at_s: float) -> Milestones:
        """These milestones, or new ones where ``name`` happened at ``at_s`` if that is earlier."""
        old = self.get(name)
        if old is not None and old <= at_s:
            return self
        return Milestones({**self, name: at_s})

    def __hash__(self) -> int:  # type: ignore[override]  # immutable, so hashable (a field default)
        return hash(frozenset(self.items()))

    def _immutable(self, *args: Any, **kwargs: Any) -> NoReturn:
        msg = "Milestones cannot be changed in place; use earliest()"
        raise TypeError(msg)

    __setitem__ = __delitem__ = _immutable
    update = pop = popitem = clear = setdefault = _immutable
    __ior__ = _immutable


D = TypeVar("D")


def evolve(case: D, **changes: Any) -> D:
    """A copy of ``case`` with ``changes``, or ``case`` itself when every change is the value it
    already holds (the same object): a fold that changed nothing hands back its input, and the
    engine skips it without comparing fields. (``dataclasses.replace`` without the generated
    ``__init__``: the fields were checked when the case was made; this is every event's path.)"""
    for name, value in changes.items():
        if getattr(case, name) is not value:
            cls: Any = type(case)
            new: D = object.__new__(cls)
            for field_name, slot in _slots(cls):
                slot.__set__(new, changes[field_name] if field_name in changes else slot.__get__(case))
            return new
    return case


@cache
def _slots(cls: type) -> tuple[tuple[str, Any], ...]:
    """(name, slot descriptor) of every field of a frozen, slotted dataclass."""
    if not dataclasses.is_dataclass(cls) or not hasattr(cls, "__slots__"):
        msg = f"{cls.__name__} must be a slotted dataclass (@dataclass(frozen=True, slots=True))"
        raise TypeError(msg)
    return tuple((f.name, getattr(cls, f.name)) for f in _fields(cls))  # a subclass: the base's slots


# -- JSON form ------------------------------------------------------------------------------------
# One encoder and one decoder per type, compiled once from the type hints: a case's JSON form is
# derived from its fields, never written by hand. Fields may be JSON primitives (or optional),
# Milestones, EarliestWins[T], frozenset[T], tuple[T, ...] and frozen dataclasses of these; any
# other type is a TypeError naming it, the first time a case of that type is stored.


def to_json(value: Any) -> Any:
    """The JSON form of a case or message (a dataclass). Fields holding their default are left out
    (small records, and a field added later reads back as its default); a known register is
    ``[time, event id, value]``, an empty one ``None``."""
    return _encoder(cast(Any, type(value)))(value)


def from_json(cls: type[D], doc: Any) -> D:
    """The value of type ``cls`` whose :func:`to_json` form is ``doc``."""
    decoded: D = _decoder(cast(Any, cls))(doc)
    return decoded


Codec = Callable[[Any], Any]
_NO_DEFAULT = object()


@cache
def _fields(cls: type) -> tuple[dataclasses.Field[Any], ...]:
    return dataclasses.fields(cls)


def _identity(doc: Any) -> Any:
    return doc


def _plain(tp: Any) -> bool:
    """JSON as it is: primitives, their optional forms, and Milestones (a dict of floats)."""
    origin = typing.get_origin(tp)
    if tp in (str, int, float, bool, type(None), Any) or origin is typing.Literal or tp is Milestones:
        return True
    return origin in (typing.Union, types.UnionType) and all(_plain(a) for a in typing.get_args(tp))


@cache
def _encoder(tp: Any) -> Codec:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if _plain(tp):
        return _identity
    if origin is EarliestWins:
        inner = _encoder(args[0])
        return lambda v: [v.at_s, v.by, inner(v.value)] if v.at_s != math.inf else None
    if origin in (typing.Union, types.UnionType):
        (inner,) = [_encoder(a) for a in args if a is not type(None)]
        return lambda v: None if v is None else inner(v)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _dataclass_encoder(tp)
    if origin in (frozenset, set):
        item = _encoder(args[0])
        return lambda v: sorted(item(x) for x in v)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        item = _encoder(args[0])
        return lambda v: [item(x) for x in v]
    msg = f"no JSON form for {tp!r}"
    raise TypeError(msg)


def _dataclass_encoder(cls: type) -> Codec:
    hints = typing.get_type_hints(cls)
    plan = []
    for f in _fields(cls):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = _NO_DEFAULT
        plan.append((f.name, default, _encoder(hints[f.name])))

    def encode(value: Any) -> dict[str, Any]:
        out = {}
        for name, default, enc in plan:
            v = getattr(value, name)
            if v is not default and (default is _NO_DEFAULT or v != default):
                out[name] = enc(v)
        return out

    return encode


@cache
def _decoder(tp: Any) -> Codec:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is float:
        return float
    if tp is Milestones:
        return lambda doc: Milestones({k: float(v) for k, v in (doc or {}).items()})
    if origin in (typing.Union, types.UnionType):
        inner = [_decoder(a) for a in args if a is not type(None)]
        if len(inner) > 1:
            return _identity  # a union of JSON primitives
        return lambda doc: None if doc is None else inner[0](doc)
    if _plain(tp):
        return _identity
    if origin is EarliestWins:
        value = _decoder(args[0])
        return lambda doc: (
            EarliestWins() if doc is None else EarliestWins(value(doc[2]), float(doc[0]), doc[1])
        )
    if origin in (frozenset, set):
        item = _decoder(args[0])
        return lambda doc: frozenset(item(v) for v in doc or ())
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        item = _decoder(args[0])
        return lambda doc: tuple(item(v) for v in doc or ())
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        fields = [(f.name, _decoder(hints[f.name])) for f in _fields(tp) if f.init]
        return lambda doc: tp(**{name: d(doc[name]) for name, d in fields if name in doc})
    msg = f"no JSON form for {tp!r}"
    raise TypeError(msg)
