"""Wiring of the customs worker: the shared pipeline with the declaration tracker."""

from __future__ import annotations

from services.common.pipeline import CasePipeline
from services.common.worker import ServiceSpec, Wiring
from services.customs.lifecycle import INDICATORS
from services.customs.settings import CustomsSettings
from services.customs.tracker import Tracker

TOPIC = "customs.events.v1"


def build(w: Wiring) -> CasePipeline:
    return CasePipeline(w, CustomsSettings(), tracker=Tracker, indicators=INDICATORS, topic=TOPIC)


SPEC = ServiceSpec(name="customs", logic=build)
