"""Start-up checks against the broker: reachable, topics present with the right partitions.

Errors name the fix; nothing here retries forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError

__all__ = [
    "BrokerUnreachable",
    "MissingTopic",
    "StartupError",
    "TopicSpec",
    "ensure_topics",
    "partition_count",
    "require_broker",
    "require_topic",
]

log = logging.getLogger(__name__)


class StartupError(RuntimeError):
    """A problem the operator must fix before the service can run; the message says how."""


class BrokerUnreachable(StartupError):
    pass


class MissingTopic(StartupError):
    pass


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    compacted: bool = False
    retention_ms: int | None = None
    must_match_partitions: bool = True


@contextlib.contextmanager
def _client_quiet() -> Iterator[None]:
    """The Kafka client logs each failed connection itself; a failure here becomes one
    StartupError naming the fix instead."""
    client_log = logging.getLogger("aiokafka")
    level = client_log.level
    client_log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        client_log.setLevel(level)


async def _admin(bootstrap: list[str], timeout_s: float) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000))
    try:
        with _client_quiet():
            await asyncio.wait_for(admin.start(), timeout=timeout_s)
    except (TimeoutError, KafkaConnectionError, KafkaError, OSError) as exc:
        await admin.close()
        msg = (
            f"Kafka broker at {','.join(bootstrap)} is unreachable ({_why(exc, timeout_s)}). "
            "Start the local stack with `tradepulse stack up`, or set KAFKA_BOOTSTRAP_SERVERS "
            "to a reachable broker."
        )
        raise BrokerUnreachable(msg) from None
    return admin


def _why(exc: BaseException, timeout_s: float) -> str:
    """A short, one-line reason for a failed connection."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout_s:g} s"
    text = " ".join(re.sub(r", <AddressFamily[^>]*>", "", str(exc)).split())
    name = type(exc).__name__
    return text if text.startswith(name) else f"{name}: {text}"


async def require_broker(bootstrap: list[str], *, timeout_s: float) -> None:
    """Return once the broker answers; :class:`BrokerUnreachable` (naming the fix) otherwise."""
    admin = await _admin(bootstrap, timeout_s)
    await admin.close()


async def partition_count(bootstrap: list[str], topic: str, *, timeout_s: float) -> int | None:
    """How many partitions ``topic`` has, None if it does not exist (BrokerUnreachable names the fix)."""
    admin = await _admin(bootstrap, timeout_s)
    try:
        if topic not in set(await admin.list_topics()):
            return None
        described = await admin.describe_topics([topic])
        return len(described[0]["partitions"])
    finally:
        await admin.close()


async def require_topic(bootstrap: list[str], topic: str, *, timeout_s: float, fix: str) -> int:
    """The partition count of ``topic``; :class:`MissingTopic` (naming ``fix``) if it does not exist."""
    count = await partition_count(bootstrap, topic, timeout_s=timeout_s)
    if not count:
        msg = f"topic {topic} does not exist: {fix}"
        raise MissingTopic(msg)
    return count


async def ensure_topics(
    bootstrap: list[str], topics: Iterable[TopicSpec], *, replication: int, timeout_s: float
) -> dict[str, int]:
    """Create missing topics; refuse to run on an input topic with another partition count.
    Returns the partition count of every topic."""
    specs = list(topics)
    admin = await _admin(bootstrap, timeout_s)
    try:
        existing = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        if missing:
            new = []
            for s in missing:
                config: dict[str, str] = {}
                if s.compacted:
                    config["cleanup.policy"] = "compact"
                if s.retention_ms is not None:
                    config["retention.ms"] = str(s.retention_ms)
                new.append(NewTopic(s.name, s.partitions, replication, topic_configs=config))
            with contextlib.suppress(TopicAlreadyExistsError):  # another worker won the race
                await admin.create_topics(new)
            log.info("created topics", extra={"topics": [s.name for s in missing]})
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
