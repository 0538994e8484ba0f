"""The tree stays ruff clean and type checked, keeps its SQL in sql/ and its dependency arrows one-way."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_check_is_clean() -> None:
    result = subprocess.run([sys.executable, "-m", "ruff", "check", str(ROOT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_clean() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", str(ROOT)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_is_clean() -> None:
    """The packages and settings are in pyproject.toml's [tool.mypy]: the runtime and the benchmarks."""
    result = subprocess.run([sys.executable, "-m", "mypy"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


# A string that starts like an SQL statement (upper-case keywords, as sql/ writes them).
SQL_STATEMENT = re.compile(
    r"\s*(SELECT|INSERT INTO|UPDATE \w+ SET|DELETE FROM|CREATE|DROP|ALTER|TRUNCATE|LISTEN|NOTIFY|WITH \w+ AS)\b"
)


def test_no_sql_outside_sql_files() -> None:
    """Statements live in sql/*.sql, loaded by name (migrations/ aside); a statement that needs an
    identifier names it as a {placeholder} filled with psycopg.sql.Identifier, never an f-string."""
    offenders = []
    for package in ("waypost", "webhook", "worker", "bench"):
        for path in (ROOT / package).rglob("*.py"):
            tree = ast.parse(path.read_text())
            docstrings = {
                id(node.body[0].value)
                for node in ast.walk(tree)
                if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
                and node.body
                and isinstance(node.body[0], ast.Expr)
            }
            for node in ast.walk(tree):
                if isinstance(node, ast.JoinedStr):
                    text = "".join(part.value for part in node.values if isinstance(part, ast.Constant))
                elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                    text = node.value
                else:
                    continue
                if SQL_STATEMENT.match(text):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, offenders


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


FACADE = "worker.tasks"


def worker_imports(package: str) -> dict[str, set[str]]:
    """Every `worker...` module each file of `package` imports (`from worker import x` counts as worker.x)."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / package).rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "worker":
                names.update(
                    [node.module] if node.module != "worker" else [f"worker.{alias.name}" for alias in node.names]
                )
            elif isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names if alias.name.split(".")[0] == "worker")
        if names:
            found[str(path.relative_to(ROOT))] = names
    return found


def test_webhook_reaches_the_worker_only_through_the_task_facade() -> None:
    outside = {path: names - {FACADE} for path, names in worker_imports("webhook").items() if names - {FACADE}}
    assert outside == {}


def test_importing_the_web_app_loads_no_worker_machinery() -> None:
    """The facade defers by task name: the web process never loads the Graph client, the worker,
    the task modules or the App. Run without any setting: importing reads no environment."""
    script = (
        "import sys, webhook.app, worker.tasks\n"
        "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] == 'worker')))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WAYPOST_", "WHATSAPP_", "DATABASE_URL"))}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    loaded = set(result.stdout.split())
    heavy = {
        "worker.graph",
        "worker.resilience",
        "worker.reply",
        "worker.sending",
        "worker.queue",
        "worker.orchestrator",
    }
    assert loaded & heavy == set(), loaded


def test_importing_the_worker_app_reads_no_environment() -> None:
    """`procrastinate --app=worker.app` imports the App first: the settings are read when a worker
    starts, so a missing DATABASE_URL fails there, with its message, and not at import."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WAYPOST_", "WHATSAPP_", "DATABASE_URL"))}
    script = "import worker\nprint(type(worker.app).__name__, sorted(worker.app.tasks))\n"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("WaypostApp"), result.stdout


def imports_of(tree: ast.AST) -> Iterator[tuple[ast.Import | ast.ImportFrom, list[str]]]:
    """Every import statement under `tree` with the full names of the modules it imports."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node, [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Import):
            yield node, [alias.name for alias in node.names]


def python_files() -> Iterator[Path]:
    for path in sorted(ROOT.rglob("*.py")):
        relative = path.relative_to(ROOT)
        if not relative.parts[0].startswith(".") and "node_modules" not in relative.parts:
            yield path


def test_only_the_dev_commands_tests_and_benchmarks_import_the_dev_tools() -> None:
    def is_devtools(name: str) -> bool:
        return name == "waypost.devtools" or name.startswith("waypost.devtools.")

    offenders = []
    for path in python_files():
        relative = path.relative_to(ROOT)
        if relative.parts[0] in {"tests", "bench"} or relative.parts[:2] == ("waypost", "devtools"):
            continue
        tree = ast.parse(path.read_text())
        # waypost/cli.py may import them inside its commands (dev, simulate), never when imported.
        lazy = set()
        if relative == Path("waypost/cli.py"):
            functions = [node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)]
            lazy = {id(node) for function in functions for node, _ in imports_of(function)}
        for node, names in imports_of(tree):
            if any(map(is_devtools, names)) and id(node) not in lazy:
                offenders.append(f"{relative}:{node.lineno}")
    assert not offenders, offenders


def test_benchmarks_never_import_the_tests() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for path in (ROOT / "bench").rglob("*.py")
        for node, names in imports_of(ast.parse(path.read_text()))
        if any(name == "tests" or name.startswith("tests.") for name in names)
    ]
    assert not offenders, offenders


def test_the_image_leaves_the_dev_tools_out() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "waypost.devtools" in dockerfile and "devtools.sql" in dockerfile and "bench.sql" in dockerfile
