"""messages' five CHECK constraints become one (issue 17): messages_row_check calls
waypost_message_row_ok_v1, which holds all five conditions (sql/functions/waypost_message_row_ok_v1.sql
says what they cost). The new constraint is added NOT VALID and then validated, each step committed on its
own (not transactional), so that writes wait only for the catalog changes, not for the scan of the table;
then the five are dropped. Re-runnable (a drift repair that re-runs 0002 puts messages_shape_check back,
and this drops it again)."""

from yoyo import step

from waypost.sql import function_source

__depends__ = {"0047_start_reply_in_fetch"}
__transactional__ = False

ROW_CHECK = (
    "waypost_message_row_ok_v1(direction, author, status, source, wa_message_id IS NOT NULL,"
    " idempotency_key IS NOT NULL)"
)
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


def _drop(names: list[str]) -> str:
    return "ALTER TABLE messages " + ", ".join(f"DROP CONSTRAINT IF EXISTS {name}" for name in names)


steps = [
    step(
        function_source("waypost_message_row_ok_v1"),
        "DROP FUNCTION IF EXISTS waypost_message_row_ok_v1(text, text, text, text, boolean, boolean)",
    ),
    step(
        _drop(["messages_row_check"]) + f"; ALTER TABLE messages ADD CONSTRAINT messages_row_check CHECK ({ROW_CHECK})"
        " NOT VALID",
        _drop(["messages_row_check"]),
    ),
    step("ALTER TABLE messages VALIDATE CONSTRAINT messages_row_check"),
    step(
        _drop(list(OLD_CHECKS)),
        _drop(list(OLD_CHECKS))
        + "; ALTER TABLE messages "
        + ", ".join(f"ADD CONSTRAINT {name} CHECK ({check}) NOT VALID" for name, check in OLD_CHECKS.items())
        + "; "
        + "; ".join(f"ALTER TABLE messages VALIDATE CONSTRAINT {name}" for name in OLD_CHECKS),
    ),
]
