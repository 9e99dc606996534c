"""Readiness probes and server versions, used by the stack and by the test harness."""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import Mapping
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient

__all__ = ["kafka_answers", "kafka_cluster_info", "web_get", "web_ready"]


Client = str | Mapping[str, Any]  # a bootstrap address, or aiokafka options (a secured node)


async def _cluster(client: Client) -> dict[str, object]:
    options = {"bootstrap_servers": client} if isinstance(client, str) else dict(client)
    admin = AIOKafkaAdminClient(**options, request_timeout_ms=3000)
    try:
        await asyncio.wait_for(admin.start(), timeout=4)
        desc = await admin.describe_cluster()
        return dict(desc)
    finally:
        await admin.close()


def kafka_answers(client: Client) -> bool:
    """True when the broker answers a metadata request."""
    try:
        asyncio.run(_cluster(client))
    except Exception:  # any failure means "not yet"
        return False
    return True


def kafka_cluster_info(client: Client) -> dict[str, object]:
    """The broker's cluster description (id, controller, brokers)."""
    return asyncio.run(_cluster(client))


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
