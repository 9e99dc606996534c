"""Settings of the CIPS service (``TRADEPULSE_CIPS_`` prefix): the engine's defaults."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from services.engine.domain import EngineSettings


class CipsSettings(EngineSettings):
    model_config = SettingsConfigDict(env_prefix="TRADEPULSE_CIPS_", extra="ignore", frozen=True)
