"""Topic naming rules of the contract (docs/contract.md sections 2-4, 7, 9) and Kafka's partitioner.

Input topics are named by their domains' declarations; every other name derives from a service
name or an input topic here, so it is spelled once."""

from __future__ import annotations

from functools import lru_cache

from aiokafka.partitioner import murmur2

__all__ = ["case_topic", "dlq_topic", "indicator_topic", "partition_for", "watch_topic"]


def dlq_topic(input_topic: str) -> str:
    """The dead-letter topic of an input topic: ``<input topic>.dlq``."""
    return f"{input_topic}.dlq"


def indicator_topic(service: str) -> str:
    """The log-compacted indicator topic a service publishes: ``indicators.<service>.v1``."""
    return f"indicators.{service}.v1"


def case_topic(service: str) -> str:
    """The log-compacted topic of a service's cases: ``cases.<service>.v1``."""
    return f"cases.{service}.v1"


def watch_topic(service: str) -> str:
    """The log-compacted topic of a service's SLA watch flags: ``watch.<service>.v1``."""
    return f"watch.{service}.v1"


@lru_cache(maxsize=262_144)
def partition_for(key: str | bytes, partitions: int) -> int:
    """Where Kafka's default partitioner puts a record keyed by ``key`` (murmur2, as the JVM and
    aiokafka do): producers that key by ``subject`` put a case's events there."""
    raw = key.encode() if isinstance(key, str) else key
    return int(murmur2(raw) & 0x7FFFFFFF) % partitions
