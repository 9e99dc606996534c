"""Wiring of the export refund worker: the shared pipeline with the refund tracker."""

from __future__ import annotations

from functools import partial

from services.common.pipeline import CasePipeline
from services.common.workdays import WorkdayCalendar
from services.common.worker import ServiceSpec, Wiring
from services.taxrefund import metrics
from services.taxrefund.lifecycle import INDICATORS
from services.taxrefund.settings import TaxrefundSettings
from services.taxrefund.tracker import RefundTracker

TOPIC = "taxrefund.events.v1"


def build(w: Wiring) -> CasePipeline:
    config = TaxrefundSettings()
    metrics.TARGET_AVERAGE.labels(scope="categories_1_2").set(config.target_avg_wd_categories_1_2)
    metrics.TARGET_AVERAGE.labels(scope="overall").set(config.target_avg_wd_overall)
    calendar = WorkdayCalendar.with_file(w.settings.workdays_file)
    tracker = partial(RefundTracker, calendar=calendar, limits=config.limits_wd)
    return CasePipeline(w, config, tracker=tracker, indicators=INDICATORS, topic=TOPIC)


SPEC = ServiceSpec(name="taxrefund", logic=build)
