"""Records written by the official CloudEvents SDK (``cloudevents`` 2.x, ``cloudevents.v1.kafka``),
to check that TradePulse reads what real producers write, not only what its own encoder writes.

The SDK has two event classes and each fails on one combination (the ``http`` class cannot write
binary mode without ``datacontenttype``; the ``pydantic`` class cannot write structured mode
without it), so every mode is produced with each class that can."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from cloudevents.v1 import http, pydantic
from cloudevents.v1.kafka import KafkaMessage, to_binary, to_structured

Headers = list[tuple[str, bytes]]
SdkRecord = tuple[bytes | None, bytes, Headers]

# (name, event class, writer, with datacontenttype)
VARIANTS: list[tuple[str, Callable[..., Any], Callable[..., KafkaMessage], bool]] = [
    ("http structured", http.CloudEvent, to_structured, False),
    ("http structured datacontenttype", http.CloudEvent, to_structured, True),
    ("http binary datacontenttype", http.CloudEvent, to_binary, True),
    ("pydantic structured datacontenttype", pydantic.CloudEvent, to_structured, True),
    ("pydantic binary", pydantic.CloudEvent, to_binary, False),
    ("pydantic binary datacontenttype", pydantic.CloudEvent, to_binary, True),
]


def sdk_record(event: dict[str, Any], variant: str) -> SdkRecord:
    """``event`` (a CloudEvent as a dict) written by the SDK as ``variant`` of :data:`VARIANTS`,
    as (key, value, headers) for a Kafka producer; the key is the subject (SDK ``partitionkey``)."""
    _, cls, write, with_type = next(v for v in VARIANTS if v[0] == variant)
    attributes = {k: v for k, v in event.items() if k not in ("data", "specversion")}
    attributes["partitionkey"] = event["subject"]
    if with_type:
        attributes["datacontenttype"] = "application/json"
    with warnings.catch_warnings():  # the SDK's pydantic class warns about its own v1 shim
        warnings.simplefilter("ignore", DeprecationWarning)
        if cls is http.CloudEvent:
            ce = cls(attributes, event["data"])
        else:
            ce = cls(attributes=attributes, data=event["data"])
        message = write(ce)
    key = message.key.encode() if isinstance(message.key, str) else message.key
    value = message.value.encode() if isinstance(message.value, str) else message.value
    return key, value, list(message.headers.items())
