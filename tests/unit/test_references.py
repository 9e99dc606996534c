"""No document, docstring or comment names a file the repository lacks: a reader who follows a
reference finds it (design.md had cited engineering.md and ../reference/faust-batch/, which were
never here)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PATH = re.compile(
    r"(?<![\w./-])((?:\.\./)?(?:docs|services|tests|deploy|schemas|scripts|\.ci|reference)/[\w./*<>{}-]*[\w*>}/])"
)
MADE = ("deploy/kafka/.cache", "bench-results/", ".tradepulse/")  # created by the tools, gitignored


def _tracked() -> list[Path]:
    names = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    keep = (".md", ".py", ".yml", ".yaml", ".sh", ".toml", ".sql")
    return [ROOT / n for n in names.splitlines() if n.endswith(keep) and (ROOT / n).exists()]


def _exists(ref: str) -> bool:
    ref = ref.rstrip("/.")
    if any(c in ref for c in "*<>{}") or ref.startswith(MADE):
        head = re.split(r"[*<>{}]", ref)[0].rsplit("/", 1)[0]
        return (ROOT / head).exists()
    return (ROOT / ref).exists() or ref.startswith("../shared/")


def test_every_file_a_text_names_exists() -> None:
    dangling = []
    for path in _tracked():
        if path.name == "test_references.py":
            continue
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            for ref in PATH.findall(line):
                if not _exists(ref):
                    dangling.append(f"{path.relative_to(ROOT)}:{n}: {ref}")
    assert dangling == []
