"""The HTTP ingest gateway: the CloudEvents HTTP binding in its three modes, in front of Kafka.

One request takes these steps, and answers at the first that fails:

1. size: a body over ``max_body_bytes`` is 413 before it is read;
2. who: an API key (``Authorization: Bearer``, or ``X-API-Key``) or a client certificate (when the
   gateway terminates TLS) names a credential, else 401;
3. parse: structured (``application/cloudevents+json``), batched
   (``application/cloudevents-batch+json``, at most ``max_batch_events``) or binary (``ce-*``
   headers, the body is ``data``);
4. per event: its ``type`` names its topic; the credential's grant must cover its ``source`` and
   ``type`` (403), and it must pass the same contract models as the services' intake (400);
5. rate: the credential's token bucket must hold one token per event (429, ``Retry-After``);
6. write: every event to its topic, keyed by ``subject``, with an idempotent ``acks=all``
   producer; the answer (202) comes once Kafka has acknowledged all of them, and 503 when it does
   not within ``ack_timeout_s``.

A batch is accepted whole or refused whole: steps 4 and 5 look at every event before anything is
written, and a refusal lists each refused event's index, field and rule (RFC 9457). A 503 may
leave part of a batch written; sending the batch again is safe, because the services drop an
event they have already taken by its (``source``, ``id``) (docs/contract.md section 3).
"""

from __future__ import annotations

import asyncio
import logging
import math
import signal
import ssl
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import orjson
from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from prometheus_client import Counter, Histogram
from pydantic import Field, FilePath
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.contract.catalog import Catalog
from services.contract.codec import DecodeError, decode
from services.gateway.credentials import Credential, CredentialsError, Grants, load
from services.gateway.guard import Guard, GuardedHandler, guard_middleware
from services.registry import DOMAINS, SOURCES
from services.runtime.intake import too_old
from services.runtime.kafka_admin import require_access, require_topic
from services.runtime.pages import PAGES, add_pages
from services.runtime.settings import Settings
from services.tools.acls import access_of

__all__ = ["PORT", "Gateway", "GatewaySettings", "Refusal", "build_app"]

log = logging.getLogger("tradepulse.gateway")

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
PROBLEM = "application/problem+json"
PROBLEM_TYPES: dict[int, tuple[str, str]] = {
    400: ("invalid-event", "An event (or the batch) breaks a rule of the contract; `errors` names each."),
    401: ("unauthorized", "No valid API key, bearer token or client certificate."),
    403: ("not-granted", "An event's source or type is outside the credential's grant."),
    408: ("request-timeout", "The body did not arrive within the body timeout."),
    413: ("too-large", "The body, or the number of events in the batch, is above the gateway's limit."),
    415: ("not-a-cloudevent", "Neither a CloudEvents content type nor ce-* headers (binary mode)."),
    429: (
        "too-many-requests",
        "The credential's rate, or its requests at once, is exceeded; see Retry-After.",
    ),
    503: ("kafka-unavailable", "Kafka did not acknowledge in time; send the request again (Retry-After)."),
}
"""Status -> (the problem type's name, what it means): the ``type`` of each answer is the configured
base (``TRADEPULSE_GATEWAY_PROBLEM_BASE``, default ``urn:tradepulse:problem:``) and the name,
a URI the project controls (RFC 9457); docs/operations.md, "HTTP gateway", lists them."""

REQUESTS = Counter(
    "tradepulse_gateway_requests_total", "Requests by answer and credential.", ["status", "credential"]
)
EVENTS = Counter("tradepulse_gateway_events_total", "Events written to Kafka, by topic.", ["topic"])
REFUSED = Counter(
    "tradepulse_gateway_refusals_total",
    "Requests refused, by credential and reason.",
    ["credential", "reason"],
)
LATENCY = Histogram(
    "tradepulse_gateway_request_seconds", "From the request to the answer (Kafka acknowledged included).",
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)  # fmt: skip


PORT = 6070
"""The gateway's port unless TRADEPULSE_GATEWAY_PORT says otherwise (the stacks and the chart use it)."""


