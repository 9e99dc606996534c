"""What the gateway allows a connection before it has read a request from it: slow and greedy
clients are cut off, so that one of them cannot hold the process's sockets and memory.

aiohttp closes a connection that sends nothing, but once a client has sent a byte of a request
head its keep-alive timer stops, and a request head sent a byte a minute was held forever (4,000
half-sent requests held 150 s, none closed). :class:`GuardedHandler` gives every request head
``header_timeout_s`` from its first byte; the body has ``body_timeout_s`` (:meth:`Guard.read`);
the process takes at most ``max_connections`` at once. Each cut is counted
(``tradepulse_gateway_slow_clients_total``, ``tradepulse_gateway_connections_refused_total``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import Counter, Gauge

__all__ = [
    "CONNECTIONS",
    "REFUSED_CONNECTIONS",
    "SLOW_CLIENTS",
    "Guard",
    "GuardedHandler",
    "guard_middleware",
]

SLOW_CLIENTS = Counter(
    "tradepulse_gateway_slow_clients_total",
    "Connections closed because a request's head or body did not arrive in time.",
    ["phase"],
)
REFUSED_CONNECTIONS = Counter(
    "tradepulse_gateway_connections_refused_total",
    "Connections closed at once because the process held TRADEPULSE_GATEWAY_MAX_CONNECTIONS.",
)
CONNECTIONS = Gauge("tradepulse_gateway_connections", "Connections the gateway holds open.")


class Guard:
    """The limits, and the connections held against them."""

    def __init__(self, *, header_timeout_s: float, body_timeout_s: float, max_connections: int) -> None:
        self.header_timeout_s = header_timeout_s
        self.body_timeout_s = body_timeout_s
        self.max_connections = max_connections
        self.open = 0

    def admit(self) -> bool:
        if self.open >= self.max_connections:
            REFUSED_CONNECTIONS.inc()
            return False
        self.open += 1
        CONNECTIONS.set(self.open)
        return True

    def release(self) -> None:
        self.open -= 1
        CONNECTIONS.set(self.open)

    async def read(self, request: web.Request) -> bytes | None:
        """The request's body, or None (the connection closed, counted) when it did not arrive
        within ``body_timeout_s``."""
        try:
            return await asyncio.wait_for(request.read(), timeout=self.body_timeout_s)
        except TimeoutError:
            SLOW_CLIENTS.labels(phase="body").inc()
            if request.transport is not None:
                request.transport.close()
            return None


class GuardedHandler(web.RequestHandler):
    """aiohttp's connection handler, with a deadline on each request head and the process's cap on
    connections."""

    def __init__(self, manager: Any, *, guard: Guard, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = guard
        self._admitted = False
        self._awaiting_head = True
        self._head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if not self._guard.admit():
            self.force_close()
            return
        self._admitted = True

    def data_received(self, data: bytes) -> None:
        if self._admitted and self._awaiting_head and self._head_deadline is None:
            loop = asyncio.get_running_loop()
            self._head_deadline = loop.call_later(self._guard.header_timeout_s, self._too_slow)
        super().data_received(data)

    def head_received(self) -> None:
        """A request's head is complete (the application has it): its deadline goes."""
        self._awaiting_head = False
        self._cancel_deadline()

    def answered(self) -> None:
        """The response went: the next request's head gets its deadline from its first byte."""
        self._awaiting_head = True

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cancel_deadline()
        if self._admitted:
            self._admitted = False
            self._guard.release()
        super().connection_lost(exc)

    def _too_slow(self) -> None:
        self._head_deadline = None
        if self._awaiting_head:
            SLOW_CLIENTS.labels(phase="headers").inc()
            self.force_close()

    def _cancel_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None


@web.middleware
async def guard_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Tells the connection's :class:`GuardedHandler` when a request head has arrived and when its
    response is done."""
    protocol = request.protocol
    if isinstance(protocol, GuardedHandler):
        protocol.head_received()
    try:
        return await handler(request)
    finally:
        if isinstance(protocol, GuardedHandler):
            protocol.answered()
