"""The budget's index of sent messages without a predicate (issue 17): messages_sent_at_idx on
(sent_at) replaces 0019's messages_outbound_sent_at_idx on (sent_at) WHERE direction = 'outbound'. On
statistics taken before any message was outbound (a young database, and the benchmarks, which start on
one), the planner took that index for nearly empty and chose it for statements naming direction =
'outbound': it read every outbound message to find one by id (the reply's record) and to count one
conversation's AI replies (the reply's start). Only outbound messages have a sent_at, so the budget's
count reads the same entries. Built CONCURRENTLY, so writes go on (not transactional); re-runnable.
SQL in sql/indexes.sql."""

from typing import Any

from yoyo import step

from waypost.schema import build_index_concurrently, drop_index_concurrently

__depends__ = {"0043_planner_proof_fetch"}
__transactional__ = False

NEW, OLD = "messages_sent_at_idx", "messages_outbound_sent_at_idx"


def replace(conn: Any) -> None:
    build_index_concurrently(conn, NEW)
    drop_index_concurrently(conn, OLD)


def put_back(conn: Any) -> None:
    build_index_concurrently(conn, OLD)
    drop_index_concurrently(conn, NEW)


steps = [step(replace, put_back)]
