"""Prepares the journal (webhook_events) for 0035_journal_partitions on a big install, without holding
up the webhook: a CHECK constraint on received_at, validated under SHARE UPDATE EXCLUSIVE, and a unique
index on (id, received_at), built CONCURRENTLY. Both are scans of the whole table, done here, outside
the swap's transaction, so the swap itself is catalog changes only. Not transactional (CREATE INDEX
CONCURRENTLY cannot run in a transaction); each statement is its own, and re-runnable: once the
table is partitioned, a no-op. SQL in sql/journal.sql."""

from typing import Any

from yoyo import step

from waypost.sql import query

__depends__ = {"0034_store_webhook"}
__transactional__ = False


def prepare(conn: Any) -> None:
    cursor = conn.cursor()
    cursor.execute(query("journal_is_plain_table"))
    if not cursor.fetchone()[0]:
        return
    for name in ("journal_prepare_bound", "journal_prepare_validate", "journal_prepare_unique_index"):
        cursor.execute(query(name))


def unprepare(conn: Any) -> None:
    cursor = conn.cursor()
    cursor.execute(query("journal_is_plain_table"))
    if cursor.fetchone()[0]:
        cursor.execute(query("journal_unprepare"))


steps = [step(prepare, unprepare)]
