"""Every topic name of the contract, in one place (contract.md sections 2-4)."""

from __future__ import annotations

from services.common.events import DOMAINS

__all__ = ["INDICATOR_TOPICS", "INPUT_TOPICS", "dlq_topic", "indicator_topic"]

INPUT_TOPICS: dict[str, str] = {name: d.topic for name, d in DOMAINS.items()}
INDICATOR_TOPICS: dict[str, str] = {name: f"indicators.{name}.v1" for name in DOMAINS}


def dlq_topic(input_topic: str) -> str:
    """The dead-letter topic of an input topic: ``<input topic>.dlq``."""
    return f"{input_topic}.dlq"


def indicator_topic(service: str) -> str:
    """The log-compacted indicator topic a service publishes."""
    return INDICATOR_TOPICS[service]
