"""The monthly budget of service messages per business number (WAYPOST_SERVICE_BUDGET_THRESHOLD,
WAYPOST_SERVICE_BUDGET_CAP): checked before the AI answers. Reaching the threshold tells the operators
once a month; reaching the cap leaves new messages to them (the AI stays silent), said once too."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

from waypost.db import execute, fetch_one
from waypost.settings import Settings

CAP_REACHED = "monthly service-message cap reached"


def budgeted(settings: Settings) -> bool:
    """Whether a threshold or a cap is set: without, no reply needs to ask (nor open a transaction)."""
    return bool(settings.service_budget_threshold or settings.service_budget_cap)


async def over_budget(conn: AsyncConnection[Any], settings: Settings, phone_number_id: str) -> str | None:
    """The skip reason when the number is at its cap, else None; notifies at the threshold and cap."""
    threshold, cap = settings.service_budget_threshold, settings.service_budget_cap
    if not threshold and not cap:
        return None
    used = await fetch_one(conn, "budget_service_messages", phone_number_id=phone_number_id)
    count, month = used["messages"], used["month"]
    if threshold and count >= threshold:
        body = (
            f"Number {phone_number_id} reached {threshold} service messages in {month} "
            f"(the threshold is {threshold}{f', the cap {cap}' if cap else ''})."
        )
        await execute(conn, "notification_insert_ever_once", kind="service_budget_threshold", body=body)
    if cap and count >= cap:
        body = (
            f"Number {phone_number_id} reached its cap of {cap} service messages for {month}: the AI stops "
            "answering until next month and leaves conversations to the operators."
        )
        await execute(conn, "notification_insert_ever_once", kind="service_budget_cap", body=body)
        return f"{CAP_REACHED} ({cap} for {month})"
    return None
