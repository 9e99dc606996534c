"""``/health``, ``/ready`` and ``/metrics`` of the processes that are not Faust workers (the HTTP
gateway, history), on aiohttp: the same pages and answers as a worker's, so that one container
health check, one scrape configuration and one alert serve them all."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from services.engine.watch import ACTIVE
from services.runtime.kafka_admin import StartupError
from services.runtime.metrics import exposition

__all__ = [
    "PAGES",
    "PAGES_FILE",
    "add_pages",
    "pages_document",
    "pages_paths",
    "readiness_body",
    "require_free_port",
    "serve_pages",
]

PAGES_FILE = "pages.openapi.yaml"

PAGES = ("/health", "/ready", "/metrics")


def readiness_body(service: str, checks: Mapping[str, str], **details: Any) -> tuple[dict[str, Any], int]:
    """The one shape of every process's ``/ready`` (schemas/pages.openapi.yaml): ``service``,
    ``ready``, ``checks`` (each ``ok`` or what is wrong) and details of the process's own;
    200 when every check is ``ok``, else 503."""
    ready = all(state == "ok" for state in checks.values())
    return {"service": service, "ready": ready, "checks": dict(checks), **details}, 200 if ready else 503


def add_pages(
    app: web.Application,
    service: str,
    *,
    ready: Callable[[], Mapping[str, bool]],
    foreign: Iterable[str],
    details: Callable[[], Mapping[str, Any]] = dict,
) -> None:
    """``/health``: the process serves requests (with ``details``); ``/ready``: 200 when every
    dependency ``ready`` names is reachable, else 503 naming the ones that are not; ``/metrics``:
    this process's families (not the ``tradepulse_<name>_`` ones of the ``foreign`` domains)."""
    hidden = tuple(foreign)

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"service": service, "status": "ok", **details()})

    async def readiness(request: web.Request) -> web.Response:
        checks = {name: "ok" if ok else "unreachable" for name, ok in ready().items()}
        body, status = readiness_body(service, checks)
        return web.json_response(body, status=status)

    async def metrics(request: web.Request) -> web.Response:
        body = await asyncio.to_thread(exposition, hidden)
        return web.Response(body=body, content_type=CONTENT_TYPE_LATEST.split(";")[0])

    for path, handler in zip(PAGES, (health, readiness, metrics), strict=True):
        app.router.add_get(path, handler)


async def serve_pages(
    host: str, port: int, service: str, *, ready: Callable[[], Mapping[str, bool]], foreign: Iterable[str]
) -> web.AppRunner:
    """The pages alone on ``host:port`` (history); the caller cleans the runner up."""
    app = web.Application()
    add_pages(app, service, ready=ready, foreign=foreign)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        raise _taken(host, port, exc) from None
    return runner


