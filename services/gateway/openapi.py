"""The OpenAPI 3.1 document of the gateway (schemas/gateway.openapi.yaml), generated from the code:
the routes, the event schemas of the catalog, the answers. `tradepulse schemas export` writes it
and a test fails when the file, the routes or the answers drift apart."""

from __future__ import annotations

from typing import Any

import yaml

from services.gateway.app import BATCH, PROBLEM, PROBLEM_TYPES, ROUTES, STRUCTURED, GatewaySettings
from services.registry import EVENT_TYPES
from services.runtime.pages import PAGES_FILE, pages_document, pages_paths

__all__ = ["FILE", "STATUSES", "document", "documents", "text"]

DEFAULT_BASE = str(GatewaySettings.model_fields["problem_base"].default)

FILE = "gateway.openapi.yaml"
STATUSES = {
    "202": "Every event was written to Kafka and acknowledged (acks=all).",
    "400": "An event is invalid (each refused event: index, field, rule); nothing was written.",
    "401": "No valid API key or client certificate.",
    "403": "An event's source or type is outside the credential's grant; nothing was written.",
    "408": "The body did not arrive within the body timeout; the connection is closed.",
    "413": "The body or the batch is larger than the gateway takes.",
    "415": "Neither a CloudEvents content type nor ce-* headers.",
    "429": "The credential's rate, or its number of requests at once, is exceeded; see Retry-After.",
    "503": "Kafka did not acknowledge in time; send the request again (see Retry-After).",
}


def _event_ref() -> dict[str, Any]:
    return {"oneOf": [{"$ref": f"./{name}.json"} for name in sorted(EVENT_TYPES)]}


def _responses() -> dict[str, Any]:
    """Every answer of a POST, each refusal with its problem type (the default base)."""
    problem = {"$ref": "#/components/schemas/Problem"}
    accepted = {
        "type": "object",
        "required": ["accepted"],
        "properties": {"accepted": {"type": "integer", "minimum": 1}},
    }
    responses: dict[str, Any] = {
        "202": {"description": STATUSES["202"], "content": {"application/json": {"schema": accepted}}}
    }
    for status, description in STATUSES.items():
        if status == "202":
            continue
        name = PROBLEM_TYPES[int(status)][0]
        text = f"{description} Problem type `{DEFAULT_BASE}{name}` (docs/operations.md, HTTP gateway)."
        answer: dict[str, Any] = {"description": text, "content": {PROBLEM: {"schema": problem}}}
        if status in ("429", "503"):
            answer["headers"] = {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}}
        if status == "401":
            answer["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
        responses[status] = answer
    return responses


RULES = (
    "Rules a schema cannot state: `subject` equals the entity id in `data` (e.g. `data.entry_id`; "
    "`data.bill_no` for `customs.transport.arrived`); `time` is at most TRADEPULSE_MAX_CLOCK_SKEW_S "
    "(300 s) ahead of the gateway's clock and at most TRADEPULSE_MAX_EVENT_AGE_S (400 days) old; "
    "`source` is a URI path without `.`/`..` segments or percent-encoded `.` or `/`, and with the "
    "type must lie within the credential's grant (403 otherwise, checked before the event itself); "
    "the body is at most TRADEPULSE_GATEWAY_MAX_BODY_BYTES (1 MiB), a batch at most "
    "TRADEPULSE_GATEWAY_MAX_BATCH_EVENTS (500) events. Nothing of a refused request is written."
)
HEADERS = {
    "ce-specversion": ({"type": "string", "enum": ["1.0"]}, "CloudEvents version"),
    "ce-id": (
        {"type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[^\\u0000-\\u001f\\u007f]+$"},
        "unique within its source",
    ),
    "ce-source": ({"type": "string", "minLength": 1}, "URI reference of the producing system"),
    "ce-type": (
        {"type": "string", "enum": sorted(EVENT_TYPES)},
        "an event type of docs/contract.md section 2",
    ),
    "ce-time": ({"type": "string", "format": "date-time"}, "when it happened, RFC 3339 with an offset"),
    "ce-subject": ({"type": "string", "minLength": 1, "maxLength": 1024}, "the entity id of `data`"),
}


def document() -> dict[str, Any]:
    security: list[dict[str, list[str]]] = [{"apiKey": []}, {"bearer": []}]
    events = {
        "post": {
            "operationId": "publishEvents",
            "summary": "Publish CloudEvents: one structured event, or a batch",
            "description": (
                "The CloudEvents HTTP protocol binding: structured mode (application/cloudevents+json) "
                "or a batch (application/cloudevents-batch+json). Binary mode is accepted here too, and "
                "documented on /events/binary, where its headers can be required. Each event goes to "
                "the input topic of its type, keyed by its subject. " + RULES
            ),
            "security": security,
            "requestBody": {
                "required": True,
                "content": {
                    STRUCTURED: {"schema": _event_ref()},
                    BATCH: {"schema": {"type": "array", "items": _event_ref(), "minItems": 1}},
                },
            },
            "responses": _responses(),
        }
    }
    binary = {
        "post": {
            "operationId": "publishBinaryEvent",
            "summary": "Publish one CloudEvent in binary mode: attributes in ce-* headers, data as the body",
            "description": "The same handler as /events, for binary mode. " + RULES,
            "security": security,
            "parameters": [
                {"name": name, "in": "header", "required": True, "schema": schema, "description": text}
                for name, (schema, text) in HEADERS.items()
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"type": "object", "description": "the event's `data`"}}
                },
            },
            "responses": _responses(),
        }
    }
    paths: dict[str, Any] = {"/events": events, "/events/binary": binary, **pages_paths()}
    assert set(paths) == set(ROUTES), "the document and the application's routes must agree"
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "TradePulse HTTP ingest gateway",
            "version": "1.0.0",
            "description": "CloudEvents over HTTP into TradePulse's input topics (docs/operations.md).",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "bearer": {"type": "http", "scheme": "bearer"},
            },
            "schemas": {
                "Problem": {
                    "type": "object",
                    "description": "RFC 9457 problem details, with each refused event.",
                    "required": ["type", "title", "status", "errors"],
                    "properties": {
                        "type": {
                            "type": "string",
                            "format": "uri",
                            "description": f"TRADEPULSE_GATEWAY_PROBLEM_BASE (default `{DEFAULT_BASE}`) and "
                            f"the problem's name: {', '.join(n for n, _ in PROBLEM_TYPES.values())}",
                        },
                        "title": {"type": "string"},
                        "status": {"type": "integer"},
                        "detail": {"type": "string"},
                        "errors": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["field", "rule"],
                                "properties": {
                                    "index": {"type": "integer", "description": "in the batch"},
                                    "field": {"type": "string"},
                                    "rule": {"type": "string"},
                                },
                            },
                        },
                    },
                }
            },
        },
    }


def text() -> str:
    return yaml.safe_dump(document(), sort_keys=False, allow_unicode=True, width=100)


def documents() -> dict[str, str]:
    """The OpenAPI documents of schemas/, by file name: the gateway's and the pages'."""
    pages = yaml.safe_dump(pages_document(), sort_keys=False, allow_unicode=True, width=100)
    return {FILE: text(), PAGES_FILE: pages}
