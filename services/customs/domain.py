"""The customs service, declared: declarations (with their arrivals, joined by bill of lading)
measured as the WCO Time Release Study does. The fold is in lifecycle.py."""

from __future__ import annotations

from services.contract.envelope import Event
from services.customs.events import CATALOG, TransportArrived
from services.customs.lifecycle import INDICATORS, Arrived, Bill, Declaration, Named
from services.customs.metrics import CustomsMetrics
from services.customs.settings import CustomsSettings
from services.engine.domain import Domain
from services.engine.watch import WatchRule

HOUR = 3600.0
# Release time from the arrival (imports) or the lodging, as the release-time indicator counts it.
# GACC's overall clearance times were about 39 h (import) and 2 h (export) in 2017-2021
# (docs/domains.md): an import waiting 40 h, an export 3 h, is above what the office reports.
WATCH = (
    WatchRule("release_import", ("arrived", "lodged"), ("released", "rejected"), 24 * HOUR, 40 * HOUR,
              when=lambda d: d.ie_flag == "I", description="import declarations not yet released"),
    WatchRule("release_export", ("lodged",), ("released", "rejected"), 2 * HOUR, 3 * HOUR,
              when=lambda d: d.ie_flag == "E", description="export declarations not yet released"),
)  # fmt: skip


def route(event: Event) -> tuple[str, str]:
    """Arrivals belong to their bill of lading, everything else to its declaration."""
    return ("bill" if isinstance(event.data, TransportArrived) else "declaration", event.subject)


DOMAIN = Domain(
    name="customs",
    catalog=CATALOG,
    kinds={"declaration": Declaration, "bill": Bill},
    route=route,
    indicators=INDICATORS,
    settings=CustomsSettings,
    port=6061,
    messages=(Named, Arrived),
    observer=CustomsMetrics,
    contributor="consignee_uscc",
    watch=WATCH,
)
