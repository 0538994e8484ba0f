"""The journal (webhook_events) partitioned by day (migration 0035_journal_partitions): an upgrade keeps
every row and id without copying, new rows go into their day's partition, the sweep drops whole days
past the retention, a row no partition covers is stored and expires, two sweeps at once don't clash."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta

import httpx
import psycopg
from psycopg.rows import dict_row
from yoyo import get_backend, read_migrations

from tests.conftest import TEMPLATE
from tests.test_reply import deliver
from tests.test_sweep import sweep
from waypost.schema import migrate, verify, yoyo_url
from waypost.sql import MIGRATIONS_DIR

OURS = "0035_journal_partition"  # _prepare, s, s_functions
MIGRATIONS = [f"{OURS}_prepare", f"{OURS}s", f"{OURS}s_functions"]
KEEP = "interval '30 days'"


def partition_of(db: psycopg.Connection, where: str) -> list[str]:
    return [r["p"] for r in db.execute(f"SELECT tableoid::regclass::text AS p FROM webhook_events WHERE {where}")]


def day_name(day: date) -> str:
    return f"webhook_events_{day:%Y%m%d}"


def today() -> date:
    return datetime.now(UTC).date()


def keep_partitions(db: psycopg.Connection, days_ahead: int = 3) -> dict:
    return db.execute(f"SELECT * FROM waypost_journal_partitions_v1({KEEP}, %s)", [days_ahead]).fetchone()


def add_day(db: psycopg.Connection, day: date) -> None:
    """A day's partition as an earlier sweep would have made it."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    bounds = f"FROM ('{start.isoformat()}') TO ('{(start + timedelta(days=1)).isoformat()}')"
    db.execute(f"CREATE TABLE {day_name(day)} PARTITION OF webhook_events FOR VALUES {bounds}")


def insert_at(db: psycopg.Connection, received_at: datetime | str, request_id: str = "r") -> int:
    row = db.execute(
        "INSERT INTO webhook_events (request_id, signature, received_at) VALUES (%s, 'valid', %s) RETURNING id",
        [request_id, received_at],
    ).fetchone()
    return int(row["id"])


def test_an_upgrade_keeps_every_journal_row_and_id_without_copying_then_rolls_back(pg) -> None:
    url = pg.create_database("journal_upgrade", template=TEMPLATE)
    migrations = read_migrations(str(MIGRATIONS_DIR))
    with get_backend(yoyo_url(url)) as backend, backend.lock():  # back to before 0035
        backend.rollback_migrations(backend.to_rollback(migrations.filter(lambda m: m.id.startswith(OURS))))
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as db:
        db.execute(
            "INSERT INTO webhook_events (request_id, body, signature, received_at, processed_at)"
            " SELECT 'r' || g, convert_to('{\"n\": ' || g || '}', 'UTF8'), 'valid',"
            "        now() - g * interval '40 minutes', now() FROM generate_series(1, 900) g"
        )
        before = db.execute("SELECT * FROM webhook_events ORDER BY id").fetchall()
        old_file = db.execute("SELECT pg_relation_filenode('webhook_events') AS f").fetchone()["f"]

        assert migrate(url) == MIGRATIONS
        assert verify(url).ok
        assert db.execute("SELECT * FROM webhook_events ORDER BY id").fetchall() == before
        # the old table is the legacy partition, the same file: nothing was copied
        legacy = db.execute("SELECT pg_relation_filenode('webhook_events_legacy') AS f").fetchone()["f"]
        assert legacy == old_file
        assert set(partition_of(db, "true")) == {"webhook_events_legacy"}
        # ids go on from the old sequence; the same queries by id work
        new_id = insert_at(db, datetime.now(UTC) + timedelta(days=9))
        assert new_id > before[-1]["id"]
        # past the legacy partition's bound, no day made yet that far ahead: the default partition
        assert partition_of(db, f"id = {new_id}") == ["webhook_events_default"]
        db.execute("UPDATE webhook_events SET processed_at = NULL, error = 'x' WHERE id = %s", [before[0]["id"]])
        assert (
            db.execute("SELECT error FROM webhook_events WHERE id = %s", [before[0]["id"]]).fetchone()["error"] == "x"
        )
        # the legacy partition's old rows expire one by one until it is wholly past, then it goes whole
        db.execute("UPDATE webhook_events SET received_at = now() - interval '40 days' WHERE id <= 10")
        assert keep_partitions(db)["rows_deleted"] == 10

        assert migrate(url) == []  # re-runnable: nothing to do
        with get_backend(yoyo_url(url)) as backend, backend.lock():
            backend.rollback_migrations(backend.to_rollback(migrations.filter(lambda m: m.id.startswith(OURS))))
        kind = db.execute("SELECT relkind FROM pg_class WHERE relname = 'webhook_events'").fetchone()["relkind"]
        assert kind == "r"
        after = db.execute("SELECT id, request_id FROM webhook_events ORDER BY id").fetchall()
        assert after == [{"id": r["id"], "request_id": r["request_id"]} for r in before[10:]] + [
            {"id": new_id, "request_id": "r"}
        ]
        assert insert_at(db, datetime.now(UTC)) > new_id
        assert migrate(url) == MIGRATIONS and verify(url).ok
    pg.drop_database("journal_upgrade")


