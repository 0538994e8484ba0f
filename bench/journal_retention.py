"""The journal's retention on a generated month of rows (README "Benchmarks", issue 17 goal 5):
expiring one day by dropping its partition (migration 0035, the sweep's waypost_journal_partitions_v1)
against deleting its rows from one plain table (the layout before 0035, the sweep's old DELETE).

    .venv/bin/python -m bench.journal_retention [--days 30] [--rows-per-day 100000] [--singles 2000] [--no-save]

Starts its own embedded PostgreSQL, migrates it, and writes the same month into both layouts in one
database: the partitioned webhook_events (a partition per day, today and the next days) and
bench_journal_plain (0002's table). Then, each after a CHECKPOINT: the first day expired by DELETE on
the plain table and by the sweep's function on the partitioned one (time, WAL bytes), both layouts'
size, and the webhook's own writes on each (one INSERT, then one UPDATE by id, each its own
transaction). Per-row figures are extrapolated to 27 million rows a day (320 POSTs/s). The DELETE's
figures leave out the VACUUM that must then follow (more WAL, more I/O); a dropped partition needs none.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from bench.common import machine, report
from waypost.db import composed, connect_sync, execute_sync, fetch_one_sync
from waypost.devtools import embedded_pg, payloads
from waypost.schema import migrate

ROWS_A_DAY_AT_320 = 320 * 86400  # 27.6 million


def wal_and_seconds(conn: psycopg.Connection[Any], work: Callable[[], Any]) -> tuple[float, int, Any]:
    """Run `work` after a checkpoint; its seconds, WAL bytes and result."""
    execute_sync(conn, "bench_checkpoint")
    lsn = fetch_one_sync(conn, "bench_wal_lsn")["lsn"]
    started = time.perf_counter()
    result = work()
    seconds = time.perf_counter() - started
    return seconds, int(fetch_one_sync(conn, "bench_wal_since", lsn=lsn)["bytes"]), result


def singles(conn: psycopg.Connection[Any], count: int) -> dict[str, float]:
    """The webhook's two writes on each layout, `count` times, each its own transaction, the layouts
    taking turns (so a busy moment of the machine falls on both): median ms of each."""
    queries = {
        "plain": ("bench_journal_insert_plain", "bench_journal_processed_plain"),
        "partitioned": ("webhook_event_insert", "webhook_event_processed"),
        "keyed": ("bench_journal_insert_keyed", "bench_journal_processed_keyed"),  # by (id, received_at)
    }
    samples: dict[str, list[float]] = {f"{kind} {layout}": [] for layout in queries for kind in ("insert", "update")}
    for n in range(count):
        body = payloads.dumps(payloads.inbound(payloads.text_message(f"single {n}")))
        row = {
            "request_id": f"single-{n}",
            "body": body,
            "body_size": len(body),
            "body_sha256": hashlib.sha256(body).digest(),
            "signature": "valid",
            "error": None,
        }
        for layout, (insert, processed) in queries.items():
            started = time.perf_counter()
            key = fetch_one_sync(conn, insert, **row)
            samples[f"insert {layout}"].append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            execute_sync(conn, processed, **key, error=None)
            samples[f"update {layout}"].append((time.perf_counter() - started) * 1000)
    return {name: statistics.median(values) for name, values in samples.items()}


def measure(days: int, rows_per_day: int, single_count: int) -> list[str]:
    pg = embedded_pg.start(Path(tempfile.mkdtemp(prefix="waypost-bench-journal-")) / "pg", delete_on_exit=True)
    try:
        url = pg.create_database("journal")
        migrate(url)
        with connect_sync(url, autocommit=True) as conn:
            execute_sync(conn, "bench_journal_plain_create")
            execute_sync(conn, "bench_journal_make_days", days=days)
            today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
            fill = {"partitioned": 0.0, "plain": 0.0}
            tables = {"partitioned": "webhook_events", "plain": "bench_journal_plain"}
            statements = {layout: composed("bench_journal_fill", table=table) for layout, table in tables.items()}
            for day in range(days):
                for layout in fill:
                    started = time.perf_counter()
                    conn.execute(statements[layout], {"rows": rows_per_day, "day": today + timedelta(days=day)})
                    fill[layout] += time.perf_counter() - started
            sizes = fetch_one_sync(conn, "bench_journal_sizes")
            execute_sync(conn, "bench_journal_vacuum")

            # Expire day 0 (its rows end at tomorrow's midnight) in each layout.
            cutoff = today + timedelta(days=1)
            delete_s, delete_wal, deleted = wal_and_seconds(
                conn, lambda: execute_sync(conn, "bench_journal_delete_plain", cutoff=cutoff)
            )
            keep = datetime.now(UTC) - cutoff - timedelta(minutes=1)  # negative: the cutoff is ahead
            drop_s, drop_wal, dropped = wal_and_seconds(
                conn, lambda: fetch_one_sync(conn, "bench_journal_expire_partitioned", keep=keep)
            )
            single = singles(conn, single_count)
    finally:
        pg.stop()

    rows = days * rows_per_day
    per_row_delete_us = delete_s / deleted * 1e6
    per_row_wal = delete_wal / deleted
    scale = ROWS_A_DAY_AT_320
    gib = 1024**3
    return [
        machine(f"{days} days x {rows_per_day} rows, {single_count} single writes; indicative on a shared machine"),
        f"journal_retention: {rows} rows a layout; plain {sizes['plain'] / gib:.2f} GiB, "
        f"partitioned {sizes['partitioned'] / gib:.2f} GiB ({sizes['plain'] / rows:.0f} / "
        f"{sizes['partitioned'] / rows:.0f} bytes a row)",
        f"  bulk insert: plain {fill['plain'] / rows * 1e6:.1f} us/row, "
        f"partitioned {fill['partitioned'] / rows * 1e6:.1f} us/row",
        f"  expire one day ({deleted} rows) by DELETE (plain): {delete_s * 1000:.0f} ms, "
        f"WAL {delete_wal / 1024**2:.1f} MiB "
        f"({per_row_delete_us:.1f} us, {per_row_wal:.0f} bytes a row; VACUUM not included)",
        f"  expire one day by dropping its partition: {drop_s * 1000:.1f} ms, WAL {drop_wal / 1024:.1f} KiB "
        f"(partitions dropped: {dropped['partitions_dropped']})",
        f"  at 27.6M rows/day (320 POSTs/s), extrapolated: DELETE {per_row_delete_us * scale / 1e6 / 60:.1f} min "
        f"and {per_row_wal * scale / gib:.1f} GiB WAL a day, then its VACUUM; drop: about the same as above, "
        f"whatever the rows (catalog changes, and a {sizes['partitioned'] / rows * scale / gib:.0f} GiB "
        f"day's files unlinked)",
        f"  webhook writes, one transaction each, median: INSERT plain {single['insert plain']:.3f} ms, "
        f"partitioned {single['insert partitioned']:.3f} ms; UPDATE by id plain {single['update plain']:.3f} ms, "
        f"partitioned {single['update partitioned']:.3f} ms ({days} partitions: the UPDATE by id probes each one), "
        f"by id and received_at {single['update keyed']:.3f} ms (one partition)",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--rows-per-day", type=int, default=100_000)
    parser.add_argument("--singles", type=int, default=2000, help="single INSERT + UPDATE pairs a layout")
    parser.add_argument("--no-save", action="store_true", help="print only, append nothing to bench/results")
    args = parser.parse_args()
    lines = measure(args.days, args.rows_per_day, args.singles)
    report("journal_retention", lines, record=not args.no_save)


if __name__ == "__main__":
    main()
