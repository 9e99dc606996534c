"""The tree is the architecture (docs/design.md): contract, engine, runtime, then thin domains.
Imports go one way, no domain knows another, and nothing below the registry lists the domains."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.registry import DOMAINS

SERVICES = Path(__file__).resolve().parents[2] / "services"
DOMAIN_PACKAGES = frozenset(DOMAINS)

# what each layer may import from services.* (besides itself)
ALLOWED = {
    "contract": frozenset(),
    "engine": frozenset({"contract"}),
    "runtime": frozenset({"contract", "engine"}),
    "workdays": frozenset(),
    "simulation": frozenset({"contract"}),  # the simulators' shared helpers build contract events
    **{name: frozenset({"contract", "engine", "workdays", "simulation"}) for name in DOMAIN_PACKAGES},
}


def _modules(package: str) -> Iterator[Path]:
    path = SERVICES / package
    yield from sorted(path.rglob("*.py")) if path.is_dir() else [path.with_suffix(".py")]


def _imported(path: Path) -> set[str]:
    """Top-level packages of services.* that ``path`` imports."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        found |= {n.split(".")[1] for n in names if n.startswith("services.")}
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_each_layer_imports_only_the_layers_below_it(package: str) -> None:
    for path in _modules(package):
        wrong = _imported(path) - ALLOWED[package] - {package}
        assert not wrong, f"{path.relative_to(SERVICES.parent)} imports services.{', services.'.join(wrong)}"


@pytest.mark.parametrize("package", ["contract", "engine", "runtime"])
def test_no_shared_layer_lists_the_domains(package: str) -> None:
    """A new domain must not need an edit below services/registry.py: no tuple, list, set or dict
    there holds two domain names (one, as in a schema example, is not a list)."""
    for path in _modules(package):
        for node in ast.walk(ast.parse(path.read_text())):
            items = node.keys if isinstance(node, ast.Dict) else getattr(node, "elts", [])
            if not isinstance(node, ast.Tuple | ast.List | ast.Set | ast.Dict):
                continue
            named = {i.value for i in items if isinstance(i, ast.Constant) and isinstance(i.value, str)}
            named &= DOMAIN_PACKAGES
            where = f"{path.relative_to(SERVICES.parent)}:{node.lineno}"
            assert len(named) < 2, f"{where} lists the domains {sorted(named)}"


def test_tests_read_metrics_as_a_scrape_does() -> None:
    """Tests read metrics through the registry (``REGISTRY.get_sample_value``), as Prometheus sees
    them, never through prometheus_client's private attributes, which change without notice."""
    tests = SERVICES.parent / "tests"
    hits = []
    for path in sorted(tests.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in {"_value", "_metrics", "_children", "_sum"}:
                hits.append(f"{path.relative_to(tests.parent)}:{node.lineno} .{node.attr}")
    assert not hits, f"private metric attributes read: {hits}"
