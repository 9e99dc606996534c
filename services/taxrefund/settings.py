"""Settings of the export refund service (``TRADEPULSE_TAXREFUND_`` prefix). The SLA table lives
here, not in code: limits per management category and the average-time targets; and the engine's
defaults for refunds, which take days to weeks and are flagged for months."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.engine.domain import EngineSettings
from services.taxrefund.lifecycle import DEFAULT_LIMITS_WD


class TaxrefundSettings(EngineSettings):
    model_config = SettingsConfigDict(env_prefix="TRADEPULSE_TAXREFUND_", extra="ignore", frozen=True)

    limits_wd: dict[int, Annotated[int, Field(ge=0)]] = Field(default_factory=lambda: dict(DEFAULT_LIMITS_WD))
    target_avg_wd_categories_1_2: Annotated[float, Field(gt=0)] = 3.0
    target_avg_wd_overall: Annotated[float, Field(gt=0)] = 5.0
    grace_s: Annotated[float, Field(ge=0)] = 86400.0
    out_of_orderness_s: Annotated[float, Field(ge=0)] = 3600.0
    case_expiry_s: Annotated[float, Field(gt=0)] = 180 * 86400.0
    window_retention_s: Annotated[float, Field(gt=0)] = 180 * 86400.0
