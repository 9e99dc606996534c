"""The batch transport leans on private internals of faust-streaming 0.15.3. These tests fail loudly,
naming what moved, when an upgrade changes any of them: then re-read the overridden methods
against the new Faust before trusting batch delivery again (docs/design.md, "Batch transport")."""

from __future__ import annotations

import hashlib
import inspect
import re
from pathlib import Path
from typing import Any

import faust
import pytest
from faust.transport import drivers
from faust.transport.conductor import Conductor
from faust.transport.consumer import Consumer

from services.runtime.transport import SCHEME, BatchTransport

ROOT = Path(__file__).resolve().parents[2]

# The Faust code the transport re-implements or hooks into, as read for 0.15.3.
SOURCES = {
    "Consumer._drain_messages": (Consumer._drain_messages, "44a2500309e83c63"),
    "Consumer.ack": (Consumer.ack, "5fcf41cf45153475"),
    "Consumer.track_message": (Consumer.track_message, "217d7f1399a4cd8e"),
    "Consumer._wait_next_records": (Consumer._wait_next_records, "6218e1969a636b3f"),
    "Consumer.wait_empty": (Consumer.wait_empty, "e4662fe24f094819"),
    "Consumer._new_offset": (Consumer._new_offset, "1d2c7ea89a7ad4f1"),
    "Conductor._build_handler": (Conductor._build_handler, "5c071d1277988c57"),
}
ATTRIBUTES = ("_read_offset", "_acked", "_acked_index", "_committed_offset", "_unacked_messages", "_n_acked",
              "_commit_every", "_buffered_partitions", "_waiting_for_ack")  # fmt: skip


def test_faust_is_the_pinned_version() -> None:
    pin = re.search(r'"faust-streaming==([^"]+)"', (ROOT / "pyproject.toml").read_text())
    assert pin is not None, "pyproject.toml must pin faust-streaming exactly"
    assert faust.__version__ == pin.group(1) == "0.15.3"


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_the_faust_code_the_transport_relies_on_is_unchanged(name: str) -> None:
    obj, expected = SOURCES[name]
    got = hashlib.sha256(inspect.getsource(obj).encode()).hexdigest()[:16]
    assert got == expected, f"faust {name} changed: re-read it against services/runtime/transport.py"


def test_the_consumer_bookkeeping_the_transport_writes_exists() -> None:
    source = inspect.getsource(Consumer)
    missing = [a for a in ATTRIBUTES if f"self.{a}" not in source]
    assert missing == []
    assert hasattr(Conductor, "_build_handler")
    assert "_tp_to_callback_lock" in inspect.getsource(Conductor)


def test_the_transport_is_found_by_its_url_scheme() -> None:
    found: Any = drivers.by_url(f"{SCHEME}://127.0.0.1:9092")
    assert found is BatchTransport
