"""Prometheus metrics of the runtime, shared by every service (docs/contract.md section 5).

Base units, ``_total`` counters, label values from closed sets only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

disable_created_metrics()  # type: ignore[no-untyped-call]  # the *_created series double the output and no rule uses them

__all__ = [
    "CONSUMER_LAG",
    "DEDUP_KEYS",
    "EVENTS_ACCEPTED",
    "EVENTS_CONSUMED",
    "EVENTS_DUPLICATE",
    "EVENTS_INVALID",
    "EVENTS_PROCESSED",
    "HOUSEKEEPING_SECONDS",
    "RESTORE_PROGRESS",
    "STATE_DISK",
    "STATE_RESTORES",
    "exposition",
]

EVENTS_CONSUMED = Counter("tradepulse_events_consumed_total", "Records read from an input topic.", ["topic"])
EVENTS_INVALID = Counter(
    "tradepulse_events_invalid_total",
    "Records sent to the dead-letter topic, by reason.",
    ["topic", "reason"],
)
EVENTS_DUPLICATE = Counter(
    "tradepulse_events_duplicate_total",
    "Valid events dropped because their (source, id) was already taken.",
    ["topic"],
)
EVENTS_ACCEPTED = Counter(
    "tradepulse_events_accepted_total",
    "Valid, first-seen events handed to the service logic.",
    ["topic"],
)
EVENTS_PROCESSED = Counter(
    "tradepulse_events_processed_total",
    "Records fully handled: their effects written to the state topic, then acknowledged.",
    ["topic"],
)
CONSUMER_LAG = Gauge(
    "tradepulse_consumer_lag_records",
    "Records of an input partition not yet processed by this worker (high watermark - next offset).",
    ["topic", "partition"],
)
DEDUP_KEYS = Gauge(
    "tradepulse_dedup_keys", "(source, id) keys held for deduplication on this worker.", ["topic"]
)
STATE_RESTORES = Counter(
    "tradepulse_state_restores_total",
    "Partitions whose state was restored: from the local copy and the topic's tail (local), or "
    "rebuilt from the state topic (rebuild).",
    ["mode"],
)
HOUSEKEEPING_SECONDS = Histogram(
    "tradepulse_housekeeping_seconds",
    "Duration of one housekeeping pass (expiry, retention, parked cases, gauges): how long it holds "
    "the event loop.",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
STATE_DISK = Gauge(
    "tradepulse_state_disk_bytes", "Bytes of the local copies of the state this worker owns, on disk."
)


class _RestoreProgress:
    """``tradepulse_state_restore_records{partition, phase}``: state records restored so far and to
    restore in all, per partition being restored (gone once it is ready)."""

    def __init__(self) -> None:
        self.gauge = Gauge(
            "tradepulse_state_restore_records",
            "State records of a partition being restored: restored so far (phase=restored) and in all "
            "(phase=total).",
            ["partition", "phase"],
        )

    def set(self, partition: int, done: int, total: int) -> None:
        self.gauge.labels(partition=str(partition), phase="restored").set(done)
        self.gauge.labels(partition=str(partition), phase="total").set(total)

    def forget(self, partition: int) -> None:
        for phase in ("restored", "total"):
            with contextlib.suppress(KeyError):
                self.gauge.remove(str(partition), phase)


RESTORE_PROGRESS = _RestoreProgress()


class _Without(Collector):
    def __init__(self, prefixes: tuple[str, ...]) -> None:
        self._prefixes = prefixes

    def collect(self) -> Iterator[Metric]:
        return (m for m in REGISTRY.collect() if not m.name.startswith(self._prefixes))


def exposition(foreign: Iterable[str] = ()) -> bytes:
    """This process's /metrics: every registered family but the ``tradepulse_<name>_`` ones of the
    ``foreign`` domains. Every domain's metrics are registered in every process (the registry
    imports all domains), and another service's unlabelled gauge would show a wrong 0 on this
    process's target (``tradepulse_cycle_open_entries`` on the customs worker)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Without(tuple(f"tradepulse_{name}_" for name in foreign)))
    return generate_latest(registry)
