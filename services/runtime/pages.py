"""``/health``, ``/ready`` and ``/metrics`` of the processes that are not Faust workers (the HTTP
gateway, history), on aiohttp: the same pages and answers as a worker's, so that one container
health check, one scrape configuration and one alert serve them all."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

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
        "paths": pages_paths(),
    }
