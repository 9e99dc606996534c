"""The OpenAPI 3.1 document of the gateway (schemas/gateway.openapi.yaml), generated from the code:
the routes, the event schemas of the catalog, the answers. `tradepulse schemas export` writes it
and a test fails when the file, the routes or the answers drift apart."""

from __future__ import annotations

from typing import Any

import yaml

from services.gateway.app import BATCH, PROBLEM, ROUTES, STRUCTURED
from services.registry import EVENT_TYPES

__all__ = ["FILE", "STATUSES", "document", "text"]

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


def document() -> dict[str, Any]:
    problem = {"$ref": "#/components/schemas/Problem"}
    responses: dict[str, Any] = {
        "202": {
            "description": STATUSES["202"],
            "content": {"application/json": {"schema": {
                "type": "object", "required": ["accepted"],
                "properties": {"accepted": {"type": "integer", "minimum": 1}}}}},
        }
    }  # fmt: skip
    for status, description in STATUSES.items():
        if status == "202":
            continue
        answer: dict[str, Any] = {"description": description, "content": {PROBLEM: {"schema": problem}}}
        if status in ("429", "503"):
            answer["headers"] = {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}}
        responses[status] = answer
    events = {
        "post": {
            "operationId": "publishEvents",
            "summary": "Publish CloudEvents (structured, batched or binary mode)",
            "description": (
                "The CloudEvents HTTP protocol binding. Binary mode: ce-specversion, ce-id, ce-source, "
                "ce-type, ce-time, ce-subject headers, the body is `data` (application/json). Each "
                "event goes to the input topic of its type, keyed by its subject."
            ),
            "security": [{"apiKey": []}, {"bearer": []}],
            "requestBody": {
                "required": True,
                "content": {
                    STRUCTURED: {"schema": _event_ref()},
                    BATCH: {"schema": {"type": "array", "items": _event_ref(), "minItems": 1}},
                    "application/json": {"schema": {"type": "object", "description": "binary mode: data"}},
                },
            },
            "responses": responses,
        }
    }
    pages = {
        "/health": ("Liveness: the process serves requests.", "application/json"),
        "/ready": ("Readiness: Kafka is reachable (503 when not).", "application/json"),
        "/metrics": ("Prometheus metrics.", "text/plain"),
    }
    paths: dict[str, Any] = {"/events": events}
    for path, (summary, media) in pages.items():
        ok = {"description": "OK", "content": {media: {}}}
        paths[path] = {"get": {"summary": summary, "responses": {"200": ok}}}
    assert set(paths) == set(ROUTES), "the document and the application's routes must agree"
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "TradePulse HTTP ingest gateway",
            "version": "1.0.0",
            "description": "CloudEvents over HTTP into TradePulse's input topics (README, HTTP gateway).",
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
                        "type": {"type": "string", "format": "uri"},
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
