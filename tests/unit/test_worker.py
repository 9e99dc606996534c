"""The worker's readiness before its consumer runs: readiness probes ask during start-up and
shutdown too."""

from __future__ import annotations

from typing import Any

from services.runtime.settings import Settings
from services.runtime.worker import assignment, create_app


def test_a_worker_whose_consumer_has_not_started_holds_no_partitions() -> None:
    """Faust raises ConsumerNotStarted then: /ready answered 500 and logged a traceback instead of
    503 "not ready" (seen in a worker's log during a start)."""
    app = create_app(Settings(), service="customs", port=6061)
    try:
        assert assignment(app) == set()
    finally:  # the event loops Faust made for the app and the consumer's thread
        consumer: Any = app.consumer  # Faust's aiokafka consumer, whose thread has a loop of its own
        consumer._thread.thread_loop.close()
        app.loop.close()
