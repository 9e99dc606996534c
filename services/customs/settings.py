"""Settings of the customs service (``TRADEPULSE_CUSTOMS_`` prefix)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class CustomsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRADEPULSE_CUSTOMS_", extra="ignore", frozen=True)

    out_of_orderness_s: Annotated[float, Field(ge=0)] = 600.0
    grace_s: Annotated[float, Field(ge=0)] = 3600.0
    indicator_interval_s: Annotated[float, Field(gt=0, le=3600)] = 10.0
    partials_interval_s: Annotated[float, Field(gt=0, le=60)] = 1.0
    idle_after_s: Annotated[float, Field(gt=0)] = 60.0
    window_retention_s: Annotated[float, Field(gt=0)] = 35 * 86400.0
    case_expiry_s: Annotated[float, Field(gt=0)] = 90 * 86400.0
    housekeeping_interval_s: Annotated[float, Field(gt=0)] = 60.0
