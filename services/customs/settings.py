"""The customs service's own setting (read with the ``TRADEPULSE_CUSTOMS_`` prefix its ``Domain``
gives it): the release time threshold the SLA alert compares against."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from services.engine.domain import EngineSettings


class CustomsSettings(EngineSettings):
    release_p90_threshold_s: Annotated[float, Field(gt=0)] = 48 * 3600.0
