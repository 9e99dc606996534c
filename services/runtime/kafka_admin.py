"""Start-up checks against the broker: reachable with these credentials, topics present with the
right partitions, and the permissions the process needs granted (docs/security.md).

Errors name the fix in one line; nothing here retries forever. ``client`` is always the aiokafka
keyword arguments of :meth:`Settings.kafka_client` (bootstrap servers and security).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaConnectionError, KafkaError

from services.runtime.permissions import Operation, group_operations, missing, topic_operations

__all__ = [
    "Access",
    "BrokerUnreachable",
    "ClientOptions",
    "MissingTopic",
    "StartupError",
    "TopicSpec",
    "cluster_id",
    "ensure_topics",
    "partition_count",
    "require_access",
    "require_broker",
    "require_topic",
    "topic_config",
]

log = logging.getLogger(__name__)

ClientOptions = Mapping[str, Any]


class StartupError(RuntimeError):
    """A problem the operator must fix before the service can run; the message says how."""


class BrokerUnreachable(StartupError):
    pass


class MissingTopic(StartupError):
    pass


class PermissionMissing(StartupError):
    pass


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    compacted: bool = False
    retention_ms: int | None = None
    must_match_partitions: bool = True
    max_message_bytes: int | None = None

    def config(self) -> dict[str, str]:
        """The topic-level configuration it is created with (also what the Helm chart's KafkaTopic says)."""
        config: dict[str, str] = {}
        if self.compacted:
            config["cleanup.policy"] = "compact"
        if self.retention_ms is not None:
            config["retention.ms"] = str(self.retention_ms)
        if self.max_message_bytes is not None:
            config["max.message.bytes"] = str(self.max_message_bytes)
        return config


@dataclass(frozen=True, slots=True)
class Access:
    """What one process does on the cluster: the operations it needs per topic, and the consumer
    group it joins. docs/security.md turns these into ACLs; the preflight checks them."""

    topics: Mapping[str, frozenset[Operation]]
    group: str | None = None
    create: bool = False  # creates missing topics (TRADEPULSE_CREATE_TOPICS)
    principal: str = field(default="this client", compare=False)


READ = frozenset({Operation.READ})
WRITE = frozenset({Operation.WRITE})
READ_WRITE = frozenset({Operation.READ, Operation.WRITE})


class _Remember(logging.Handler):
    """Keeps the last reason the Kafka client logged for a failed connection: aiokafka raises only
    "Unable to bootstrap" and logs the cause (a refused password, a certificate, a closed socket)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.reasons: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if "Unable connect" in text or "SSL" in text or "Sasl" in text:
            self.reasons.append(text)


@contextlib.contextmanager
def _client_quiet() -> Iterator[_Remember]:
    """The Kafka client logs each failed connection itself; a failure here becomes one
    StartupError naming the fix instead."""
    client_log = logging.getLogger("aiokafka")
    level, propagate = client_log.level, client_log.propagate
    remember = _Remember()
    client_log.setLevel(logging.DEBUG)
    client_log.propagate = False
    client_log.addHandler(remember)
    try:
        yield remember
    finally:
        client_log.removeHandler(remember)
        client_log.setLevel(level)
        client_log.propagate = propagate


def _servers(client: ClientOptions) -> str:
    servers = client.get("bootstrap_servers", "")
    return servers if isinstance(servers, str) else ",".join(servers)


async def _admin(client: ClientOptions, timeout_s: float) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(**client, request_timeout_ms=int(timeout_s * 1000))
    with _client_quiet() as remember:
        try:
            await asyncio.wait_for(admin.start(), timeout=timeout_s)
        except (TimeoutError, KafkaConnectionError, KafkaError, OSError) as exc:
            await admin.close()
            raise BrokerUnreachable(_diagnose(client, exc, remember.reasons, timeout_s)) from None
    return admin


def _diagnose(client: ClientOptions, exc: BaseException, reasons: list[str], timeout_s: float) -> str:
    """One line: what went wrong connecting, and which setting to look at."""
    at = _servers(client)
    protocol = str(client.get("security_protocol", "PLAINTEXT"))
    said = " ".join(reasons)
    if "SaslAuthenticationFailed" in said or "Authentication failed" in said:
        user = client.get("sasl_plain_username")
        return (
            f"Kafka at {at} refused the credentials of {user!r} ({client.get('sasl_mechanism')}): "
            "check KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD and KAFKA_SASL_MECHANISM"
        )
    if "CERTIFICATE_VERIFY_FAILED" in said:
        why = re.search(r"certificate verify failed: ([^(]+)", said)
        detail = why.group(1).strip() if why else "not trusted"
        if "mismatch" in detail:
            return (
                f"the certificate of Kafka at {at} does not name that host ({detail}): connect by a "
                "name the certificate holds, or set KAFKA_SSL_CHECK_HOSTNAME=false"
            )
        return (
            f"the certificate of Kafka at {at} is not trusted ({detail}): set KAFKA_SSL_CAFILE to the "
            "CA that signed it"
        )
    if protocol in ("SSL", "SASL_SSL") and ("WRONG_VERSION_NUMBER" in said or "record layer" in said):
        return (
            f"Kafka at {at} does not speak TLS on that port but KAFKA_SECURITY_PROTOCOL={protocol}: "
            "use the broker's TLS listener, or the protocol of this one"
        )
    if protocol in ("PLAINTEXT", "SASL_PLAINTEXT") and "closed" in said:
        return (
            f"Kafka at {at} closed the connection at once (KAFKA_SECURITY_PROTOCOL={protocol}): the "
            "listener probably expects TLS or SASL; set KAFKA_SECURITY_PROTOCOL to what it expects"
        )
    return (
        f"Kafka broker at {at} is unreachable ({_why(exc, timeout_s)}). Start the local stack with "
        "`tradepulse stack up`, or set KAFKA_BOOTSTRAP_SERVERS to a reachable broker."
    )


def _why(exc: BaseException, timeout_s: float) -> str:
    """A short, one-line reason for a failed connection."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout_s:g} s"
    text = " ".join(re.sub(r", <AddressFamily[^>]*>", "", str(exc)).split())
    name = type(exc).__name__
    return text if text.startswith(name) else f"{name}: {text}"


async def require_broker(client: ClientOptions, *, timeout_s: float) -> None:
    """Return once the broker answers; :class:`BrokerUnreachable` (naming the fix) otherwise."""
    admin = await _admin(client, timeout_s)
    await admin.close()


async def partition_count(client: ClientOptions, topic: str, *, timeout_s: float) -> int | None:
    """How many partitions ``topic`` has, None if it does not exist (BrokerUnreachable names the fix)."""
    admin = await _admin(client, timeout_s)
    try:
        if topic not in set(await admin.list_topics()):
            return None
        described = await admin.describe_topics([topic])
        return len(described[0]["partitions"])
    finally:
        await admin.close()


async def cluster_id(client: ClientOptions, *, timeout_s: float) -> str:
    """The id of the Kafka cluster (local state copies name the cluster they copy)."""
    admin = await _admin(client, timeout_s)
    try:
        return str((await admin.describe_cluster()).get("cluster_id") or "")
    finally:
        await admin.close()


async def topic_config(client: ClientOptions, topic: str, *, timeout_s: float) -> dict[str, str]:
    """The configuration of ``topic`` (empty when this client may not describe it)."""
    admin = await _admin(client, timeout_s)
    try:
        responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    except KafkaError:
        return {}
    finally:
        await admin.close()
    out: dict[str, str] = {}
    for response in responses:
        for resource in response.resources:
            error_code, entries = resource[0], resource[4]
            if error_code == 0:
                out.update({entry[0]: entry[1] for entry in entries if entry[1] is not None})
    return out


async def require_topic(client: ClientOptions, topic: str, *, timeout_s: float, fix: str) -> int:
    """The partition count of ``topic``; :class:`MissingTopic` (naming ``fix``) if it does not exist
    or this client may not see it."""
    count = await partition_count(client, topic, timeout_s=timeout_s)
    if not count:
        msg = f"topic {topic} does not exist (or this client may not describe it): {fix}"
        raise MissingTopic(msg)
    return count


async def require_access(client: ClientOptions, access: Access, *, timeout_s: float) -> None:
    """Check that every permission ``access`` needs is granted (topics that exist), without
    trying it: :class:`PermissionMissing` names the first few lacking, and where they are listed."""
    admin = await _admin(client, timeout_s)
    try:
        await _check_access(admin, access)
    finally:
        await admin.close()


async def _check_access(admin: AIOKafkaAdminClient, access: Access) -> None:
    has = await topic_operations(admin, sorted(access.topics))
    lacking = [f"{op.label()} on topic {name}" for name, op in missing(access.topics, has)]
    if access.group is not None and Operation.READ not in await group_operations(admin, access.group):
        lacking.append(f"Read on group {access.group}")
    if lacking:
        more = f" (and {len(lacking) - 3} more)" if len(lacking) > 3 else ""
        msg = (
            f"{access.principal} lacks {', '.join(lacking[:3])}{more}: grant the ACLs that "
            "docs/security.md lists for this process"
        )
        raise PermissionMissing(msg)


async def ensure_topics(
    client: ClientOptions,
    topics: Iterable[TopicSpec],
    *,
    replication: int,
    timeout_s: float,
    create: bool = True,
    access: Access | None = None,
) -> dict[str, int]:
    """Create missing topics (unless ``create`` is off: then a missing topic stops the start, by
    name); refuse to run on an input topic with another partition count; check ``access``.
    Returns the partition count of every topic."""
    specs = list(topics)
    admin = await _admin(client, timeout_s)
    try:
        known = await topic_operations(admin, [s.name for s in specs])
        absent = [s for s in specs if known.get(s.name) is None]
        if absent and not create:
            names = ", ".join(s.name for s in absent)
            which, verb, them = ("topic", "does", "it") if len(absent) == 1 else ("topics", "do", "them")
            msg = (
                f"{which} {names} {verb} not exist and TRADEPULSE_CREATE_TOPICS=false: an administrator "
                f"creates {them} (`tradepulse topics <service>` prints the commands; docs/security.md)"
            )
            raise MissingTopic(msg)
        if absent:
            await _create(admin, absent, replication, access)
        if access is not None:
            await _check_access(admin, access)
        described = await admin.describe_topics([s.name for s in specs])
        counts = {d["topic"]: len(d["partitions"]) for d in described if d["partitions"]}
        for s in specs:
            have = counts.get(s.name)
            if s.must_match_partitions and have not in (None, s.partitions):
                msg = (
                    f"topic {s.name} has {have} partitions but TRADEPULSE_TOPIC_PARTITIONS is "
                    f"{s.partitions}: set TRADEPULSE_TOPIC_PARTITIONS={have}"
                )
                raise StartupError(msg)
        return counts
    finally:
        await admin.close()


async def _create(
    admin: AIOKafkaAdminClient, specs: list[TopicSpec], replication: int, access: Access | None
) -> None:
    new = []
    for s in specs:
        new.append(NewTopic(s.name, s.partitions, replication, topic_configs=s.config()))
    response: Any = await admin.create_topics(new)
    errors = {
        name: (code, rest[0] if rest else None)
        for name, code, *rest in response.topic_errors
        if code not in (0, 36)  # 36: created meanwhile by another worker
    }
    denied = [name for name, (code, _) in errors.items() if code in (29, 31)]  # topic/cluster authorization
    if denied:
        who = access.principal if access is not None else "this client"
        msg = (
            f"{who} may not create topic {', '.join(denied)}: let an administrator create the topics "
            "(docs/security.md) and set TRADEPULSE_CREATE_TOPICS=false, or grant Create"
        )
        raise PermissionMissing(msg)
    if errors:
        name, (code, text) = next(iter(errors.items()))
        msg = f"could not create topic {name}: {text or f'error {code}'} (TRADEPULSE_TOPIC_REPLICATION?)"
        raise StartupError(msg)
    log.info("created topics", extra={"topics": [s.name for s in specs]})
