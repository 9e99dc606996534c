"""Prometheus metrics of the runtime, shared by every service (docs/contract.md section 5).

Base units, ``_total`` counters, label values from closed sets only.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, disable_created_metrics

disable_created_metrics()  # type: ignore[no-untyped-call]  # the *_created series double the output and no rule uses them

__all__ = [
    "CONSUMER_LAG",
    "DEDUP_KEYS",
    "EVENTS_ACCEPTED",
    "EVENTS_CONSUMED",
    "EVENTS_DUPLICATE",
    "EVENTS_INVALID",
    "EVENTS_PROCESSED",
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
