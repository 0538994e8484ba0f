"""A contact's conversation, found while the conversations table is young (issue 17, eighth session):
waypost_resolve_conversation_v1 (migrations 0007 to 0039) against _v2 (0040), in the same run.

    .venv/bin/python -m bench.contact_lookup [--chunks 8] [--chunk 500] [--repeats 2] [--no-save]

Starts its own embedded PostgreSQL. For each version, on a database of its own, freshly migrated (the
versions take turns, `--repeats` times): `--chunks` rounds of `--chunk` calls for new contacts (phone
number and BSUID, as Meta sends both), then as many for contacts seen before, each call one statement
in autocommit from one connection (whose PL/pgSQL plans stay cached, as a pool's do). Last, the table
is analyzed, as autovacuum does about a minute after its first rows, and the known contacts are looked
up once more. Prints the median ms per call (the round trip included) as the table grows.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import machine, report
from waypost.db import connect_sync, execute_sync, fetch_one_sync
from waypost.devtools import embedded_pg
from waypost.schema import migrate

VERSIONS = ("v1", "v2")


def contact(n: int) -> dict[str, str]:
    return {"wa_id": f"1555{n:07d}", "user_id": f"US.1555{n:07d}"}


def per_call(url: str, version: str, chunks: int, chunk: int) -> list[tuple[float, float]]:
    """(new, known) ms per call for each chunk, then (nan, known) once analyzed."""
    query = f"bench_resolve_{version}"
    rounds: list[tuple[float, float]] = []
    with connect_sync(url, autocommit=True) as conn:

        def timed(numbers: range | list[int]) -> float:
            started = time.perf_counter()
            for n in numbers:
                fetch_one_sync(conn, query, **contact(n))
            return (time.perf_counter() - started) * 1000 / len(numbers)

        def known(seen: int) -> float:
            return timed([(i * 7919) % seen for i in range(chunk)])  # spread over every row

        for done in range(chunks):
            new = timed(range(done * chunk, (done + 1) * chunk))
            rounds.append((new, known((done + 1) * chunk)))
        execute_sync(conn, "bench_analyze_conversations")
        rounds.append((float("nan"), known(chunks * chunk)))
    return rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=8)
    parser.add_argument("--chunk", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-save", action="store_true", help="print only, append nothing to bench/results")
    args = parser.parse_args()
    pg = embedded_pg.start(Path(tempfile.mkdtemp(prefix="waypost-bench-lookup-")) / "pg", delete_on_exit=True)
    results: dict[str, list[list[tuple[float, float]]]] = {version: [] for version in VERSIONS}
    try:
        for repeat in range(args.repeats):
            for version in VERSIONS:
                url = pg.create_database(f"lookup_{version}_{repeat}")
                migrate(url)
                results[version].append(per_call(url, version, args.chunks, args.chunk))
    finally:
        pg.stop()

    def median(version: str, index: int, which: int) -> float:
        return statistics.median(run[index][which] for run in results[version])

    lines = [
        machine(f"median of {args.repeats} fresh databases per version, one connection, autocommit"),
        "ms per call (round trip included)   new contact: v1    v2   |  known contact: v1    v2",
    ]
    for index in range(args.chunks):
        lines.append(
            f"after {(index + 1) * args.chunk:>6} conversations          "
            f"{median('v1', index, 0):6.3f} {median('v2', index, 0):6.3f}   |  "
            f"{median('v1', index, 1):6.3f} {median('v2', index, 1):6.3f}"
        )
    lines.append(
        f"analyzed (autovacuum's first pass)                      |  "
        f"{median('v1', args.chunks, 1):6.3f} {median('v2', args.chunks, 1):6.3f}"
    )
    report("contact_lookup", lines, record=not args.no_save)


if __name__ == "__main__":
    main()
