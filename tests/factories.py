"""Builders of test CloudEvents and records; every test starts from a valid event and breaks one thing."""

from __future__ import annotations

import itertools
from typing import Any

from services.contract.codec import encode
from services.contract.schemas import model_examples
from services.customs.events import DeclarationLodged
from services.engine.records import RawRecord

TOPIC = "customs.events.v1"
ENTRY = "514120250000012345"
_ids = itertools.count(1)


def accepted_event(**overrides: Any) -> dict[str, Any]:
    """A valid ``customs.declaration.accepted`` CloudEvent as a dict."""
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": f"evt-{next(_ids)}",
        "source": "/singlewindow/5141",
        "type": "customs.declaration.accepted",
        "time": "2025-03-01T08:30:00+08:00",
        "subject": ENTRY,
        "data": {"entry_id": ENTRY},
    }
    event.update(overrides)
    return event


def lodged_event(**data_overrides: Any) -> dict[str, Any]:
    """A valid ``customs.declaration.lodged``, from the model's own example."""
    data = {**model_examples(DeclarationLodged)[0], **data_overrides}
    return accepted_event(type="customs.declaration.lodged", subject=data["entry_id"], data=data)


def structured(event: dict[str, Any]) -> tuple[list[tuple[str, bytes]], bytes]:
    return encode(event)


def binary(event: dict[str, Any]) -> tuple[list[tuple[str, bytes]], bytes]:
    return encode(event, binary=True)


def record(
    value: bytes | None,
    headers: list[tuple[str, bytes]] | None = None,
    *,
    partition: int = 0,
    offset: int = 0,
) -> RawRecord:
    return RawRecord(TOPIC, partition, offset, None, value, headers or [])
