"""Structured logs: one JSON object per line on stderr (or plain text for a terminal)."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any

import orjson

__all__ = ["JsonFormatter", "Quieter", "RepeatFilter", "logging_config"]

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", ...extra}``; extras come from ``logger.info(..., extra={})``."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


class RepeatFilter(logging.Filter):
    """Lets one record per logger and message template through every ``every_s`` seconds; the next
    one that passes carries how many were held back (``repeated``). Kafka clients log the same
    connection error ten times a second while a broker is away; that buries everything else.
    Info lines and records marked ``audit`` always pass: a second "state restored" is a rebalance,
    and the gateway logs every refusal with its credential."""

    def __init__(self, every_s: float = 30.0) -> None:
        super().__init__()
        self.every_s = every_s
        self._last: dict[tuple[str, object], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or getattr(record, "audit", False):
            return True  # the process's own info lines are few, and each tells something (a rebalance)
        key = (record.name, record.msg)
        last, held = self._last.get(key, (float("-inf"), 0))
        if record.created - last < self.every_s:
            self._last[key] = (last, held + 1)
            return False
        self._last[key] = (record.created, 0)
        if held:
            record.repeated = held
        return True


class Quieter(logging.Filter):
    """Below ``debug``, drops three kinds of lines an operator cannot act on, from any logger:

    - the lifecycle lines of mode services ("[^--Web]: Starting...", "[^HistoryStore]:
      Stopping..."): Faust's, and TradePulse's own transport and history store;
    - Faust's "Missing sensor state for rebalance" warning. On a worker without Faust tables,
      recovery ends inside the assignment callback, so Faust ends the rebalance (clearing its
      sensor state) before it records the assignment's return, and then warns that the state is
      missing: on every start and rebalance, about nothing of TradePulse's (it keeps no sensors);
    - aiokafka's "Heartbeat failed for group ... because it is rebalancing" warning: the way every
      member learns that another one joined or left, on each scale-up, deploy and restart; the
      worker's "state restored" line says what the rebalance gave it. The other heartbeat
      failures (coordinator gone, generation or member unknown) still show.
    """

    FALSE_ALARMS = (
        "Missing sensor state for rebalance",
        "Heartbeat failed for group %s because it is rebalancing",
    )

    RETRIED = ("Failed fetch offsets from %s: %s",)
    """aiokafka's errors for what it retries at once: a leader being elected (just after a topic is
    created, or a broker restarts) is not worth an ERROR line; other causes still show."""
    RETRIED_CAUSES = ("NotLeaderForPartitionError", "LeaderNotAvailableError")

    LIFECYCLE = re.compile(r"\[\^-*[^\]]+\]: (Starting|Stopping|Shutting down|Restarting)\.\.\.$")

    def __init__(self, debug: bool = False) -> None:
        super().__init__()
        self.debug = debug

    def filter(self, record: logging.LogRecord) -> bool:
        if self.debug:
            return True
        msg = str(record.msg)
        if msg in self.RETRIED and any(cause in str(record.args) for cause in self.RETRIED_CAUSES):
            return False
        return not any(alarm in msg for alarm in self.FALSE_ALARMS) and not self.LIFECYCLE.match(msg)


def logging_config(*, level: str, fmt: str, tool: bool = False) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` document for services and tools. Tools (``tool``) report
    what went wrong themselves, in one line: the Kafka client's own error logs are left out.

    A worker's start and stop are TradePulse's own lines; Faust's and mode's info lines (service
    lifecycle, recovery steps: two dozen each way) show only at ``debug``, their warnings always.
    Timer overlaps are left out below ``debug`` as well: mode reports one whenever a batch keeps
    the event loop longer than a timer's 0.25 s interval, which is any busy worker;
    consumer lag and indicator latency are the measures of falling behind."""
    debug = level.upper() == "DEBUG"
    faust_level = "DEBUG" if debug else "WARNING"
    formatter: dict[str, Any] = (
        {"()": JsonFormatter}
        if fmt == "json"
        else {"format": "%(asctime)s %(levelname)-7s %(name)s: %(message)s"}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "filters": {"repeats": {"()": RepeatFilter}, "quieter": {"()": Quieter, "debug": debug}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "stream": "ext://sys.stderr",
                "filters": ["quieter", "repeats"],
            }
        },
        "root": {"level": level.upper(), "handlers": ["stderr"]},
        # Kafka client internals are chatty at info; their warnings still show (once per 30 s).
        "loggers": {
            "aiokafka": {"level": "CRITICAL" if tool else "WARNING"},
            "faust": {"level": faust_level},
            "faust.transport": {"level": "WARNING"},
            "mode": {"level": faust_level},
            "mode.timers": {"level": "DEBUG" if debug else "ERROR"},
        },
    }
