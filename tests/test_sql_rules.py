"""The SQL rules of the house, checked rather than promised (README, "Schema"):

- a released function file (`sql/functions/NAME_vN.sql`) is never edited: `sql/functions/SHA256SUMS`
  pins each one (`sha256sum -c SHA256SUMS` in that folder checks them by hand too);
- every function file is installed by a migration, and the signature a migration drops on rollback
  is the function's own.
"""

from __future__ import annotations

import ast
import hashlib
import re
from pathlib import Path

import psycopg

from waypost.sql import MIGRATIONS_DIR, SQL_DIR, function_source

FUNCTIONS_DIR = SQL_DIR / "functions"
MANIFEST = FUNCTIONS_DIR / "SHA256SUMS"
DROP = re.compile(r"DROP FUNCTION IF EXISTS (\w+)\(([^){}]*)\)")


def pinned() -> dict[str, str]:
    lines = MANIFEST.read_text().splitlines()
    return {name: digest for digest, name in (line.split() for line in lines if line.strip())}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def migration_texts() -> dict[str, str]:
    return {path.name: path.read_text() for path in sorted(MIGRATIONS_DIR.glob("0*.py"))}


def dropped_signatures() -> dict[str, str]:
    """{function: argument types} as the migrations' rollbacks spell them."""
    found: dict[str, str] = {}
    for text in migration_texts().values():
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):  # adjacent literals joined
                found.update(DROP.findall(node.value))
            elif isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "FUNCTIONS" for t in node.targets):
                found.update(ast.literal_eval(node.value))  # a table of (name, argument types)
    return found


def test_every_function_file_is_pinned_and_unchanged() -> None:
    files = {path.name for path in FUNCTIONS_DIR.glob("*.sql")}
    manifest = pinned()
    assert files == manifest.keys(), (
        "a new function file is added to sql/functions/SHA256SUMS when its migration is written; "
        f"not pinned: {sorted(files - manifest.keys())}, pinned but missing: {sorted(manifest.keys() - files)}"
    )
    edited = [name for name in files if sha256(FUNCTIONS_DIR / name) != manifest[name]]
    assert not edited, f"released function files are never edited; write a _v(N+1) file instead: {sorted(edited)}"


def test_every_function_file_is_versioned_and_installed_by_a_migration() -> None:
    installed = set(re.findall(r"waypost_\w+_v\d+", "\n".join(migration_texts().values())))
    for path in FUNCTIONS_DIR.glob("*.sql"):
        assert re.fullmatch(r"waypost_\w+_v\d+\.sql", path.name), path.name
        assert path.stem in installed, f"{path.name} is installed by no migration"
        assert f"FUNCTION {path.stem}(" in path.read_text(), f"{path.name} defines another function"


def test_rollbacks_drop_the_signature_each_function_has(db: psycopg.Connection) -> None:
    signatures = dropped_signatures()
    assert len(signatures) == len(list(FUNCTIONS_DIR.glob("*.sql")))
    with db.transaction(force_rollback=True):
        for name, spelled in signatures.items():
            db.execute(function_source(name))  # also the ones a later migration dropped
            row = db.execute(
                "SELECT oidvectortypes(proargtypes) AS args FROM pg_proc WHERE proname = %s", (name,)
            ).fetchall()
            assert len(row) == 1, f"{name} is overloaded"
            actual = row[0]["args"].replace("timestamp with time zone", "timestamptz")
            assert re.sub(r"\s+", " ", spelled.strip()) == actual, name


def test_no_function_is_defined_inside_a_migration() -> None:
    for name, text in migration_texts().items():
        assert "CREATE OR REPLACE FUNCTION" not in text.upper(), name
    for path in MIGRATIONS_DIR.glob("0*.sql"):
        if "_procrastinate_" not in path.name:
            assert "CREATE OR REPLACE FUNCTION" not in path.read_text().upper(), path.name
