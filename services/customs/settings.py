"""Settings of the customs service (``TRADEPULSE_CUSTOMS_`` prefix)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from services.common.settings import EngineSettings


class CustomsSettings(EngineSettings):
    model_config = SettingsConfigDict(env_prefix="TRADEPULSE_CUSTOMS_", extra="ignore", frozen=True)
