"""The Faust baseline for benchmarks: an agent that only iterates the input records.

Run as ``python -m services.tools.bench_agent N RESULT.json``; it writes events/s from the first
to the N-th event, with the same app options as the real workers.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import faust

from services.runtime.settings import Settings, load_settings
from services.runtime.transport import record_batches
from services.runtime.worker import create_app, tune_gc


def main() -> None:
    n, out = int(sys.argv[1]), Path(sys.argv[2])
    mode = sys.argv[3] if len(sys.argv) > 3 else "iterate"
    contract_topic = sys.argv[4] if len(sys.argv) > 4 else "customs.events.v1"
    settings = load_settings(Settings)
    # the plain baseline runs on Faust's own transport, the other on TradePulse's batch transport
    app = create_app(settings, service="bench", port=0, scheme="kafka" if mode == "iterate" else "tradepulse")
    topic = app.topic(
        settings.topic(contract_topic),
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )
    state = {"seen": 0, "first": 0.0}

    def seen(k: int) -> None:
        if not state["seen"]:
            state["first"] = time.perf_counter()
        state["seen"] += k
        if state["seen"] >= n and not out.read_text():
            rate = n / (time.perf_counter() - state["first"])
            out.write_text(json.dumps({"events_per_s": rate}))

    @app.agent(topic)
    async def iterate(stream: Any) -> None:
        if mode == "iterate":  # the plain Faust baseline
            async for _ in stream:
                seen(1)
        else:  # the shape of TradePulse's agents, doing nothing: record batches, acknowledged
            async for taken in record_batches(stream, settings.batch_max_events, settings.batch_within_s):
                seen(sum(len(b) for b in taken))
                for b in taken:
                    b.ack()

    tune_gc(settings.gc_gen0_threshold)  # the same process settings as a real worker
    faust.Worker(app, loglevel="warning", quiet=True, redirect_stdouts=False).execute_from_commandline()


if __name__ == "__main__":
    main()
