"""The tree stays ruff clean and keeps its dependency arrows one-way."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_check_is_clean() -> None:
    result = subprocess.run([sys.executable, "-m", "ruff", "check", str(ROOT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def imported_packages(package: str) -> set[str]:
    found = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module.split(".")[0])
            elif isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
    return found


def test_worker_never_imports_webhook() -> None:
    assert "webhook" not in imported_packages("worker")


def test_shared_core_imports_neither_side_at_module_level() -> None:
    for path in (ROOT / "waypost").glob("*.py"):
        top_level = ast.parse(path.read_text()).body
        modules = {
            (node.module or "").split(".")[0] if isinstance(node, ast.ImportFrom) else alias.name.split(".")[0]
            for node in top_level
            if isinstance(node, ast.Import | ast.ImportFrom)
            for alias in node.names
        }
        assert not modules & {"webhook", "worker"}, path.name
