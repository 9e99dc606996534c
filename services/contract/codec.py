"""CloudEvents on Kafka: decode both content modes into the same models, encode for producers.

Decoding never raises anything but :class:`DecodeError`, whose ``reason`` is one of the
dead-letter reasons of docs/contract.md section 3 and whose ``detail`` names the offending field.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from typing import Any

import orjson
from pydantic import ValidationError

from services.contract.catalog import Catalog
from services.contract.envelope import OPTIONAL_ATTRIBUTES, REQUIRED_ATTRIBUTES, Envelope, Event
from services.contract.fields import DataModel

__all__ = [
    "DecodeError",
    "DlqReason",
    "Headers",
    "decode",
    "encode",
    "quoted",
]

Headers = Sequence[tuple[str, bytes]]

STRUCTURED = "application/cloudevents"
STRUCTURED_HEADER = ("content-type", b"application/cloudevents+json")
_KNOWN_ATTRIBUTES = frozenset(REQUIRED_ATTRIBUTES + OPTIONAL_ATTRIBUTES)


class DlqReason(StrEnum):
    """Why a record went to the dead-letter topic (``dlq_reason`` header)."""

    INVALID_JSON = "invalid_json"
    INVALID_ENVELOPE = "invalid_envelope"
    UNKNOWN_TYPE = "unknown_type"
    INVALID_DATA = "invalid_data"
    PROCESSING_ERROR = "processing_error"


class DecodeError(Exception):
    """A record that cannot be taken; it belongs in the dead-letter topic unchanged."""

    def __init__(self, reason: DlqReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


QUOTE_LIMIT = 200  # contract section 1: error details quote at most 200 characters of a value


def quoted(value: str, limit: int = QUOTE_LIMIT) -> str:
    """A value as an error detail quotes it: its ``repr``, cut after ``limit`` characters (a
    10,000-character subject was repeated whole in the dead letter's header)."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}... ({len(value) - limit:,} more characters)"


def _describe(exc: ValidationError, prefix: str = "") -> str:
    parts = []
    for err in exc.errors(include_url=False)[:3]:
        where = ".".join(str(p) for p in err["loc"]) or "(value)"
        parts.append(f"{prefix}{where}: {err['msg']}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def _header_map(headers: Headers | None) -> dict[str, bytes]:
    return {k.lower(): v for k, v in headers or ()}


def _json_kind(value: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def _loads(value: bytes, what: str) -> Any:
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(DlqReason.INVALID_JSON, f"{what} is not JSON: {exc}") from None


def _attributes_from_headers(headers: Mapping[str, bytes]) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    for name, raw in headers.items():
        if name.startswith("ce_"):
            try:
                attrs[name[3:]] = raw.decode("utf-8")
            except UnicodeDecodeError:
                msg = f"header {name} is not UTF-8"
                raise DecodeError(DlqReason.INVALID_ENVELOPE, msg) from None
    return attrs


def _structured(doc: Any, content_type: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Attributes and data of a structured-mode event; null attributes count as absent (JSON format)."""
    if not isinstance(doc, dict):
        msg = f"record value is {_json_kind(doc)}, expected a CloudEvent JSON object"
        raise DecodeError(DlqReason.INVALID_ENVELOPE, msg)
    attrs = {k: v for k, v in doc.items() if v is not None}
    if content_type and "datacontenttype" not in attrs:
        attrs["datacontenttype"] = content_type
    data = attrs.pop("data", None)
    if not isinstance(data, dict):
        what = "missing" if data is None else f"expected a JSON object, got {_json_kind(data)}"
        raise DecodeError(DlqReason.INVALID_DATA, f"data: {what}")
    return attrs, data


def decode(
    value: bytes | None,
    headers: Headers | None,
    *,
    catalog: Catalog,
    max_bytes: int = 262_144,
) -> Event:
    """Decode one Kafka record of ``catalog`` 's topic into its typed event.

    Structured mode: ``content-type: application/cloudevents+json``, or no ``ce_specversion`` header
    and a JSON object with ``specversion`` as the value. Binary mode: ``ce_*`` headers (at least
    ``ce_specversion``) and the ``data`` object as the value.

    A valid event takes one validation of the whole event (:attr:`Catalog.validator`); anything
    that does not pass is decoded again step by step, which names the reason and the field.
    """
    if value is None:
        raise DecodeError(DlqReason.INVALID_JSON, "record has no value (tombstone)")
    if len(value) > max_bytes:
        msg = f"record value is {len(value)} bytes, over the limit of {max_bytes} bytes"
        raise DecodeError(DlqReason.INVALID_ENVELOPE, msg)
    hmap = _header_map(headers)
    content_type = hmap.get("content-type", b"").decode("latin-1").strip()
    structured = content_type.lower().startswith(STRUCTURED)
    event = _valid(value, hmap, content_type, structured, catalog)
    if event is None:
        event = _checked(value, hmap, content_type, structured, catalog)
    if (expected := event.data.subject) != event.subject:
        msg = f"subject: {quoted(event.subject)} differs from the entity id {quoted(expected)} in data"
        raise DecodeError(DlqReason.INVALID_ENVELOPE, msg)
    return event


def _valid(
    value: bytes, hmap: dict[str, bytes], content_type: str, structured: bool, catalog: Catalog
) -> Event | None:
    """The event if the record is a valid one, else None; never more lenient than :func:`_checked`
    (same JSON parser, same models, the same attribute rules)."""
    try:
        if structured or "ce_specversion" not in hmap:
            doc = orjson.loads(value)
            if not isinstance(doc, dict):
                return None
            if not structured and content_type and doc.get("datacontenttype") is None:
                doc["datacontenttype"] = content_type
        else:
            doc = {name[3:]: raw.decode("utf-8") for name, raw in hmap.items() if name.startswith("ce_")}
            if "data" in doc:  # a ce_data header is an unknown attribute
                return None
            if content_type:
                doc.setdefault("datacontenttype", content_type)
            doc["data"] = orjson.loads(value)
        model = catalog.validator.validate_python(doc)
    except (orjson.JSONDecodeError, UnicodeDecodeError, ValidationError):
        return None
    return Event(**model.__dict__, time_s=model.time.timestamp())


def _checked(
    value: bytes, hmap: dict[str, bytes], content_type: str, structured: bool, catalog: Catalog
) -> Event:
    """Decode step by step, raising the first refusal as a :class:`DecodeError`."""
    if structured:
        attrs, data = _structured(_loads(value, "structured-mode value"), None)
    elif "ce_specversion" in hmap:
        attrs = _attributes_from_headers(hmap)
        if content_type:  # the Kafka binding maps content-type to datacontenttype in binary mode
            attrs.setdefault("datacontenttype", content_type)
        data = _loads(value, "binary-mode value (the data object)")
        if not isinstance(data, dict):
            msg = f"data: expected a JSON object, got {_json_kind(data)}"
            raise DecodeError(DlqReason.INVALID_DATA, msg)
    else:
        # No ce_specversion header: not binary mode. A JSON object with specversion is a structured
        # event whatever the content type says (the CloudEvents SDK writes its datacontenttype into
        # content-type, e.g. application/json); it keeps that type as its datacontenttype.
        doc = _loads(value, "record value")
        if not isinstance(doc, dict) or "specversion" not in doc:
            what = "a JSON object without specversion" if isinstance(doc, dict) else _json_kind(doc)
            msg = (
                f"specversion: missing; the value is {what} and there is no ce_specversion header, "
                "so it is neither a structured-mode nor a binary-mode CloudEvent"
            )
            raise DecodeError(DlqReason.INVALID_ENVELOPE, msg)
        attrs, data = _structured(doc, content_type or None)
    return _build(attrs, data, catalog)


def _build(attrs: dict[str, Any], data: dict[str, Any], catalog: Catalog) -> Event:
    unknown = sorted(set(attrs) - _KNOWN_ATTRIBUTES)
    if unknown:
        msg = f"{unknown[0]}: unknown attribute (allowed: {', '.join(sorted(_KNOWN_ATTRIBUTES))})"
        raise DecodeError(DlqReason.INVALID_ENVELOPE, msg)
    try:
        envelope = Envelope.model_validate(attrs)
    except ValidationError as exc:
        raise DecodeError(DlqReason.INVALID_ENVELOPE, _describe(exc)) from None
    spec = catalog.events.get(envelope.type)
    if spec is None:
        msg = f"type: {quoted(envelope.type)} is not an event type of {catalog.topic}"
        raise DecodeError(DlqReason.UNKNOWN_TYPE, msg)
    try:
        payload: DataModel = spec.data_model.model_validate(data)
    except ValidationError as exc:
        raise DecodeError(DlqReason.INVALID_DATA, _describe(exc, "data.")) from None
    return Event(**envelope.__dict__, data=payload, time_s=envelope.time.timestamp())


_NOT_HEADERS = frozenset({"data", "datacontenttype"})


def encode(event: Mapping[str, Any], *, binary: bool = False) -> tuple[list[tuple[str, bytes]], bytes]:
    """A CloudEvent given as its JSON object, as the headers and value of a Kafka record: structured
    mode (the whole event, ``content-type: application/cloudevents+json``) or binary mode (the
    attributes in ``ce_*`` headers but ``datacontenttype``, which is the ``content-type`` header,
    ``data`` as the value). What the tools and tests produce."""
    if not binary:
        return [STRUCTURED_HEADER], orjson.dumps(event)
    headers = [("content-type", str(event.get("datacontenttype", "application/json")).encode())]
    headers += [(f"ce_{k}", str(v).encode()) for k, v in event.items() if k not in _NOT_HEADERS]
    return headers, orjson.dumps(event.get("data"))


def header_pairs(headers: Iterable[tuple[str, bytes]] | Mapping[str, bytes] | None) -> Headers:
    """Normalise the header shapes aiokafka and Faust hand out into a list of pairs."""
    if headers is None:
        return []
    if isinstance(headers, Mapping):
        return list(headers.items())
    return list(headers)