def require_free_port(host: str, port: int) -> None:
    """StartupError naming the fix when ``host:port`` cannot be listened on (another process holds
    it): checked before a Faust worker starts, whose web server would otherwise fail with a
    traceback after it joined its group."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise _taken(host, port, exc) from None


def _taken(host: str, port: int, exc: OSError) -> StartupError:
    fix = "stop what holds it, or set TRADEPULSE_WEB_PORT"
    return StartupError(f"cannot listen on {host}:{port} ({exc.strerror}): {fix}")


WATCH_PAGE_MAX = 1000


def watch_query(query: Mapping[str, str], rules: Sequence[str]) -> tuple[list[str], list[str], str, int]:
    """``GET /watch``'s parameters (``rule``, ``state``, ``limit``, ``after``) checked: the rules and
    states to list, the cursor to start after and the page size. ValueError says what is wrong;
    LookupError names a rule this service lacks (404: the page would list nothing)."""
    unknown = sorted(set(query) - {"rule", "state", "limit", "after"})
    if unknown:
        msg = f"unknown parameters {unknown}: use rule, state, limit, after"
        raise ValueError(msg)
    rule = query.get("rule")
    if rule is not None and rule not in rules:
        msg = f"no watch rule {rule!r} here; the rules: {sorted(rules)}"
        raise LookupError(msg)
    state = query.get("state")
    if state is not None and state not in ACTIVE:
        msg = "state is warning or breached (cleared and expired cases are on the watch topic)"
        raise ValueError(msg)
    limit_text = query.get("limit", "100")
    if not re.fullmatch(r"[0-9]{1,6}", limit_text) or not 1 <= int(limit_text) <= WATCH_PAGE_MAX:
        msg = f"limit is a whole number from 1 to {WATCH_PAGE_MAX}"
        raise ValueError(msg)
    after = query.get("after")
    if after is not None and not re.fullmatch(r"\d{15}\|.+", after):
        msg = "after is the `next` cursor of the page before"
        raise ValueError(msg)
    states = [state] if state else list(ACTIVE)
    return [rule] if rule else list(rules), states, after or "", int(limit_text)


def pages_paths() -> dict[str, Any]:
    """The OpenAPI paths of ``/health``, ``/ready`` and ``/metrics``, as every process answers them."""
    check = {"type": "string", "description": "`ok`, or what is wrong (e.g. `none assigned`, `unreachable`)"}
    ready = {
        "type": "object",
        "required": ["service", "ready", "checks"],
        "properties": {
            "service": {"type": "string"},
            "ready": {"type": "boolean"},
            "checks": {"type": "object", "additionalProperties": check},
        },
        "description": "A worker adds `assigned` (its partitions) and `restoring` (per partition, records "
        "restored and in all).",
    }
    health = {
        "type": "object",
        "required": ["service", "status"],
        "properties": {
            "service": {"type": "string"},
            "status": {"type": "string", "enum": ["ok", "crashed"]},
        },
    }
    json_body = "application/json"
    text = {"text/plain": {"schema": {"type": "string"}}}
    return {
        "/health": {"get": {"operationId": "health", "summary": "Liveness: the process serves requests.",
                            "responses": {
                                "200": {"description": "Alive.", "content": {json_body: {"schema": health}}},
                                "500": {"description": "The worker's app crashed.",
                                        "content": {json_body: {"schema": health}}}}}},
        "/ready": {"get": {"operationId": "ready",
                           "summary": "Readiness: every dependency this process names is there.",
                           "responses": {
                               "200": {"description": "Ready.", "content": {json_body: {"schema": ready}}},
                               "503": {"description": "Not ready; `checks` says why.",
                                       "content": {json_body: {"schema": ready}}}}}},
        "/metrics": {"get": {"operationId": "metrics", "summary": "Prometheus metrics (text format 0.0.4).",
                             "responses": {"200": {"description": "The metrics.", "content": text}}}},
    }  # fmt: skip


def watch_path() -> dict[str, Any]:
    """The OpenAPI path of a worker's ``GET /watch``."""
    flag = {
        "type": "object",
        "description": "The data of the case's watch record (docs/contract.md section 9).",
        "required": ["service", "case_id", "rule", "state", "since", "due", "started", "reached"],
    }
    cursor = {"type": ["string", "null"], "description": "`after` for the next page; null on the last."}
    page = {
        "type": "object",
        "required": ["service", "partitions", "cases", "next"],
        "properties": {
            "service": {"type": "string"},
            "partitions": {"type": "array", "items": {"type": "integer"}},
            "cases": {"type": "array", "items": flag},
            "next": cursor,
        },
    }
    error = {"type": "object", "required": ["service", "error"],
             "properties": {"service": {"type": "string"}, "error": {"type": "string"}}}  # fmt: skip
    limit = {"type": "integer", "minimum": 1, "maximum": WATCH_PAGE_MAX, "default": 100}
    params = [
        {"name": "rule", "in": "query", "schema": {"type": "string"},
         "description": "One watch rule of the worker's service (all when left out)."},
        {"name": "state", "in": "query", "schema": {"type": "string", "enum": list(ACTIVE)},
         "description": "Both when left out."},
        {"name": "limit", "in": "query", "schema": limit},
        {"name": "after", "in": "query", "schema": {"type": "string", "pattern": r"^\d{15}\|.+$"},
         "description": "The `next` cursor of the page before."},
    ]  # fmt: skip

    def answer(description: str, schema: dict[str, Any]) -> dict[str, Any]:
        return {"description": description, "content": {"application/json": {"schema": schema}}}

    return {
        "get": {
            "operationId": "watch",
            "parameters": params,
            "summary": "Workers: the cases the SLA watch flags on their partitions, oldest start first.",
            "responses": {
                "200": answer("A page of flagged cases.", page),
                "400": answer("A parameter is wrong; `error` says which.", error),
                "404": answer("The service has no such rule.", error),
            },
        }
    }


def pages_document() -> dict[str, Any]:
    """schemas/pages.openapi.yaml: the pages of the workers, history and the release."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "TradePulse process pages",
            "version": "1.0.0",
            "description": "`/health`, `/ready` and `/metrics` of every TradePulse process (workers on "
            "their service's port, history on 6066, the release on 6067; the gateway serves them too).",
        },
        "paths": {**pages_paths(), "/watch": watch_path()},
    }
