"""Settings of the customs service (``TRADEPULSE_CUSTOMS_`` prefix): the engine's, and the release
time threshold the SLA alert compares against."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.engine.domain import EngineSettings


class CustomsSettings(EngineSettings):
    model_config = SettingsConfigDict(env_prefix="TRADEPULSE_CUSTOMS_", extra="ignore", frozen=True)

    release_p90_threshold_s: Annotated[float, Field(gt=0)] = 48 * 3600.0
