"""The CIPS metrics of contract section 5, plus payments by final status, the open backlog and the
settlement leg."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

MSG_TYPES = ("customer", "fi", "unknown")
SPEED_BUCKETS_S = (10, 60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 172800, 259200)

CREDIT_SECONDS = Histogram(
    "tradepulse_cips_credit_seconds", "Initiation to beneficiary credit, when first known.", ["msg_type"],
    buckets=SPEED_BUCKETS_S,
)  # fmt: skip
SETTLEMENT_SECONDS = Histogram(
    "tradepulse_cips_settlement_seconds", "The CIPS leg: submitted to settled.", ["msg_type"],
    buckets=(0.5, 1, 2, 5, 10, 30, 60, 300, 3600),
)  # fmt: skip
SETTLED_CNY = Counter(
    "tradepulse_cips_settled_cny_total", "Value of payments settled, in CNY.", ["msg_type", "purpose"]
)
PAYMENTS = Counter(
    "tradepulse_cips_payments_total", "Payments reaching a final status.", ["msg_type", "status"]
)
OPEN_PAYMENTS = Gauge("tradepulse_cips_open_payments", "Payments initiated and not yet final.", ["msg_type"])
OLDEST_OPEN = Gauge(
    "tradepulse_cips_oldest_open_payment_seconds",
    "Age of the oldest open payment, to the newest event time seen.",
)
CASES_EXPIRED = Counter(
    "tradepulse_cips_cases_expired_total", "Payments dropped unfinished after the expiry.", ["msg_type"]
)