class GatewaySettings(BaseSettings):
    """``TRADEPULSE_GATEWAY_*`` (docs/configuration.md)."""

    model_config = SettingsConfigDict(
        env_prefix="TRADEPULSE_GATEWAY_", extra="ignore", frozen=True, env_ignore_empty=True
    )

    credentials_file: FilePath
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = PORT
    max_body_bytes: Annotated[int, Field(ge=1024)] = 1 << 20
    max_batch_events: Annotated[int, Field(ge=1)] = 500
    ack_timeout_s: Annotated[float, Field(gt=0)] = 10.0
    # slow and greedy clients (services/gateway/guard.py): a request head must arrive within
    # header_timeout_s of its first byte, a body within body_timeout_s; an idle connection closes
    # after idle_timeout_s; the process holds at most max_connections, one credential at most
    # max_concurrent_per_credential requests at once
    header_timeout_s: Annotated[float, Field(gt=0)] = 10.0
    body_timeout_s: Annotated[float, Field(gt=0)] = 30.0
    idle_timeout_s: Annotated[float, Field(gt=0)] = 30.0
    max_connections: Annotated[int, Field(ge=1)] = 1000
    max_concurrent_per_credential: Annotated[int, Field(ge=1)] = 64
    problem_base: Annotated[str, Field(pattern=r"^[a-z][a-z0-9+.-]*:\S*$")] = "urn:tradepulse:problem:"
    """Where problem types live: a URN by default, or a page of the operator's that explains them."""
    tls_certfile: FilePath | None = None
    tls_keyfile: FilePath | None = None
    tls_client_cafile: FilePath | None = None
    """CA of client certificates; with it, a certificate whose subject a credential names is a login."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """One refused event of a request (``index`` None: the request as a whole)."""

    status: int
    reason: str
    field: str
    rule: str
    index: int | None = None


Candidate = tuple[str | None, bytes, list[tuple[str, bytes]], Any, Any]
"""(topic, value, headers, claimed source, claimed type): an event as received, before it is read."""
"""An event as read: its topic (None: unknown type), the Kafka record value and headers."""


@dataclass(frozen=True, slots=True)
class Record:
    """An accepted event as the Kafka record it becomes."""

    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


@dataclass(slots=True)
class Bucket:
    """A token bucket: ``rate`` tokens a second, at most ``burst``."""

    rate: float
    burst: float
    tokens: float = -1.0
    at: float = field(default_factory=time.monotonic)

    def take(self, n: int) -> float:
        """Take ``n`` tokens; 0 when granted, else the seconds until they would be there."""
        now = time.monotonic()
        if self.tokens < 0:
            self.tokens = self.burst
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if n <= self.tokens:
            self.tokens -= n
            return 0.0
        return (n - self.tokens) / self.rate


class Problem(Exception):
    """A refusal of the whole request, answered as ``application/problem+json``."""

    def __init__(
        self, status: int, title: str, refusals: Sequence[Refusal], headers: Mapping[str, str] | None = None
    ):
        super().__init__(title)
        self.status, self.title, self.refusals, self.headers = status, title, refusals, dict(headers or {})

    def response(self, base: str) -> web.Response:
        errors = [
            {**({"index": r.index} if r.index is not None else {}), "field": r.field, "rule": r.rule}
            for r in self.refusals
        ]
        body = {"type": base + PROBLEM_TYPES[self.status][0], "title": self.title, "status": self.status,
                "detail": "; ".join(f"{e.get('index', '-')}: {e['field']}: {e['rule']}" for e in errors[:5]),
                "errors": errors}  # fmt: skip
        return web.Response(
            status=self.status, body=orjson.dumps(body), content_type=PROBLEM, headers=self.headers
        )


def _split(detail: str) -> tuple[str, str]:
    """(field, rule) of the codec's first reason: ``data.entry_id: Field required; ...``."""
    first = detail.split("; ")[0]
    where, _, rule = first.partition(": ")
    return (where, rule) if rule else ("(event)", first)


