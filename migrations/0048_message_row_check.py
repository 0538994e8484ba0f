"""messages' five CHECK constraints become one (issue 17): messages_row_check calls
waypost_message_row_ok_v1, which holds all five conditions (sql/functions/waypost_message_row_ok_v1.sql
says what they cost). Not transactional, each statement committed on its own: the new constraint is added
NOT VALID (a catalog change under a brief exclusive lock), then validated (a scan of the table that lets
writes go on), then the five are dropped; a rollback adds the five back the same way. Each statement
waits at most 10 s for its lock, so a long transaction on messages fails the migration rather than
holding every write behind it. Re-runnable: a drift repair re-runs 0002, which puts messages_shape_check
back, and then this, which drops it again; a constraint already there and valid is left as it is."""

from typing import Any

from yoyo import step

from waypost.sql import function_source

__depends__ = {"0047_start_reply_in_fetch"}
__transactional__ = False

ROW_CHECK = (
    "waypost_message_row_ok_v1(direction, author, status, source, wa_message_id IS NOT NULL,"
    " idempotency_key IS NOT NULL)"
)
# The five as 0002 and 0016 wrote them (tests/test_message_row_check.py holds the function to them).
OLD_CHECKS = {
    "messages_direction_check": "direction IN ('inbound', 'outbound')",
    "messages_author_check": "author IN ('contact', 'ai', 'operator')",
    "messages_status_check": "status IN ('received', 'sending', 'unknown', 'sent', 'delivered', 'read', 'played',"
    " 'failed')",
    "messages_source_check": "source IN ('phone_app')",
    "messages_shape_check": "(direction = 'inbound' AND author = 'contact' AND wa_message_id IS NOT NULL"
    " AND idempotency_key IS NULL AND status = 'received') OR (direction = 'outbound'"
    " AND author IN ('ai', 'operator') AND idempotency_key IS NOT NULL AND status <> 'received')",
}


def _run(conn: Any, *statements: str) -> None:
    cursor = conn.cursor()
    cursor.execute("SET lock_timeout = '10s'")
    try:
        for statement in statements:
            cursor.execute(statement)
    finally:
        cursor.execute("RESET lock_timeout")


def _add(conn: Any, checks: dict[str, str]) -> None:
    """Each check added NOT VALID and then validated, unless it is there and valid already."""
    cursor = conn.cursor()
    for name, check in checks.items():
        cursor.execute(
            "SELECT convalidated FROM pg_constraint WHERE conrelid = 'messages'::regclass AND conname = %s", [name]
        )
        found = cursor.fetchone()
        if found is None:
            _run(conn, f"ALTER TABLE messages ADD CONSTRAINT {name} CHECK ({check}) NOT VALID")
        if found is None or not found[0]:
            _run(conn, f"ALTER TABLE messages VALIDATE CONSTRAINT {name}")


def _drop(conn: Any, names: list[str]) -> None:
    _run(conn, "ALTER TABLE messages " + ", ".join(f"DROP CONSTRAINT IF EXISTS {name}" for name in names))


def add_row_check(conn: Any) -> None:
    _add(conn, {"messages_row_check": ROW_CHECK})


def drop_row_check(conn: Any) -> None:
    _drop(conn, ["messages_row_check"])


def drop_old_checks(conn: Any) -> None:
    _drop(conn, list(OLD_CHECKS))


def add_old_checks(conn: Any) -> None:
    _add(conn, OLD_CHECKS)


steps = [
    step(
        function_source("waypost_message_row_ok_v1"),
        "DROP FUNCTION IF EXISTS waypost_message_row_ok_v1(text, text, text, text, boolean, boolean)",
    ),
    step(add_row_check, drop_row_check),
    step(drop_old_checks, add_old_checks),
]
