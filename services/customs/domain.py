"""The customs service, declared: declarations (with their arrivals, joined by bill of lading)
measured as the WCO Time Release Study does. The fold is in lifecycle.py."""

from __future__ import annotations

from services.contract.envelope import Event
from services.customs.events import CATALOG, TransportArrived
from services.customs.lifecycle import INDICATORS, Arrived, Bill, Declaration, Named
from services.customs.metrics import CustomsMetrics
from services.customs.settings import CustomsSettings
from services.engine.domain import Domain


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
)
