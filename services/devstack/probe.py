"""Readiness probes and server versions, used by the stack and by the test harness."""

from __future__ import annotations

import asyncio

from aiokafka.admin import AIOKafkaAdminClient

__all__ = ["kafka_answers", "kafka_cluster_info"]


async def _cluster(bootstrap: str) -> dict[str, object]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    try:
        await asyncio.wait_for(admin.start(), timeout=4)
        desc = await admin.describe_cluster()
        return dict(desc)
    finally:
        await admin.close()


def kafka_answers(bootstrap: str) -> bool:
    """True when the broker answers a metadata request."""
    try:
        asyncio.run(_cluster(bootstrap))
    except Exception:  # any failure means "not yet"
        return False
    return True


def kafka_cluster_info(bootstrap: str) -> dict[str, object]:
    """The broker's cluster description (id, controller, brokers)."""
    return asyncio.run(_cluster(bootstrap))