class Gateway:
    """The request handling, with its producer and credentials."""

    def __init__(self, settings: Settings, config: GatewaySettings, grants: Grants) -> None:
        self.settings = settings
        self.config = config
        self.grants = grants
        self.catalogs: dict[str, Catalog] = {}
        self.topic_of: dict[str, str] = {}
        for domain in SOURCES.values():
            for type_name in domain.catalog.events:
                self.topic_of[type_name] = domain.topic
            self.catalogs[domain.topic] = domain.catalog
        self.buckets: dict[str, Bucket] = {}
        self.producer: AIOKafkaProducer | None = None
        self.kafka_ok = False
        self.guard = Guard(
            header_timeout_s=config.header_timeout_s, body_timeout_s=config.body_timeout_s,
            max_connections=config.max_connections,
        )  # fmt: skip
        self.in_flight: dict[str, int] = {}  # requests being handled, per credential

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        self.producer = AIOKafkaProducer(
            **self.settings.kafka_client(), acks="all", enable_idempotence=True, linger_ms=2,
            request_timeout_ms=int(self.config.ack_timeout_s * 1000),
        )  # fmt: skip
        await self.producer.start()
        self.kafka_ok = True

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()

    def reload(self) -> None:
        """SIGHUP: read the credentials file again; a bad file keeps the old grants (and says why)."""
        try:
            self.grants = load(self.grants.source)
        except CredentialsError as exc:
            log.error("credentials not reloaded; the previous ones stay", extra={"error": str(exc)})
            return
        log.info("credentials reloaded", extra={"credentials": len(self.grants)})

    # -- one request ----------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        who = "anonymous"
        try:
            credential = self._who(request)
            who = credential.name
            held = self.in_flight.get(who, 0)
            if held >= self.config.max_concurrent_per_credential:
                limit = self.config.max_concurrent_per_credential
                rule = f"at most {limit} requests at once per credential"
                refusal = Refusal(429, "concurrency", "(request)", rule)
                raise Problem(429, "Too many requests at once", [refusal], {"Retry-After": "1"})
            self.in_flight[who] = held + 1
            try:
                records = await self._records(request, credential)
            finally:
                self.in_flight[who] -= 1
            wait = self._bucket(credential).take(len(records))
            if wait > 0:
                retry = str(max(1, math.ceil(wait)))
                rule = f"more than {credential.rate_per_s:g} events/s (burst {credential.burst})"
                raise Problem(
                    429, "Too many events", [Refusal(429, "rate", "(request)", rule)], {"Retry-After": retry}
                )
            await self._write(records)
        except Problem as problem:
            reason = problem.refusals[0].reason if problem.refusals else "other"
            REFUSED.labels(credential=who, reason=reason).inc()
            REQUESTS.labels(status=str(problem.status), credential=who).inc()
            extra = {
                "credential": who,
                "status": problem.status,
                "reason": reason,
                "refused": len(problem.refusals),
                "audit": True,  # every refusal is logged, never thinned out
            }
            log.warning("request refused", extra=extra)
            LATENCY.observe(time.perf_counter() - started)
            return problem.response(self.config.problem_base)
        REQUESTS.labels(status="202", credential=who).inc()
        LATENCY.observe(time.perf_counter() - started)
        return web.json_response({"accepted": len(records)}, status=202)

    def _who(self, request: web.Request) -> Credential:
        """The one credential the request names. Every key it presents must be valid and name the
        same credential: a wrong key beside a right one is refused, never passed over."""
        keys = []
        if "X-API-Key" in request.headers:
            keys.append(request.headers["X-API-Key"].strip())
        auth = request.headers.get("Authorization")
        if auth is not None:
            keys.append(auth[7:].strip() if auth.lower().startswith("bearer ") else "")
        named = [self.grants.for_key(k) if k else None for k in keys]
        credential = named[0] if named and all(n is named[0] for n in named) else None
        if credential is None and not keys:
            subject = _certificate_subject(request)
            credential = self.grants.for_subject(subject) if subject else None
        if credential is None:
            rule = "an API key (Authorization: Bearer) or a client certificate the gateway knows"
            refusal = Refusal(401, "credentials", "Authorization", rule)
            raise Problem(401, "Unauthorized", [refusal], {"WWW-Authenticate": 'Bearer realm="tradepulse"'})
        return credential

    async def _records(self, request: web.Request, credential: Credential) -> list[Record]:
        if request.content_length is not None and request.content_length > self.config.max_body_bytes:
            raise _too_large(self.config.max_body_bytes)
        try:
            body = await self.guard.read(request)
        except web.HTTPRequestEntityTooLarge:
            raise _too_large(self.config.max_body_bytes) from None
        if body is None:  # too slow: the connection is closed, nobody reads an answer
            rule = f"the body did not arrive within {self.config.body_timeout_s:g} s"
            raise Problem(408, "Request timeout", [Refusal(408, "slow_client", "(body)", rule)])
        candidates: list[tuple[int | None, Candidate]]
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type == BATCH:
            items = _json(body, "the batch")
            if not isinstance(items, list):
                raise Problem(
                    400,
                    "Invalid batch",
                    [Refusal(400, "invalid", "(batch)", "must be a JSON array of events")],
                )
            if len(items) > self.config.max_batch_events:
                rule = f"at most {self.config.max_batch_events} events per batch"
                raise Problem(413, "Batch too large", [Refusal(413, "too_large", "(batch)", rule)])
            if not items:
                raise Problem(
                    400, "Invalid batch", [Refusal(400, "invalid", "(batch)", "holds at least one event")]
                )
            candidates = [(i, self._structured(orjson.dumps(item), item)) for i, item in enumerate(items)]
        elif content_type == STRUCTURED:
            candidates = [(None, self._structured(body, _json(body, "the event")))]
        elif "ce-specversion" in request.headers:
            candidates = [(None, self._binary(request, body, content_type))]
        else:
            rule = f"Content-Type {STRUCTURED} or {BATCH}, or ce-* headers (binary mode)"
            raise Problem(415, "Not a CloudEvent", [Refusal(415, "media_type", "Content-Type", rule)])
        records, refusals = [], []
        for index, candidate in candidates:
            outcome = self._check(candidate, credential, index)
            if isinstance(outcome, Refusal):
                refusals.append(outcome)
            else:
                records.append(outcome)
        if refusals:
            status = 403 if any(r.status == 403 for r in refusals) else 400
            title = "Not allowed for this credential" if status == 403 else "Invalid event"
            raise Problem(status, title, refusals)
        return records

    def _structured(self, value: bytes, doc: Any) -> Candidate:
        claimed = doc if isinstance(doc, dict) else {}
        type_ = claimed.get("type")
        return (
            self.topic_of.get(type_) if isinstance(type_, str) else None,
            value,
            [("content-type", STRUCTURED.encode())],
            claimed.get("source"),
            type_,
        )

    def _binary(self, request: web.Request, body: bytes, content_type: str) -> Candidate:
        headers = [
            ("ce_" + name[3:].lower(), urllib.parse.unquote(value).encode())
            for name, value in request.headers.items()
            if name.lower().startswith("ce-")
        ]
        # no Content-Type (the SDK sends none without datacontenttype), or a client's octet-stream
        # default: the contract's data is a JSON object, which the decode checks
        if content_type in ("", "application/octet-stream"):
            content_type = "application/json"
        headers.append(("content-type", content_type.encode()))
        type_ = request.headers.get("ce-type")
        source = request.headers.get("ce-source")
        source = urllib.parse.unquote(source) if source is not None else None
        return self.topic_of.get(type_ or ""), body, headers, source, type_

    def _check(self, candidate: Candidate, credential: Credential, index: int | None) -> Record | Refusal:
        """Authorize, then validate: the event's claimed source and type against the credential's
        grant before anything else of it is read, so a key learns nothing of the rules of topics
        it may not write (an invalid event outside its grant is 403, not a validation detail)."""
        topic, value, headers, source, type_ = candidate
        for name, claimed in (("source", source), ("type", type_)):
            if not isinstance(claimed, str) or not claimed:
                return Refusal(400, "invalid_envelope", name, "missing, or not a string", index)
        lacking = credential.allows(source, type_)
        if lacking is not None:
            rule = f"this credential may not send this {lacking}"
            return Refusal(403, f"{lacking}_not_granted", lacking, rule, index)
        if topic is None:
            return Refusal(
                400, "unknown_type", "type", "not an event type of docs/contract.md section 2", index
            )
        try:
            event = decode(value, headers, catalog=self.catalogs[topic], max_bytes=self.config.max_body_bytes)
        except DecodeError as exc:
            field_name, rule = _split(exc.detail)
            return Refusal(400, exc.reason.value, field_name, rule, index)
        now = time.time()
        ahead = event.time_s - now
        if ahead > self.settings.max_clock_skew_s:
            limit = self.settings.max_clock_skew_s
            rule = f"{ahead:,.0f} s ahead of the gateway's clock; the limit is {limit:,.0f} s"
            return Refusal(400, "invalid_envelope", "time", rule, index)
        if -ahead > self.settings.max_event_age_s:
            return Refusal(
                400,
                "invalid_envelope",
                *_split(too_old(event.time, now, self.settings.max_event_age_s)),
                index,
            )
        return Record(self.settings.topic(topic), event.subject.encode(), value, headers)

    def _bucket(self, credential: Credential) -> Bucket:
        bucket = self.buckets.get(credential.name)
        if bucket is None or (bucket.rate, bucket.burst) != (credential.rate_per_s, credential.burst):
            bucket = self.buckets[credential.name] = Bucket(credential.rate_per_s, float(credential.burst))
        return bucket

    async def _write(self, records: list[Record]) -> None:
        assert self.producer is not None
        producer = self.producer

        async def send_all() -> None:
            futures = [await producer.send(r.topic, r.value, key=r.key, headers=r.headers) for r in records]
            await asyncio.gather(*futures)

        try:
            await asyncio.wait_for(send_all(), timeout=self.config.ack_timeout_s)
        except (TimeoutError, KafkaError) as exc:
            self.kafka_ok = False
            log.error(
                "kafka did not acknowledge", extra={"error": type(exc).__name__, "events": len(records)}
            )
            rule = f"Kafka did not acknowledge within {self.config.ack_timeout_s:g} s; send the request again"
            raise Problem(
                503, "Kafka unavailable", [Refusal(503, "kafka", "(request)", rule)], {"Retry-After": "5"}
            ) from None
        self.kafka_ok = True
        for r in records:
            EVENTS.labels(topic=r.topic.removeprefix(self.settings.topic_prefix)).inc()

    async def check_kafka(self) -> None:
        """Readiness: can the producer reach the cluster now?"""
        assert self.producer is not None
        try:
            await asyncio.wait_for(self.producer.client.fetch_all_metadata(), timeout=3)
            self.kafka_ok = True
        except (TimeoutError, KafkaError):
            self.kafka_ok = False


