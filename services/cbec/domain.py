"""The CBEC service, declared: the three-document match, list release time, exceptions and returns
of cross-border e-commerce orders. The fold is in lifecycle.py."""

from __future__ import annotations

from services.cbec.events import CATALOG
from services.cbec.lifecycle import INDICATORS, Order
from services.cbec.metrics import CbecMetrics
from services.engine.domain import Domain, by_subject

DOMAIN = Domain(
    name="cbec",
    catalog=CATALOG,
    kinds={"order": Order},
    route=by_subject("order"),
    indicators=INDICATORS,
    # Orders in a final state are kept 31 days (event time), then dropped. Returns come up to 30 days
    # after the release (GACC rules on CBEC returns; docs/simulation.md, CBEC) and must find their
    # order: a return after the drop started a new case, whose record (revision 1, the return alone)
    # replaced the released order's in the compacted case topic and counted under no supervision
    # mode. 31 days: the window plus a day of lateness (docs/performance.md sizes a kept order).
    defaults={"window_retention_s": 31 * 86400.0, "case_expiry_s": 30 * 86400.0},
    port=6064,
    observer=CbecMetrics,
    contributor="ebc_code",
)
