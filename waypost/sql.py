"""Loads SQL by name from the top-level `sql/` directory.

`sql/*.sql` (`queries.sql`, `inbox.sql`) hold named queries in procrastinate's format: a
`-- name --` line, comment lines describing it, then the statement; names are unique across files.
`sql/functions/NAME.sql` hold function definitions, installed by migrations.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

# In a checkout and in an installed wheel alike, `sql/` and `migrations/` sit beside this package.
PROJECT_ROOT = Path(__file__).resolve().parent.parent
SQL_DIR = PROJECT_ROOT / "sql"
MIGRATIONS_DIR = PROJECT_ROOT / "migrations"

_HEADER = re.compile(r"^-- ([a-z_0-9]+) --$", re.MULTILINE)


def parse_queries(text: str, queries: dict[str, str] | None = None) -> dict[str, str]:
    """Split a queries file into {name: statement}, dropping the descriptive comment lines."""
    parts = _HEADER.split(text)
    queries = {} if queries is None else queries
    for name, block in zip(parts[1::2], parts[2::2], strict=True):
        lines = [line for line in block.strip().splitlines() if not line.startswith("--")]
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice")
        queries[name] = "\n".join(lines).strip().rstrip(";")
    return queries


@functools.cache
def queries() -> dict[str, str]:
    found: dict[str, str] = {}
    for path in sorted(SQL_DIR.glob("*.sql")):
        parse_queries(path.read_text(encoding="utf-8"), found)
    return found


def query(name: str) -> str:
    try:
        return queries()[name]
    except KeyError:
        raise KeyError(f"no query named {name!r} in {SQL_DIR}/*.sql") from None


def function_source(name: str) -> str:
    return (SQL_DIR / "functions" / f"{name}.sql").read_text(encoding="utf-8")
