"""Schema management: apply migrations with yoyo, and verify the database is what the code expects."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from yoyo import get_backend, read_migrations

from waypost.db import DictPool, fetch_all, fetch_value
from waypost.schema_expected import EXPECTED_COLUMNS, EXPECTED_FUNCTIONS, EXPECTED_INDEXES, EXPECTED_TRIGGERS
from waypost.sql import MIGRATIONS_DIR, query

logger = logging.getLogger(__name__)

# procrastinate's own files are copied verbatim and cannot be re-run; ours are written re-runnable.
THIRD_PARTY_MARK = "_procrastinate_"


@dataclasses.dataclass(frozen=True)
class Check:
    ok: bool
    label: str

    def line(self) -> str:
        return f"{'✓' if self.ok else '✗'} {self.label}"


@dataclasses.dataclass(frozen=True)
class SchemaReport:
    checks: tuple[Check, ...]

    @functools.cached_property
    def ok(self) -> bool:  # read on every request (webhook.middleware.SchemaGuardMiddleware): once
        return all(check.ok for check in self.checks)

    @property
    def problems(self) -> list[str]:
        return [check.label for check in self.checks if not check.ok]

    def render(self) -> str:
        verdict = "Schema verification PASSED" if self.ok else "Schema verification FAILED"
        return "\n".join([*(check.line() for check in self.checks), verdict])


def migration_ids() -> list[str]:
    return [migration.id for migration in read_migrations(str(MIGRATIONS_DIR))]


def build_report(
    applied: set[str],
    columns: set[tuple[str, str]],
    functions: set[str],
    indexes: set[str],
    triggers: set[str],
) -> SchemaReport:
    checks = [
        Check(mid in applied, f"migration {mid} {'applied' if mid in applied else 'NOT applied'}")
        for mid in migration_ids()
    ]
    tables = {table for table, _ in columns}
    for table, expected in EXPECTED_COLUMNS.items():
        if table not in tables:
            checks.append(Check(False, f"table {table} missing"))
            continue
        missing = [column for column in expected if (table, column) not in columns]
        label = f"table {table}: " + (
            f"missing column(s) {', '.join(f'{table}.{c}' for c in missing)}"
            if missing
            else f"{len(expected)} columns present"
        )
        checks.append(Check(not missing, label))
    checks += [
        Check(name in functions, f"function {name}{'' if name in functions else ' missing'}")
        for name in EXPECTED_FUNCTIONS
    ]
    checks += [
        Check(name in indexes, f"unique index {name}{'' if name in indexes else ' missing'}")
        for name in EXPECTED_INDEXES
    ]
    checks += [
        Check(name in triggers, f"trigger {name}{'' if name in triggers else ' missing'}") for name in EXPECTED_TRIGGERS
    ]
    return SchemaReport(tuple(checks))


async def verify_async(conn: psycopg.AsyncConnection[Any]) -> SchemaReport:
    """Compare the database behind `conn` with what this code expects (read-only)."""
    has_yoyo = await fetch_value(conn, "schema_yoyo_table_exists")
    applied = {r["migration_id"] for r in await fetch_all(conn, "schema_applied_migrations")} if has_yoyo else set()
    return build_report(
        applied,
        {(r["table_name"], r["column_name"]) for r in await fetch_all(conn, "schema_columns")},
        {r["name"] for r in await fetch_all(conn, "schema_functions")},
        {r["name"] for r in await fetch_all(conn, "schema_indexes")},
        {r["name"] for r in await fetch_all(conn, "schema_triggers")},
    )


class SchemaMismatchError(RuntimeError):
    """The database does not match this code (code DB_MISMATCH)."""

    code = "DB_MISMATCH"

    def __init__(self, report: SchemaReport) -> None:
        self.report = report
        super().__init__(
            "DB_MISMATCH: the database schema does not match this version of Waypost: "
            + "; ".join(report.problems)
            + ". Run `waypost migrate`, then `waypost verify-schema`."
        )


async def ensure_schema(pool: DictPool) -> SchemaReport:
    async with pool.connection() as conn:
        report = await verify_async(conn)
    if not report.ok:
        raise SchemaMismatchError(report)
    return report


def yoyo_url(database_url: str) -> str:
    """yoyo names its psycopg 3 backend in the URL scheme: postgresql+psycopg://."""
    parts = urlsplit(database_url)
    if parts.scheme not in {"postgres", "postgresql"}:
        raise ValueError(f"DATABASE_URL must be a postgresql:// URL, got scheme {parts.scheme!r}")
    return urlunsplit(parts._replace(scheme="postgresql+psycopg"))


def build_index_concurrently(conn: Any, name: str) -> None:
    """In a non-transactional migration: builds index `name` by its named query `NAME_create`
    (CREATE INDEX CONCURRENTLY IF NOT EXISTS), first dropping (`NAME_drop`) one that an interrupted
    build left invalid, which IF NOT EXISTS would keep and the planner would never use."""
    cursor = conn.cursor()
    cursor.execute(query("index_invalid"), {"name": name})
    if cursor.fetchone()[0]:
        cursor.execute(query(f"{name}_drop"))
    cursor.execute(query(f"{name}_create"))


def drop_index_concurrently(conn: Any, name: str) -> None:
    """In a non-transactional migration: drops index `name` by its named query `NAME_drop`."""
    conn.cursor().execute(query(f"{name}_drop"))


def migrate(database_url: str) -> list[str]:
    """Apply pending migrations; re-run Waypost's own if objects they create have gone missing.

    Returns the ids of the migrations applied or re-run. Holds yoyo's lock, so two deploys
    running at once apply each migration once.
    """
    migrations = read_migrations(str(MIGRATIONS_DIR))
    with get_backend(yoyo_url(database_url)) as backend, backend.lock():
        pending = backend.to_apply(migrations)
        backend.apply_migrations(pending)
        done = [m.id for m in pending]
        if not verify(database_url).ok:
            for migration in migrations:
                if THIRD_PARTY_MARK not in migration.id and migration.id not in done:
                    logger.warning("re-running %s to repair schema drift", migration.id)
                    backend.apply_one(migration, mark=False)
                    done.append(migration.id)
    return done


def verify(database_url: str) -> SchemaReport:
    """verify_async on a connection of its own, for the CLI."""

    async def run() -> SchemaReport:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            return await verify_async(conn)

    return asyncio.run(run())
