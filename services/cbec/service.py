"""Wiring of the CBEC worker: the shared pipeline with the order tracker."""

from __future__ import annotations

from services.cbec.lifecycle import INDICATORS
from services.cbec.settings import CbecSettings
from services.cbec.tracker import OrderTracker
from services.common.pipeline import CasePipeline
from services.common.worker import ServiceSpec, Wiring

TOPIC = "cbec.events.v1"


def build(w: Wiring) -> CasePipeline:
    return CasePipeline(w, CbecSettings(), tracker=OrderTracker, indicators=INDICATORS, topic=TOPIC)


SPEC = ServiceSpec(name="cbec", logic=build)
