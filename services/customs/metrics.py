"""The customs metrics of contract section 5. Label values come from closed sets only."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from services.common.metrics import label_or_other

RELEASE_BUCKETS_S = (60, 300, 900, 1800, 3600, 7200, 14400, 28800, 43200, 86400, 172800, 345600, 604800)
STAGE_BUCKETS_S = (1, 10, 60, 300, 900, 3600, 7200, 14400, 43200, 86400, 172800, 345600, 604800)

# Guangzhou-area customs offices (the ports of docs/simulation.md and their districts); others: "other".
CUSTOMS_CODES = frozenset(
    {"5141", "5165", "5130", "5133", "5208", "5200", "5201", "5202", "5203", "5204", "5205", "5206", "5207",
     "5209", "5349", "0200", "2992"}
)  # fmt: skip
TRANSPORT_MODES = frozenset({"0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "unknown"})
CREDIT_CLASSES = frozenset({"aeo", "general", "discredited", "unknown"})
STAGES = frozenset({"lodged_to_accepted", "accepted_to_released", "inspection", "released_to_exited",
                    "arrival_to_lodged"})  # fmt: skip

RELEASE_SECONDS = Histogram(
    "tradepulse_customs_release_seconds",
    "Release time of declarations (arrival or lodging to release), when first known.",
    ["ie_flag", "customs_code", "transport_mode"],
    buckets=RELEASE_BUCKETS_S,
)
STAGE_SECONDS = Histogram(
    "tradepulse_customs_stage_seconds",
    "Duration of each clearance stage (WCO TRS), when first known.",
    ["stage", "ie_flag"],
    buckets=STAGE_BUCKETS_S,
)
RISK_DECISIONS = Counter(
    "tradepulse_customs_risk_decisions_total",
    "First risk decision of each declaration, by channel.",
    ["ie_flag", "credit_class", "channel"],
)
OPEN_DECLARATIONS = Gauge(
    "tradepulse_customs_open_declarations",
    "Declarations lodged and neither released nor rejected, on this worker's partitions.",
    ["ie_flag"],
)
CASES_EXPIRED = Counter(
    "tradepulse_customs_cases_expired_total",
    "Declarations dropped unfinished after TRADEPULSE_CUSTOMS_CASE_EXPIRY_S without events.",
    ["ie_flag"],
)


@lru_cache(maxsize=4096)
def _release(ie_flag: str, customs_code: str, transport_mode: str) -> Any:
    return RELEASE_SECONDS.labels(
        ie_flag=ie_flag,
        customs_code=label_or_other(customs_code, CUSTOMS_CODES),
        transport_mode=label_or_other(transport_mode, TRANSPORT_MODES),
    )


@lru_cache(maxsize=256)
def _stage(stage: str, ie_flag: str) -> Any:
    return STAGE_SECONDS.labels(stage=label_or_other(stage, STAGES), ie_flag=ie_flag)


def observe_release(ie_flag: str, customs_code: str, transport_mode: str, seconds: float) -> None:
    _release(ie_flag, customs_code, transport_mode).observe(seconds)


def observe_stage(stage: str, ie_flag: str, seconds: float) -> None:
    _stage(stage, ie_flag).observe(seconds)


def count_risk(ie_flag: str, credit_class: str, channel: str) -> None:
    RISK_DECISIONS.labels(
        ie_flag=ie_flag, credit_class=label_or_other(credit_class, CREDIT_CLASSES), channel=channel
    ).inc()


RELEASE_P90_THRESHOLD = Gauge(
    "tradepulse_customs_release_p90_threshold_seconds",
    "The release-time p90 the alert compares against (TRADEPULSE_CUSTOMS_RELEASE_P90_THRESHOLD_S).",
)