def test_new_rows_go_into_their_days_partition_made_ahead(db: psycopg.Connection) -> None:
    made = {r["p"] for r in db.execute("SELECT part::text AS p FROM waypost_journal_partition_bounds_v1()")}
    assert {day_name(today() + timedelta(days=n)) for n in range(4)} <= made
    db.execute("INSERT INTO webhook_events (request_id, signature) VALUES ('now', 'valid')")
    assert partition_of(db, "request_id = 'now'") == [day_name(today())]
    assert keep_partitions(db)["partitions_created"] == 0  # idempotent


def test_the_sweep_drops_a_whole_old_day_and_keeps_the_recent_ones(client: httpx.Client, db) -> None:
    old, recent = today() - timedelta(days=40), today() - timedelta(days=10)
    add_day(db, old)
    add_day(db, recent)
    for _ in range(5):
        insert_at(db, datetime(old.year, old.month, old.day, 12, tzinfo=UTC), "old")
        insert_at(db, datetime(recent.year, recent.month, recent.day, 12, tzinfo=UTC), "recent")
    deliver(client, "today")
    stray = insert_at(db, datetime.now(UTC) - timedelta(days=31), "stray")  # no partition: the default one
    assert partition_of(db, f"id = {stray}") == ["webhook_events_default"]

    report = sweep(client)
    assert report["webhook_partitions_dropped"] == 1 and report["webhook_events_deleted"] == 1
    assert db.execute("SELECT to_regclass(%s) AS t", [day_name(old)]).fetchone()["t"] is None
    left = db.execute("SELECT request_id, count(*) AS n FROM webhook_events GROUP BY 1 ORDER BY 1").fetchall()
    assert [(r["request_id"], r["n"]) for r in left if r["request_id"] in ("old", "recent", "stray")] == [("recent", 5)]
    assert db.execute("SELECT count(*) AS n FROM webhook_events").fetchone()["n"] > 5  # today's POST stays
    again = sweep(client)
    assert again["webhook_partitions_dropped"] == 0 and again["webhook_events_deleted"] == 0


def test_a_row_no_partition_covers_is_stored_then_moved_or_expired(db: psycopg.Connection) -> None:
    future = insert_at(db, "2100-01-01 00:00:00+00", "future")
    past = insert_at(db, "1990-01-01 00:00:00+00", "past")
    ahead = today() + timedelta(days=6)  # beyond the partitions made ahead
    early = insert_at(db, datetime(ahead.year, ahead.month, ahead.day, 8, tzinfo=UTC), "early")
    assert partition_of(db, f"id IN ({future}, {past}, {early})") == ["webhook_events_default"] * 3

    done = keep_partitions(db, days_ahead=6)
    assert done["partitions_created"] == 3 and done["rows_deleted"] == 1  # the 1990 row expired
    assert partition_of(db, f"id = {early}") == [day_name(ahead)]  # moved into its day when it was made
    assert partition_of(db, "true").count("webhook_events_default") == 1  # the 2100 row waits for its time
    assert db.execute("SELECT count(*) AS n FROM webhook_events WHERE id = %s", [past]).fetchone()["n"] == 0


def test_two_sweeps_at_once_neither_fails_nor_repeats_the_work(database_url: str, db) -> None:
    add_day(db, today() - timedelta(days=45))
    with psycopg.connect(database_url, row_factory=dict_row) as first:
        assert first.execute(f"SELECT * FROM waypost_journal_partitions_v1({KEEP}, 5)").fetchone() == {
            "partitions_created": 2,
            "partitions_dropped": 1,
            "rows_deleted": 0,
        }
        # while the first has not committed, a second has nothing to do and says so at once
        assert keep_partitions(db, days_ahead=5) == {
            "partitions_created": 0,
            "partitions_dropped": 0,
            "rows_deleted": 0,
        }
        first.commit()

    errors: list[BaseException] = []

    def run() -> None:
        try:
            with psycopg.connect(database_url, autocommit=True) as conn:
                for days in range(6, 16):
                    conn.execute(f"SELECT * FROM waypost_journal_partitions_v1({KEEP}, %s)", [days])
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    made = {r["p"] for r in db.execute("SELECT part::text AS p FROM waypost_journal_partition_bounds_v1()")}
    assert {day_name(today() + timedelta(days=n)) for n in range(16)} <= made
