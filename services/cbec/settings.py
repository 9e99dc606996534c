"""Settings of the CBEC service (``TRADEPULSE_CBEC_`` prefix): the engine's, with the shorter life
of e-commerce orders."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.engine.domain import EngineSettings


class CbecSettings(EngineSettings):
    model_config = SettingsConfigDict(env_prefix="TRADEPULSE_CBEC_", extra="ignore", frozen=True)

    # Orders in a final state are kept this long (event time), then dropped. Returns come up to 30
    # days after the release (GACC rules on CBEC returns; docs/simulation.md, CBEC) and must find
    # their order: a return
    # after the drop started a new case, whose record (revision 1, the return alone) replaced the
    # released order's in the compacted case topic, and it counted under no supervision mode.
    # 31 days: the window plus a day of lateness (a kept order takes about 2.4 KB: docs/performance.md).
    window_retention_s: Annotated[float, Field(gt=0)] = 31 * 86400.0
    case_expiry_s: Annotated[float, Field(gt=0)] = 30 * 86400.0
