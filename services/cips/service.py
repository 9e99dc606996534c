"""Wiring of the CIPS worker: the shared pipeline with the payment tracker."""

from __future__ import annotations

from services.cips.lifecycle import INDICATORS
from services.cips.settings import CipsSettings
from services.cips.tracker import PaymentTracker
from services.common.pipeline import CasePipeline
from services.common.worker import ServiceSpec, Wiring

TOPIC = "cips.events.v1"


def build(w: Wiring) -> CasePipeline:
    return CasePipeline(w, CipsSettings(), tracker=PaymentTracker, indicators=INDICATORS, topic=TOPIC)


SPEC = ServiceSpec(name="cips", logic=build)
