"""Session-wide test plumbing: the versions of the real components, shown at the end of the run."""

from __future__ import annotations

from typing import Any

COMPONENTS: dict[str, str] = {}


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if COMPONENTS:
        terminalreporter.section("real components used")
        for name, version in COMPONENTS.items():
            terminalreporter.write_line(f"{name}: {version}")
