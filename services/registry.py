"""Every service TradePulse runs, in one place. The CLI, the schema export, the history tool and the
deployment tests read this list; nothing in contract/, engine/ or runtime/ does."""

from __future__ import annotations

from services.cbec.domain import DOMAIN as CBEC
from services.cips.domain import DOMAIN as CIPS
from services.contract.catalog import Catalog, EventSpec
from services.customs.domain import DOMAIN as CUSTOMS
from services.cycle.domain import DOMAIN as CYCLE
from services.engine.domain import Domain
from services.taxrefund.domain import DOMAIN as TAXREFUND

__all__ = ["DOMAINS", "EVENT_TYPES", "SOURCES", "catalogs", "derived"]

DOMAINS: dict[str, Domain] = {d.name: d for d in (CUSTOMS, TAXREFUND, CIPS, CBEC, CYCLE)}
SOURCES: dict[str, Domain] = {name: d for name, d in DOMAINS.items() if not d.derived}
"""The services whose input is producers' events (the others read TradePulse's case topics)."""
EVENT_TYPES: dict[str, EventSpec] = {t: s for d in SOURCES.values() for t, s in d.catalog.events.items()}


def derived() -> dict[str, tuple[str, ...]]:
    """Service -> the case topics it reads, for the services that read TradePulse's own outputs."""
    return {name: d.topics for name, d in DOMAINS.items() if d.derived}


def catalogs() -> dict[str, list[Catalog]]:
    """Service name -> the catalogs of the producers' topics it consumes (for the schema export)."""
    return {name: [d.catalog] for name, d in SOURCES.items()}
