"""Settings of the export cycle service (``TRADEPULSE_CYCLE_`` prefix): the engine's, with a long
horizon. A cycle spans agencies and months (payment terms, refund filings), so a window stays
correctable for half a year and an entry whose cycle never completes is kept 400 days."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.engine.domain import EngineSettings


class CycleSettings(EngineSettings):
    model_config = SettingsConfigDict(env_prefix="TRADEPULSE_CYCLE_", extra="ignore", frozen=True)

    grace_s: Annotated[float, Field(ge=0)] = 86400.0
    out_of_orderness_s: Annotated[float, Field(ge=0)] = 3600.0
    window_retention_s: Annotated[float, Field(gt=0)] = 180 * 86400.0
    case_expiry_s: Annotated[float, Field(gt=0)] = 400 * 86400.0
