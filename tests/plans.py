"""What a statement's plans do, counted rather than timed: for tests of plans that the table's
statistics must not spoil (issue 17)."""

from __future__ import annotations

import json
from typing import Any

import psycopg


def rows_handled(db: psycopg.Connection, statement: str, params: dict[str, Any]) -> int:
    """The rows a statement's plans handle, its nested statements included (auto_explain logs each
    of them): every node's rows out, and the rows its filters removed. A count of the work, where a
    timing would depend on the machine. Rolled back."""
    plans: list[dict[str, Any]] = []

    def logged(notice: psycopg.errors.Diagnostic) -> None:
        plans.append(json.loads((notice.message_primary or "").split("plan:", 1)[1]))

    db.add_notice_handler(logged)
    db.execute("LOAD 'auto_explain'")
    db.execute("SET auto_explain.log_min_duration = 0")
    db.execute("SET auto_explain.log_analyze = on")
    db.execute("SET auto_explain.log_nested_statements = on")
    db.execute("SET auto_explain.log_format = json")
    db.execute("SET client_min_messages = log")
    with db.transaction(force_rollback=True):
        db.execute(statement, params)
    db.execute("SET client_min_messages = notice")
    db.remove_notice_handler(logged)

    def handled(node: dict[str, Any]) -> int:
        removed = sum(node.get(f"Rows Removed by {what}", 0) for what in ("Filter", "Join Filter", "Index Recheck"))
        own = node["Actual Rows"] * node["Actual Loops"] + removed
        return int(own) + sum(handled(child) for child in node.get("Plans", ()))

    return sum(handled(plan["Plan"]) for plan in plans)
