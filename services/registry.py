"""Every service TradePulse runs, in one place. The CLI, the schema export, the history tool and the
deployment tests read this list; nothing in contract/, engine/ or runtime/ does."""

from __future__ import annotations

from services.cbec.domain import DOMAIN as CBEC
from services.cips.domain import DOMAIN as CIPS
from services.contract.catalog import Catalog, EventSpec
from services.customs.domain import DOMAIN as CUSTOMS
from services.engine.domain import Domain
from services.taxrefund.domain import DOMAIN as TAXREFUND

__all__ = ["DOMAINS", "EVENT_TYPES", "catalogs"]

DOMAINS: dict[str, Domain] = {d.name: d for d in (CUSTOMS, TAXREFUND, CIPS, CBEC)}
EVENT_TYPES: dict[str, EventSpec] = {t: s for d in DOMAINS.values() for t, s in d.catalog.events.items()}


def catalogs() -> dict[str, list[Catalog]]:
    """Service name -> the catalogs of the topics it consumes (for the schema export)."""
    return {name: [d.catalog] for name, d in DOMAINS.items()}
