"""Automatic re-engagement (WAYPOST_REENGAGE_TEMPLATE, README "Message templates"): an AI reply that
falls due after its conversation's 24-hour window has closed sends the configured approved template
instead of being skipped. The AI's answer is never sent after the window; the customer receives the
template, once.

Its settings are worker.reengage_config. The template goes out as the reply itself: the reply's
outbound message, under the reply's idempotency key, queued by waypost_queue_reengagement_v1 (which
checks the template is stored and APPROVED, its parameter count, marketing consent, and that no template,
this or an operator's, went out since the contact last wrote), then claimed and sent by worker.sending like any
message. A retried, redelivered or crashed job finds that message by its key and sends it, never a
second one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from psycopg.types.json import Jsonb

from waypost import metrics
from waypost.db import fetch_one, fetch_optional
from waypost.text import clean_text
from worker.rows import Conversation, Inbound
from worker.sending import Outbound, notify

if TYPE_CHECKING:
    from worker.reply import ReplyRun

SENT_NOTICE = (
    "reengaged",
    "A message could not be answered inside the 24-hour window: the re-engagement template {template} "
    "was sent instead of the AI's answer.",
)
NOT_SENT_NOTICE = (
    "window_closed",
    "A message could not be answered inside the 24-hour window, and the re-engagement template {template} "
    "was not sent: {why}. Only a template message can reach the contact now.",
)


def outbound(conversation: Conversation, key: str, body: str | None) -> Outbound:
    """The re-engagement message under `key`: its Graph object was stored when it was queued, and it
    quotes nothing (a template starts the conversation again)."""
    return Outbound(conversation, key=key, body=body, author="ai", kind="template")


def why_not(outcome: str, detail: str | None) -> str:
    """What the operator reads when the template was not sent (the job's skip reason and the notice)."""
    return {
        "conversation_missing": "the conversation was deleted",
        "template_missing": "it is not among the stored templates (run `waypost templates sync`)",
        "template_unavailable": f"its status is {detail}, not APPROVED",
        "parameter_mismatch": f"its parameters do not match WAYPOST_REENGAGE_PARAMETERS ({detail})",
        "marketing_refused": "it is a MARKETING template and the contact opted out of marketing (or is blocked)",
        "already_reengaged": "a template was already sent since the contact last wrote (at most one per closed window)",
        "contact_wrote": "the contact wrote again since; the newer message is answered instead",
        "ai_paused": "the AI was paused for this conversation meanwhile",
        "unfillable": f"{detail}",
    }.get(outcome, outcome)


async def reengage(
    run: ReplyRun, conversation: Conversation, inbound: Inbound, key: str, window_closed: str
) -> Outbound | None:
    """Queue the re-engagement template as this reply, with a `reengaged` notification, and return it
    to send; or skip the reply (`window_closed` is its reason) saying why the template was not sent.
    None: the job is closed."""
    config = run.resources.reengage
    assert config is not None
    template = config.label
    parameters = config.parameters(conversation)
    if isinstance(parameters, str):  # a parameter this contact cannot fill
        await not_sent(run, conversation, template, "unfillable", parameters, window_closed)
        return None
    shown = clean_text(f"[re-engagement template {config.name}] " + " | ".join(parameters))[:4096]
    async with run.pool.connection() as conn, conn.transaction():
        # the template first, then the conversation (in the function): the order an operator's send takes
        stored = await fetch_optional(conn, "template_for_send", name=config.name, language=config.language)
        payload = config.template_object(parameters, stored["components"] if stored else None)
        if isinstance(payload, str):  # Meta would refuse it: not queued
            row: dict[str, Any] = {"outcome": "unfillable", "detail": payload, "message_id": None}
        else:
            row = await fetch_one(
                conn,
                "reengagement_queue",
                conversation_id=conversation.id,
                reply_to_message_id=inbound.id,
                idempotency_key=key,
                body=shown,
                payload=Jsonb(payload),
                parameters=len(parameters),
                last_inbound_at=conversation.last_inbound_at,
            )
        outcome = row["outcome"]
        if outcome == "queued":  # told once: a later run finds the message ('duplicate')
            kind, body = SENT_NOTICE
            await notify(conn, conversation.id, kind, body.format(template=template))
    if outcome == "queued":
        metrics.REENGAGEMENTS.labels("sent").inc()
    if outcome not in ("queued", "duplicate"):
        await not_sent(run, conversation, template, outcome, why_not(outcome, row["detail"]), window_closed)
        return None
    run.clock.log("re-engagement", f"template {template} {outcome}: message_id={row['message_id']}, sent as the reply")
    return outbound(conversation, key, shown)


async def not_sent(
    run: ReplyRun, conversation: Conversation, template: str, outcome: str, why: str, window_closed: str
) -> None:
    """Skip the reply: its reason and the operators' notice say why the template was not sent."""
    run.clock.log("re-engagement", f"template {template} not sent ({outcome}): {why}")
    metrics.REENGAGEMENTS.labels(outcome).inc()
    notice = None
    if outcome != "contact_wrote":  # a newer message is being answered: nothing for an operator to do
        kind, body = NOT_SENT_NOTICE
        notice = (kind, body.format(template=template, why=why))
    await run.skip(conversation.id, f"{window_closed}; re-engagement template {template} not sent: {why}", notice)
