"""Readiness probes and server versions, used by the stack and by the test harness."""

from __future__ import annotations

import asyncio
import urllib.request

from aiokafka.admin import AIOKafkaAdminClient

__all__ = ["kafka_answers", "kafka_cluster_info", "web_get", "web_ready"]


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


def web_get(port: int, path: str) -> tuple[int, str]:
    """(status, body) of a GET on a local worker's web endpoint; (0, "") if nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode()
    except OSError:
        return 0, ""


def web_ready(port: int) -> bool:
    """True when the worker on ``port`` answers /ready with 200 (partitions assigned)."""
    return web_get(port, "/ready")[0] == 200
