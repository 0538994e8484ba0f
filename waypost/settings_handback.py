"""The settings of handing a conversation back to the AI (README "Handing over"), a group the one
settings object (waypost.settings.Settings) inherits: read from the environment with the others."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings

# A day, the length of WhatsApp's customer service window: a team that staffs the inbox at all answers
# within it (a night and a morning included), and a conversation nobody answered for that long goes
# back to the AI instead of leaving the customer's next message unanswered forever. A shorter time
# (minutes, an hour) would give the AI back conversations a person is still about to take overnight.
HANDBACK_AFTER_SECONDS = 86400.0


class HandbackSettings(BaseSettings):
    # A handed-over conversation with no operator message (nor take-over) for this long goes back to
    # the AI by itself, through the sweep (0: never).
    handback_after_seconds: float = Field(
        HANDBACK_AFTER_SECONDS, ge=0, validation_alias=AliasChoices("WAYPOST_HANDBACK_AFTER_SECONDS")
    )