def _json(body: bytes, what: str) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Problem(
            400, "Invalid JSON", [Refusal(400, "invalid_json", "(body)", f"{what} is not JSON: {exc}")]
        ) from None


def _too_large(limit: int) -> Problem:
    return Problem(413, "Body too large", [Refusal(413, "too_large", "(body)", f"at most {limit} bytes")])


def _certificate_subject(request: web.Request) -> str | None:
    transport = request.transport
    cert = transport.get_extra_info("peercert") if transport is not None else None
    if not cert:
        return None
    for rdn in cert.get("subject", ()):
        for name, value in rdn:
            if name == "commonName":
                return str(value)
    return None


ROUTES = {"/events": "POST", "/events/binary": "POST", **dict.fromkeys(PAGES, "GET")}
"""``/events`` takes every content mode (the CloudEvents HTTP binding); ``/events/binary`` is the
same handler under a path of its own, so that the OpenAPI document can require the ce-* headers of
binary mode, which it cannot make depend on a media type of ``/events``."""


def build_app(gateway: Gateway) -> web.Application:
    """The aiohttp application: ``POST /events`` and the operational pages (schemas/gateway.openapi.yaml)."""
    app = web.Application(client_max_size=gateway.config.max_body_bytes, middlewares=[guard_middleware])
    app.router.add_post("/events", gateway.handle)
    app.router.add_post("/events/binary", gateway.handle)
    add_pages(
        app, "gateway", ready=lambda: {"kafka": gateway.kafka_ok}, foreign=DOMAINS,
        details=lambda: {"credentials": len(gateway.grants)},
    )  # fmt: skip
    return app


