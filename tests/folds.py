"""Folding test events into a case by hand (the engine does it in the services)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

import orjson

from services.contract.catalog import Catalog
from services.contract.codec import decode
from services.contract.envelope import Event
from services.engine.domain import Case

C = TypeVar("C", bound=Case)


def decoded(events: Iterable[dict[str, Any]], catalog: Catalog) -> list[Event]:
    return [decode(orjson.dumps(e), [], catalog=catalog) for e in events]


def fold(case: C, events: Iterable[Event]) -> C:
    for event in events:
        case = case.apply(event)
    return case
