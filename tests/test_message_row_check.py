"""messages' five CHECK constraints as one (migration 0048_message_row_check): messages_row_check, through
waypost_message_row_ok_v1, refuses exactly the rows the five refused, and rolls back to them."""

from __future__ import annotations

import ast

import psycopg
import pytest
from psycopg.rows import dict_row
from yoyo import get_backend, read_migrations

from tests.conftest import TEMPLATE
from waypost.schema import migrate, verify, yoyo_url
from waypost.sql import MIGRATIONS_DIR

OURS = "0048_message_row_check"


def migration_constants() -> dict[str, object]:
    """The migration's module-level literals (a yoyo migration imports only under yoyo)."""
    tree = ast.parse((MIGRATIONS_DIR / f"{OURS}.py").read_text())
    return {
        target.id: ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name) and target.id in ("ROW_CHECK", "OLD_CHECKS")
    }


CONSTANTS = migration_constants()
ROW_CHECK = str(CONSTANTS["ROW_CHECK"])
OLD_CHECKS = dict(CONSTANTS["OLD_CHECKS"])  # type: ignore[call-overload]
FIVE = sorted(OLD_CHECKS)
# The five, each as a CHECK counts it: only FALSE refuses a row (NULL passes).
OLD = " AND ".join(f"(({check}) IS NOT FALSE)" for check in OLD_CHECKS.values())


def definitions(url: str) -> dict[str, str]:
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as db:
        rows = db.execute(
            "SELECT conname, pg_get_constraintdef(oid) AS definition FROM pg_constraint"
            " WHERE conrelid = 'messages'::regclass AND contype = 'c'"
        ).fetchall()
    return {row["conname"]: row["definition"] for row in rows}


def checks(db: psycopg.Connection) -> list[str]:
    rows = db.execute(
        "SELECT conname, convalidated FROM pg_constraint WHERE conrelid = 'messages'::regclass AND contype = 'c'"
        " ORDER BY conname"
    ).fetchall()
    assert all(row["convalidated"] for row in rows), rows
    return [row["conname"] for row in rows]


def test_the_function_refuses_exactly_what_the_five_refused(db: psycopg.Connection) -> None:
    """Every combination of the columns' values, unknown ones and NULLs included."""
    differ = db.execute(
        f"""
        WITH v AS (
            SELECT direction, author, status, source, wa_message_id, idempotency_key
              FROM unnest(ARRAY['inbound', 'outbound', 'other', NULL]) direction,
                   unnest(ARRAY['contact', 'ai', 'operator', 'other', NULL]) author,
                   unnest(ARRAY['received', 'sending', 'unknown', 'sent', 'delivered', 'read', 'played',
                                'failed', 'other', NULL]) status,
                   unnest(ARRAY['phone_app', 'other', NULL]) source,
                   unnest(ARRAY['wamid.x', NULL]) wa_message_id,
                   unnest(ARRAY['key', NULL]) idempotency_key
        )
        SELECT count(*) AS combinations,
               count(*) FILTER (WHERE ({OLD}) IS DISTINCT FROM (({ROW_CHECK}) IS NOT FALSE)) AS differ,
               count(*) FILTER (WHERE NOT ({OLD})) AS refused
          FROM v
        """
    ).fetchone()
    assert differ == {"combinations": 4 * 5 * 10 * 3 * 2 * 2, "differ": 0, "refused": differ["refused"]}
    assert 0 < differ["refused"] < differ["combinations"]


def test_messages_carry_the_one_check_and_it_refuses_a_bad_row(db: psycopg.Connection) -> None:
    assert checks(db) == ["messages_row_check"]
    conversation = db.execute(
        "INSERT INTO conversations (phone_number_id, wa_id) VALUES ('1', '15550001111') RETURNING id"
    ).fetchone()["id"]
    insert = (
        "INSERT INTO messages (conversation_id, direction, author, wa_message_id, idempotency_key, type, status)"
        " VALUES (%s, %s, %s, %s, %s, 'text', %s)"
    )
    db.execute(insert, [conversation, "inbound", "contact", "wamid.ok", None, "received"])
    db.execute(insert, [conversation, "outbound", "ai", None, "key.ok", "sending"])
    for bad in (
        ["inbound", "contact", "wamid.keyed", "key.inbound", "received"],  # an inbound message with a key
        ["outbound", "contact", None, "key.contact", "sending"],  # the contact does not write outbound
        ["outbound", "ai", None, "key.status", "queued"],  # no such status
    ):
        with pytest.raises(psycopg.errors.CheckViolation, match="messages_row_check"):
            db.execute(insert, [conversation, *bad])


def test_the_migration_rolls_back_to_the_five_and_applies_again(pg) -> None:
    """The five it adds back are the five 0002 and 0016 wrote (a database that never had 0048)."""
    never = pg.create_database("message_checks_never")
    url = pg.create_database("message_row_check", template=TEMPLATE)
    migrations = read_migrations(str(MIGRATIONS_DIR))
    with get_backend(yoyo_url(never)) as backend, backend.lock():
        backend.apply_migrations(backend.to_apply(migrations.filter(lambda m: m.id != OURS)))
    with get_backend(yoyo_url(url)) as backend, backend.lock():
        backend.rollback_migrations(backend.to_rollback(migrations.filter(lambda m: m.id == OURS)))
    assert definitions(url) == definitions(never) and sorted(definitions(url)) == FIVE
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as db:
        assert checks(db) == FIVE  # each validated
        assert db.execute("SELECT to_regproc('waypost_message_row_ok_v1') AS f").fetchone()["f"] is None
    assert migrate(url) == [OURS]
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as db:
        assert checks(db) == ["messages_row_check"]
    assert verify(url).ok
    pg.drop_database("message_row_check")
    pg.drop_database("message_checks_never")