def server_ssl(config: GatewaySettings) -> ssl.SSLContext | None:
    """TLS of the gateway itself, when configured; client certificates optional (keys still work)."""
    if config.tls_certfile is None or config.tls_keyfile is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(config.tls_certfile), str(config.tls_keyfile))
    if config.tls_client_cafile is not None:
        context.load_verify_locations(cafile=str(config.tls_client_cafile))
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


async def serve(settings: Settings, config: GatewaySettings, stop_timeout_s: float) -> None:
    """Run until SIGTERM or SIGINT; SIGHUP reloads the credentials without dropping connections."""
    gateway = Gateway(settings, config, load(Path(config.credentials_file)))
    access = access_of("gateway", settings)  # a missing topic or grant: one line naming it (exit 2)
    await require_access(settings.kafka_client(), access, timeout_s=settings.startup_timeout_s)
    for topic in access.topics:
        fix = "start its service once, or create it (tradepulse topics SERVICE)"
        await require_topic(settings.kafka_client(), topic, timeout_s=settings.startup_timeout_s, fix=fix)
    await gateway.start()
    runner = web.AppRunner(build_app(gateway), access_log=None, shutdown_timeout=stop_timeout_s)
    await runner.setup()
    loop = asyncio.get_running_loop()

    def connection() -> GuardedHandler:  # aiohttp's handler with the guard's limits
        return GuardedHandler(runner.server, loop=loop, guard=gateway.guard, access_log=None,
                              keepalive_timeout=config.idle_timeout_s)  # fmt: skip

    listener = await loop.create_server(connection, config.host, config.port, ssl=server_ssl(config))
    stopping = asyncio.Event()
    loop.add_signal_handler(signal.SIGHUP, gateway.reload)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    scheme = "https" if config.tls_certfile else "http"
    log.info("gateway listening", extra={"url": f"{scheme}://{config.host}:{config.port}/events",
                                         "credentials": len(gateway.grants)})  # fmt: skip
    try:
        while not stopping.is_set():
            try:
                await asyncio.wait_for(stopping.wait(), timeout=5)
            except TimeoutError:
                await gateway.check_kafka()
    finally:
        listener.close()
        await asyncio.wait_for(runner.cleanup(), timeout=stop_timeout_s)
        await asyncio.wait_for(gateway.stop(), timeout=stop_timeout_s)
