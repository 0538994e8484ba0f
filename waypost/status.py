"""`waypost status`: what an on-call person needs first, read from the database in one go.

Schema state, reply jobs by status with the oldest age, the procrastinate queue, workers and their
last heartbeat, sends being reconciled, failed sends of the last hour by Graph error code,
notifications, and where media files go. `attention` lists what needs a person; the command exits 1
when it is not empty.
"""

from __future__ import annotations

import json
from typing import Any

from waypost.db import connect_sync, fetch_all_sync, fetch_one_sync
from waypost.media_store import describe
from waypost.schema import verify
from waypost.settings import ConfigurationError, Settings


def collect(settings: Settings, max_age_seconds: float) -> dict[str, Any]:
    database_url = settings.require_database_url()
    report = verify(database_url)
    with connect_sync(database_url, autocommit=True) as conn:
        status: dict[str, Any] = {
            "schema": {"ok": report.ok, "problems": report.problems},
            "reply_jobs": {
                r["status"]: {"jobs": r["jobs"], "oldest_seconds": _round(r["oldest_seconds"])}
                for r in fetch_all_sync(conn, "status_reply_jobs")
            },
            "queue": {
                r["queue_name"]: {"waiting": r["waiting"], "oldest_seconds": _round(r["oldest_seconds"])}
                for r in fetch_all_sync(conn, "metrics_queue")
            },
            "workers": [
                {"id": r["id"], "heartbeat_age_seconds": _round(r["heartbeat_age_seconds"])}
                for r in fetch_all_sync(conn, "metrics_workers")
            ],
            "unknown_sends": {k: _round(v) for k, v in fetch_one_sync(conn, "status_unknown_sends").items()},
            "failed_sends_last_hour": {r["code"]: r["sends"] for r in fetch_all_sync(conn, "status_failed_sends")},
            "notifications": fetch_one_sync(conn, "status_notifications"),
            # priced messages per number, month, category and type: this month and the last
            "costs": [{**r, "month": r["month"].isoformat()} for r in fetch_all_sync(conn, "costs_by_month", months=1)],
            "undelivered": fetch_one_sync(conn, "metrics_undelivered")["messages"],
        }
    try:
        status["media_store"] = describe(settings)
    except ConfigurationError as exc:
        status["media_store"] = f"not usable: {exc}"
    status["attention"] = attention(status, settings.stalled_worker_seconds, max_age_seconds)
    return status


def _round(value: Any) -> float:
    return round(float(value or 0), 1)


def attention(status: dict[str, Any], stalled_after: float, max_age_seconds: float) -> list[str]:
    found = []
    if not status["schema"]["ok"]:
        found.append("schema mismatch (DB_MISMATCH): run `waypost migrate`")
    if status["media_store"].startswith("not usable"):
        found.append(f"media store {status['media_store']}")
    live = [w for w in status["workers"] if w["heartbeat_age_seconds"] < stalled_after]
    if not live:
        found.append(f"no live worker (no heartbeat in the last {stalled_after:.0f}s)")
    for state in ("pending", "running"):
        job = status["reply_jobs"].get(state)
        if job and job["oldest_seconds"] > max_age_seconds:
            found.append(f"{job['jobs']} reply job(s) {state}, the oldest for {job['oldest_seconds']:.0f}s")
    if status.get("undelivered"):
        found.append(f"{status['undelivered']} message(s) accepted by WhatsApp but not delivered")
    return found


def render(status: dict[str, Any]) -> str:
    lines = ["schema: " + ("ok" if status["schema"]["ok"] else "MISMATCH: " + "; ".join(status["schema"]["problems"]))]
    lines.append("reply jobs:")
    lines += [
        f"  {name:<8} {job['jobs']:>6}  oldest {job['oldest_seconds']:>8.1f}s"
        for name, job in status["reply_jobs"].items()
    ] or ["  none"]
    lines.append("queue (due, waiting):")
    lines += [
        f"  {name:<12} {q['waiting']:>6}  oldest {q['oldest_seconds']:>8.1f}s" for name, q in status["queue"].items()
    ] or ["  empty"]
    lines.append("workers:")
    lines += [
        f"  worker {w['id']}: last heartbeat {w['heartbeat_age_seconds']:.1f}s ago" for w in status["workers"]
    ] or ["  none registered"]
    unknown = status["unknown_sends"]
    lines.append(f"sends being reconciled (unknown): {unknown['sends']:.0f}, oldest {unknown['oldest_seconds']:.1f}s")
    failed = status["failed_sends_last_hour"]
    lines.append("failed sends, last hour: " + (", ".join(f"{code} x{n}" for code, n in failed.items()) or "none"))
    notes = status["notifications"]
    lines.append(f"notifications: {notes['unread']} unread, {notes['snoozed']} snoozed")
    lines.append(f"media store: {status['media_store']}")
    lines.append("messages by cost (number, month, category, type: messages, billable):")
    lines += [
        f"  {c['phone_number_id']} {c['month'][:7]} {c['category'] or '-'} {c['type'] or '-'}: "
        f"{c['messages']}, billable {c['billable']}"
        for c in status["costs"]
    ] or ["  none priced"]
    lines.append(f"not delivered (accepted, no delivery yet): {status['undelivered']}")
    lines.append("attention: " + ("; ".join(status["attention"]) or "nothing"))
    return "\n".join(lines)


def as_json(status: dict[str, Any]) -> str:
    return json.dumps(status, indent=2, default=str)
