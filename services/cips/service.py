"""Wiring of the cips worker: the shared intake path plus this domain's logic."""

from __future__ import annotations

from services.common.worker import ServiceSpec

SPEC = ServiceSpec(name="cips")
