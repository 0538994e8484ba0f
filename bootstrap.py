#!/usr/bin/env python3
"""Sets up a virtualenv in .venv with Waypost and its test extras, then runs a command in it.

    python3 bootstrap.py dev [waypost dev args] # run Waypost locally (README "Run")
    python3 bootstrap.py test [pytest args]     # the test suite (README "Test")
    python3 bootstrap.py bench [suite args]     # the benchmark suite (README "Benchmarks"), with the bench extra
    python3 bootstrap.py waypost ARGS...        # any waypost command

Needs only Python 3.11+. Reinstalls when pyproject.toml changes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / ".waypost-installed"


def ensure_environment(extras: tuple[str, ...] = ("test",)) -> Path:
    """The venv with waypost and `extras` installed; the stamp records the pyproject.toml and the extras."""
    if sys.version_info < (3, 11):  # noqa: UP036 (bootstrap runs under whatever python3 is on PATH)
        sys.exit(f"Waypost needs Python 3.11 or newer, this is {sys.version.split()[0]}")
    python = VENV / "bin" / "python"
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    stamp = STAMP.read_text().split() if STAMP.exists() else []
    if python.exists() and stamp[:1] == [wanted] and set(extras) <= set(stamp[1:]):
        return python
    if stamp[:1] == [wanted]:  # same pyproject.toml: keep the extras already there (test, then bench)
        extras = tuple(sorted(set(extras) | set(stamp[1:])))
    if not python.exists():
        print(f"bootstrap: creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    print(f"bootstrap: installing waypost with its extras {', '.join(extras)}", flush=True)
    spec = f"{ROOT}[{','.join(extras)}]"
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "-e", spec], check=True)
    STAMP.write_text(" ".join((wanted, *extras)))
    return python


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in {"dev", "test", "bench", "waypost"}:
        sys.exit(__doc__)
    command, rest = sys.argv[1], sys.argv[2:]
    # the benchmarks run pywa beside Waypost (bench/pywa_side.py): the `bench` extra, never in the image
    python = ensure_environment(("test", "bench") if command == "bench" else ("test",))
    if command == "test":
        argv = [str(python), "-m", "pytest", *rest]
    elif command == "bench":
        argv = [str(python), "-m", "bench.suite", *rest]
    elif command == "dev":
        argv = [str(VENV / "bin" / "waypost"), "dev", *rest]
    else:
        argv = [str(VENV / "bin" / "waypost"), *rest]
    os.chdir(ROOT)
    os.execv(argv[0], argv)


if __name__ == "__main__":
    main()
