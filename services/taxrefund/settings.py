"""The export refund service's own settings (read with the ``TRADEPULSE_TAXREFUND_`` prefix its
``Domain`` gives them): the SLA table lives here, not in code: limits per management category and
the average-time targets. The engine's defaults for refunds are in domain.py."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from services.engine.domain import EngineSettings
from services.taxrefund.lifecycle import DEFAULT_LIMITS_WD


class TaxrefundSettings(EngineSettings):
    limits_wd: dict[int, Annotated[int, Field(ge=0)]] = Field(default_factory=lambda: dict(DEFAULT_LIMITS_WD))
    target_avg_wd_categories_1_2: Annotated[float, Field(gt=0)] = 3.0
    target_avg_wd_overall: Annotated[float, Field(gt=0)] = 5.0
