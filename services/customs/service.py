"""Wiring of the customs worker: the shared pipeline with the declaration tracker."""

from __future__ import annotations

from services.common.pipeline import CasePipeline
from services.common.worker import ServiceSpec, Wiring
from services.customs import metrics
from services.customs.lifecycle import INDICATORS
from services.customs.settings import CustomsSettings
from services.customs.tracker import Tracker

TOPIC = "customs.events.v1"


def build(w: Wiring) -> CasePipeline:
    config = CustomsSettings()
    metrics.RELEASE_P90_THRESHOLD.set(config.release_p90_threshold_s)
    return CasePipeline(w, config, tracker=Tracker, indicators=INDICATORS, topic=TOPIC)


SPEC = ServiceSpec(name="customs", logic=build)
