"""The CBEC metrics of contract section 5, plus list exceptions and returns by supervision mode."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

MODES = ("9610", "1210", "9710", "9810", "unknown")

RELEASE_SECONDS = Histogram(
    "tradepulse_cbec_release_seconds", "List accepted (120) to released (800), when first known.",
    ["supervision_mode", "ie_flag"], buckets=(1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 14400, 86400),
)  # fmt: skip
DOC_MATCH = Counter(
    "tradepulse_cbec_doc_match_total",
    "Three-document match at the list's first customs decision, by result (match or the reason).",
    ["supervision_mode", "result"],
)
LIST_EXCEPTIONS = Counter(
    "tradepulse_cbec_list_exceptions_total",
    "Lists rejected (100), inspected (500), detained (501-599) or sent back (700).",
    ["supervision_mode", "exception"],
)
RETURNS = Counter(
    "tradepulse_cbec_returns_total", "Return requests, by supervision mode.", ["supervision_mode"]
)
OPEN_ORDERS = Gauge(
    "tradepulse_cbec_open_orders", "Orders with a list not yet in a final state.", ["supervision_mode"]
)
CASES_EXPIRED = Counter(
    "tradepulse_cbec_cases_expired_total", "Orders dropped unfinished after the expiry.", ["supervision_mode"]
)
