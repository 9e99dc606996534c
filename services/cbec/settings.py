"""Settings of the CBEC service (``TRADEPULSE_CBEC_`` prefix): the engine's, with the shorter life
of e-commerce orders."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.engine.domain import EngineSettings


class CbecSettings(EngineSettings):
    model_config = SettingsConfigDict(env_prefix="TRADEPULSE_CBEC_", extra="ignore", frozen=True)

    # Orders in a final state are kept this long (event time) for late corrections, then dropped.
    window_retention_s: Annotated[float, Field(gt=0)] = 7 * 86400.0
    case_expiry_s: Annotated[float, Field(gt=0)] = 30 * 86400.0
