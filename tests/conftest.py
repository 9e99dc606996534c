"""Session-wide test plumbing: the versions of the real components, shown at the end of the run."""

from __future__ import annotations

from typing import Any

import pytest

# helpers shared by test modules assert too: show their diffs like a test module's
pytest.register_assert_rewrite("tests.integration.domain", "tests.integration.harness")

COMPONENTS: dict[str, str] = {}


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if COMPONENTS:
        terminalreporter.section("real components used")
        for name, version in COMPONENTS.items():
            terminalreporter.write_line(f"{name}: {version}")
