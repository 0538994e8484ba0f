"""The handover settings beyond the phrases and the message (README "Handing over"): when else a
conversation goes to a person, and business hours for the customer's message. `Settings` inherits
them (waypost/settings.py is full); business hours and the time zone are parsed and checked when the
worker starts (worker.business_hours), where a mistake stops it with a ConfigurationError."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings

HANDOVER_MESSAGE_CLOSED = "Thanks! A person from our team will answer you here {opens}."


class HandoverSettings(BaseSettings):
    # More than this many AI replies in a row (no operator message, no handover in between) hand
    # over instead of the next AI answer; 0: off. Ten: a real back-and-forth (an order, an address, a
    # delivery date) fits in fewer; a customer the AI has answered ten times without settling it is
    # going round in circles.
    handover_after_ai_replies: int = Field(10, ge=0, validation_alias=AliasChoices("WAYPOST_HANDOVER_AFTER_AI_REPLIES"))
    # The AI failed for good (out of retries) or had no reply: hand over rather than stay silent.
    handover_on_ai_failure: bool = Field(True, validation_alias=AliasChoices("WAYPOST_HANDOVER_ON_AI_FAILURE"))
    # `mon-fri 09:00-18:00; sat 10:00-14:00` in WAYPOST_TIMEZONE (an IANA name); empty: always open.
    business_hours: str = Field("", validation_alias=AliasChoices("WAYPOST_BUSINESS_HOURS"))
    timezone: str = Field("UTC", validation_alias=AliasChoices("WAYPOST_TIMEZONE"))
    # The customer's handover message outside business hours; {opens}: "tomorrow from 9:00".
    handover_message_closed: str = Field(
        HANDOVER_MESSAGE_CLOSED, validation_alias=AliasChoices("WAYPOST_HANDOVER_MESSAGE_CLOSED")
    )
