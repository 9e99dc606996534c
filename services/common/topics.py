"""Every topic name of the contract, in one place (docs/contract.md sections 2-4)."""

from __future__ import annotations

from functools import lru_cache

from aiokafka.partitioner import murmur2

from services.common.events import DOMAINS

__all__ = ["INDICATOR_TOPICS", "INPUT_TOPICS", "dlq_topic", "indicator_topic", "partition_for"]

INPUT_TOPICS: dict[str, str] = {name: d.topic for name, d in DOMAINS.items()}
INDICATOR_TOPICS: dict[str, str] = {name: f"indicators.{name}.v1" for name in DOMAINS}


def dlq_topic(input_topic: str) -> str:
    """The dead-letter topic of an input topic: ``<input topic>.dlq``."""
    return f"{input_topic}.dlq"


def indicator_topic(service: str) -> str:
    """The log-compacted indicator topic a service publishes."""
    return INDICATOR_TOPICS[service]


@lru_cache(maxsize=262_144)
def partition_for(key: str, partitions: int) -> int:
    """Where Kafka's default partitioner puts a record keyed by ``key`` (murmur2, as the JVM and
    aiokafka do): producers that key by ``subject`` put a case's events there."""
    return int(murmur2(key.encode()) & 0x7FFFFFFF) % partitions
