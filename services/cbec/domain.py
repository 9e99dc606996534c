"""The CBEC service, declared: the three-document match, list release time, exceptions and returns
of cross-border e-commerce orders. The fold is in lifecycle.py."""

from __future__ import annotations

from services.cbec.events import CATALOG
from services.cbec.lifecycle import INDICATORS, Order
from services.cbec.metrics import CbecMetrics
from services.cbec.settings import CbecSettings
from services.engine.domain import Domain, by_subject

DOMAIN = Domain(
    name="cbec",
    catalog=CATALOG,
    kinds={"order": Order},
    route=by_subject("order"),
    indicators=INDICATORS,
    settings=CbecSettings,
    port=6064,
    observer=CbecMetrics,
    contributor="ebc_code",
)
