"""The README documents every setting, and its two commands exist."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic_settings import BaseSettings

from services.devstack.stack import STACK_ENV
from services.engine.domain import EngineSettings
from services.gateway.app import GatewaySettings
from services.registry import DOMAINS
from services.release.service import ReleaseSettings
from services.runtime.security import SECRET_VARIABLES, KafkaSecurity
from services.runtime.settings import Settings
from services.tools.run import HISTORY_TABLES
from services.workdays import WorkdaySettings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
CONFIGURATION = (ROOT / "docs" / "configuration.md").read_text()


SETTINGS: list[type[BaseSettings]] = [
    Settings,
    KafkaSecurity,
    WorkdaySettings,
    GatewaySettings,
    ReleaseSettings,
    *(d.settings for d in DOMAINS.values()),
]
NESTED = {"kafka"}  # Settings.kafka is KafkaSecurity, listed on its own


def env_names() -> set[str]:
    """Every variable, engine settings written once as ``TRADEPULSE_<SERVICE>_...``."""
    names = {f"{secret}_FILE" for secret in SECRET_VARIABLES}
    for model in SETTINGS:
        prefix = str(model.model_config.get("env_prefix", ""))
        for name, field in model.model_fields.items():
            if issubclass(model, Settings) and name in NESTED:
                continue
            alias = field.validation_alias
            if isinstance(alias, str):
                names.add(alias)
            elif model is not Settings and name in EngineSettings.model_fields:
                names.add(f"TRADEPULSE_<SERVICE>_{name.upper()}")
            else:
                names.add(f"{prefix}{name.upper()}")
    return names


def test_every_setting_is_in_the_configuration_table() -> None:
    missing = sorted(n for n in env_names() if f"| `{n}` |" not in CONFIGURATION)
    assert missing == []


def test_the_table_names_no_setting_that_does_not_exist() -> None:
    tables = CONFIGURATION[: CONFIGURATION.index("\n## Secured clusters")]
    documented = {line.split("`")[1] for line in tables.splitlines() if line.startswith("| `")}
    assert documented - env_names() == set(STACK_ENV)


def test_readme_starts_with_the_two_commands_and_they_are_executable() -> None:
    head = README[: README.index("\n## ", README.index("## The two commands"))]
    for command in ("scripts/run", "scripts/test"):
        assert f"\n{command} " in head
        assert os.access(ROOT / command, os.X_OK)


def test_ci_runs_the_readme_test_command() -> None:
    assert "exec scripts/test" in (ROOT / ".ci" / "run").read_text()


def _created(kind: str) -> set[str]:
    """Tables (or views) the history migrations leave in place, in the order they run."""
    names: set[str] = set()
    for sql in sorted((ROOT / "services" / "runtime" / "migrations").glob("*.sql")):
        for line in sql.read_text().splitlines():
            words = line.rstrip(";( ").split()
            if words[:2] == ["CREATE", kind]:
                names.add(words[2])
            elif words[:2] == ["DROP", kind]:
                names.discard(words[2])
    return names


def test_the_sample_start_up_lines_name_every_service_and_what_history_writes() -> None:
    """The README shows what ``scripts/run`` prints: a line per service with its port, and the history
    tables as they are after the migrations (the sample had named a table migration 2 replaced)."""
    sample = README.split("it prints where to look:", 1)[1].split("```", 2)[1]
    for name, domain in DOMAINS.items():
        assert f"  {name:<10} http://127.0.0.1:{domain.port}/metrics" in sample, name
    tables, views = HISTORY_TABLES.split("; ")
    assert set(tables.removeprefix("tables ").split(", ")) == _created("TABLE")
    assert set(views.removeprefix("view ").split(", ")) == _created("VIEW")
    assert f"(history and release: {HISTORY_TABLES})" in sample


def test_the_readme_is_a_page_a_newcomer_reads() -> None:
    """What it is, the two commands, what you see, one example, where to read next: about 150 lines."""
    assert len(README.splitlines()) <= 150
    assert "## Where to read next" in README
