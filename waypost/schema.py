"""Schema management: apply migrations with yoyo, and verify the database is what the code expects."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from yoyo import get_backend, read_migrations

from waypost.db import DictPool, fetch_all, fetch_value
from waypost.sql import MIGRATIONS_DIR

logger = logging.getLogger(__name__)

# What the code reads and writes. A test checks this against a freshly migrated database.
EXPECTED_COLUMNS: dict[str, tuple[str, ...]] = {
    "conversations": (
        "id",
        "phone_number_id",
        "wa_id",
        "contact_name",
        "ai_enabled",
        "last_inbound_at",
        "deleted_at",
        "created_at",
        "updated_at",
        "user_id",
        "parent_user_id",
        "username",
        "operator_read_at",
    ),
    "messages": (
        "id",
        "conversation_id",
        "direction",
        "author",
        "wa_message_id",
        "idempotency_key",
        "type",
        "body",
        "payload",
        "status",
        "error",
        "contact_sent_at",
        "created_at",
        "sent_at",
        "delivered_at",
        "read_at",
        "failed_at",
        "updated_at",
        "reply_to_message_id",
        "send_attempts",
        "sending_since",
        "operator_id",
        # 0016_edits_and_echoes
        "edited_at",
        "revoked_at",
        "source",
        # 0019_pricing
        "pricing_category",
        "pricing_type",
        "billable",
        "priced_at",
        "undelivered_at",
        # 0029_read_receipts
        "read_receipt_at",
    ),
    "outbound_jobs": (
        "id",
        "inbound_message_id",
        "conversation_id",
        "status",
        "attempts",
        "last_error",
        "skip_reason",
        "request_id",
        "procrastinate_job_id",
        "created_at",
        "started_at",
        "finished_at",
        "updated_at",
        "waiting_since",
    ),
    "webhook_events": (
        "id",
        "request_id",
        "received_at",
        "body",
        "signature",
        "processed_at",
        "error",
        "body_size",
        "body_sha256",
    ),
    "message_statuses": (
        "id",
        "wa_message_id",
        "status",
        "status_at",
        "recipient_id",
        "biz_opaque_callback_data",
        "errors",
        "payload",
        "message_id",
        "received_at",
    ),
    "notifications": (
        "id",
        "conversation_id",
        "message_id",
        "kind",
        "body",
        "created_at",
        "read_at",
        "snoozed_until",
        "once_key",  # 0027_notification_once
    ),
    "procrastinate_jobs": (
        "id",
        "queue_name",
        "task_name",
        "lock",
        "args",
        "status",
        "scheduled_at",
        "attempts",
        "worker_id",
    ),
    "procrastinate_workers": ("id", "last_heartbeat"),
    "operators": ("id", "email", "password_hash", "created_at", "last_sign_in_at", "disabled_at"),
    "sign_in_attempts": ("id", "email", "client_ip", "succeeded", "attempted_at"),
    "operator_sessions": (
        "id",
        "operator_id",
        "token_sha256",
        "created_at",
        "last_seen_at",
        "ended_at",
        "end_reason",
        "client_ip",
        "user_agent",
    ),
    "media": (
        "id",
        "message_id",
        "wa_media_id",
        "kind",
        "mime_type",
        "sha256",
        "filename",
        "voice",
        "status",
        "attempts",
        "last_error",
        "byte_size",
        "created_at",
        "stored_at",
        "purged_at",
        "storage",
        "object_bucket",
        "object_key",
        "transcript_status",
        "transcript",
        "transcript_attempts",
        "transcript_error",
        "transcribed_at",
        "uploaded_at",
    ),
    "media_chunks": ("media_id", "seq", "data"),
    "message_changes": (
        "id",
        "event_message_id",
        "kind",
        "original_wa_message_id",
        "message_id",
        "body_before",
        "body_after",
        "changed_at",
        "applied_at",
        "created_at",
    ),
    # 0021_templates
    "message_templates": (
        "id",
        "template_id",
        "waba_id",
        "name",
        "language",
        "category",
        "status",
        "components",
        "body_params",
        "header_params",
        "button_params",
        "quality",
        "rejected_reason",
        "synced_at",
        "updated_at",
    ),
    # 0023_template_events
    "template_events": (
        "id",
        "waba_id",
        "name",
        "language",
        "kind",
        "previous",
        "value",
        "reason",
        "applied",
        "event_key",
        "occurred_at",
        "created_at",
    ),
    "template_syncs": ("waba_id", "started_at", "synced_at", "failed_at", "error", "failures"),
    # 0024_template_drafts
    "template_drafts": (
        "id",
        "client_key",
        "operator_id",
        "waba_id",
        "name",
        "language",
        "category",
        "request",
        "status",
        "attempts",
        "asked_at",
        "template_id",
        "meta_status",
        "error",
        "request_id",
        "created_at",
        "finished_at",
    ),
    # 0020_erasure
    "erasures": ("id", "erased_at", "erased_by", "counts"),
    "consent_events": (
        "id",
        "phone_number_id",
        "wa_id",
        "user_id",
        "conversation_id",
        "kind",
        "source",
        "message_id",
        "operator_id",
        "event_key",
        "occurred_at",
        "created_at",
    ),
    "block_requests": (
        "id",
        "conversation_id",
        "action",
        "status",
        "error",
        "operator_id",
        "request_id",
        "created_at",
        "finished_at",
    ),
    # 0028_knowledge
    "kb_documents": ("id", "title", "source_kind", "language", "filename", "created_at", "created_by"),
    "kb_passages": ("id", "document_id", "seq", "heading", "text", "language", "heading_weight", "tsv"),
    # operators' views (docs/operations.md)
    "waypost_jobs_by_status": ("status", "jobs", "oldest_age"),
    "waypost_stuck_jobs": ("outbound_job_id", "status", "procrastinate_status", "reply_status"),
    "waypost_failed_sends": ("message_id", "error_code", "error_title", "error_details"),
    "waypost_conversation_queues": ("conversation_id", "waiting", "running"),
    "waypost_message_costs": ("phone_number_id", "month", "category", "type", "messages", "billable"),
}
EXPECTED_FUNCTIONS: tuple[str, ...] = (
    "waypost_status_rank_v1",
    "waypost_advance_message_status_v1",
    "waypost_ingest_inbound_message_v2",
    "waypost_resolve_conversation_v1",
    "waypost_merge_conversations_v1",
    "waypost_change_contact_identifiers_v1",
    "waypost_apply_message_status_v3",
    "waypost_finish_reply_job_v1",
    "waypost_notify_send_failed_v1",
    "waypost_claim_send_v2",
    "waypost_record_send_v1",
    "waypost_fail_send_v1",
    "waypost_queue_operator_message_v2",
    "waypost_notify_inbox_v1",
    "waypost_apply_message_changes_v1",
    "waypost_record_message_change_v1",
    "waypost_ingest_echo_v1",
    "waypost_contact_identifiers_v1",
    "waypost_erase_contact_v1",
    "waypost_may_receive_marketing_v1",
    "waypost_queue_operator_message_v3",
    "waypost_queue_reengagement_v1",
    "procrastinate_defer_jobs_v1",
    "procrastinate_fetch_job_v2",
    "procrastinate_finish_job_v1",
    "procrastinate_retry_job_v2",
)
# The unique indexes that enforce idempotency: losing one would silently allow duplicates.
EXPECTED_INDEXES: tuple[str, ...] = (
    "conversations_live_contact_key",
    "conversations_live_user_key",
    "messages_wa_message_id_key",
    "messages_idempotency_key_key",
    "outbound_jobs_inbound_message_id_key",
    "message_statuses_wa_message_id_status_key",
    "operators_email_key",
    "operator_sessions_token_key",
    "media_message_id_key",
    "message_changes_event_message_id_key",
    "consent_events_event_key_key",
    "message_templates_name_language_key",
    "notifications_once_key_key",
    "template_events_event_key_key",
    "template_drafts_client_key_key",
    "template_drafts_in_flight_key",
)
# The triggers that feed the live inbox: without them, open pages silently stop updating.
EXPECTED_TRIGGERS: tuple[str, ...] = (
    "waypost_inbox_conversations",
    "waypost_inbox_messages",
    "waypost_inbox_notifications",
)
# procrastinate's own files are copied verbatim and cannot be re-run; ours are written re-runnable.
THIRD_PARTY_MARK = "_procrastinate_"


@dataclasses.dataclass(frozen=True)
class Check:
    ok: bool
    label: str

    def line(self) -> str:
        return f"{'✓' if self.ok else '✗'} {self.label}"


@dataclasses.dataclass(frozen=True)
class SchemaReport:
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def problems(self) -> list[str]:
        return [check.label for check in self.checks if not check.ok]

    def render(self) -> str:
        verdict = "Schema verification PASSED" if self.ok else "Schema verification FAILED"
        return "\n".join([*(check.line() for check in self.checks), verdict])


def migration_ids() -> list[str]:
    return [migration.id for migration in read_migrations(str(MIGRATIONS_DIR))]


def build_report(
    applied: set[str],
    columns: set[tuple[str, str]],
    functions: set[str],
    indexes: set[str],
    triggers: set[str],
) -> SchemaReport:
    checks = [
        Check(mid in applied, f"migration {mid} {'applied' if mid in applied else 'NOT applied'}")
        for mid in migration_ids()
    ]
    tables = {table for table, _ in columns}
    for table, expected in EXPECTED_COLUMNS.items():
        if table not in tables:
            checks.append(Check(False, f"table {table} missing"))
            continue
        missing = [column for column in expected if (table, column) not in columns]
        label = f"table {table}: " + (
            f"missing column(s) {', '.join(f'{table}.{c}' for c in missing)}"
            if missing
            else f"{len(expected)} columns present"
        )
        checks.append(Check(not missing, label))
    checks += [
        Check(name in functions, f"function {name}{'' if name in functions else ' missing'}")
        for name in EXPECTED_FUNCTIONS
    ]
    checks += [
        Check(name in indexes, f"unique index {name}{'' if name in indexes else ' missing'}")
        for name in EXPECTED_INDEXES
    ]
    checks += [
        Check(name in triggers, f"trigger {name}{'' if name in triggers else ' missing'}") for name in EXPECTED_TRIGGERS
    ]
    return SchemaReport(tuple(checks))


async def verify_async(conn: psycopg.AsyncConnection[Any]) -> SchemaReport:
    """Compare the database behind `conn` with what this code expects (read-only)."""
    has_yoyo = await fetch_value(conn, "schema_yoyo_table_exists")
    applied = {r["migration_id"] for r in await fetch_all(conn, "schema_applied_migrations")} if has_yoyo else set()
    return build_report(
        applied,
        {(r["table_name"], r["column_name"]) for r in await fetch_all(conn, "schema_columns")},
        {r["name"] for r in await fetch_all(conn, "schema_functions")},
        {r["name"] for r in await fetch_all(conn, "schema_indexes")},
        {r["name"] for r in await fetch_all(conn, "schema_triggers")},
    )


class SchemaMismatchError(RuntimeError):
    """The database does not match this code (code DB_MISMATCH)."""

    code = "DB_MISMATCH"

    def __init__(self, report: SchemaReport) -> None:
        self.report = report
        super().__init__(
            "DB_MISMATCH: the database schema does not match this version of Waypost: "
            + "; ".join(report.problems)
            + ". Run `waypost migrate`, then `waypost verify-schema`."
        )


async def ensure_schema(pool: DictPool) -> SchemaReport:
    async with pool.connection() as conn:
        report = await verify_async(conn)
    if not report.ok:
        raise SchemaMismatchError(report)
    return report


def yoyo_url(database_url: str) -> str:
    """yoyo names its psycopg 3 backend in the URL scheme: postgresql+psycopg://."""
    parts = urlsplit(database_url)
    if parts.scheme not in {"postgres", "postgresql"}:
        raise ValueError(f"DATABASE_URL must be a postgresql:// URL, got scheme {parts.scheme!r}")
    return urlunsplit(parts._replace(scheme="postgresql+psycopg"))


def migrate(database_url: str) -> list[str]:
    """Apply pending migrations; re-run Waypost's own if objects they create have gone missing.

    Returns the ids of the migrations applied or re-run. Holds yoyo's lock, so two deploys
    running at once apply each migration once.
    """
    migrations = read_migrations(str(MIGRATIONS_DIR))
    with get_backend(yoyo_url(database_url)) as backend, backend.lock():
        pending = backend.to_apply(migrations)
        backend.apply_migrations(pending)
        done = [m.id for m in pending]
        if not verify(database_url).ok:
            for migration in migrations:
                if THIRD_PARTY_MARK not in migration.id and migration.id not in done:
                    logger.warning("re-running %s to repair schema drift", migration.id)
                    backend.apply_one(migration, mark=False)
                    done.append(migration.id)
    return done


def verify(database_url: str) -> SchemaReport:
    """verify_async on a connection of its own, for the CLI."""

    async def run() -> SchemaReport:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            return await verify_async(conn)

    return asyncio.run(run())
