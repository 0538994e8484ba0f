"""The settings of turns (README "Turns"), a part of waypost.settings.Settings kept in its own module."""

from __future__ import annotations

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings

# 2 s: long enough for the next line of someone typing a thought line by line, short enough not to
# feel like silence (hermes-agent cut its WhatsApp window from 5 s to 1 s after "5 seconds of dead
# silence" reports; respond.io and BuilderBot suggest 3 s). Capped at 8 s however long the burst.
QUIET_SECONDS = 2.0
MAX_WAIT_SECONDS = 8.0


class TurnSettings(BaseSettings):
    # Messages of one conversation closer together than this form one turn, answered by one reply
    # (re-armed by each message); 0 answers every message on its own.
    turn_quiet_seconds: float = Field(
        QUIET_SECONDS, ge=0, le=60, validation_alias=AliasChoices("WAYPOST_TURN_QUIET_SECONDS")
    )
    # However long the burst goes on, its reply is asked for this long after its first message.
    turn_max_wait_seconds: float = Field(
        MAX_WAIT_SECONDS, gt=0, le=300, validation_alias=AliasChoices("WAYPOST_TURN_MAX_WAIT_SECONDS")
    )

    @property
    def turn_window(self) -> tuple[float, float]:
        """The quiet window and the maximum wait, in seconds, as the webhook's statements take them."""
        return (self.turn_quiet_seconds, self.turn_max_wait_seconds)

    @model_validator(mode="after")
    def _max_wait_covers_window(self) -> TurnSettings:
        if self.turn_quiet_seconds > self.turn_max_wait_seconds:
            # not a ValueError: pydantic's message would quote every setting's input, secrets included
            from waypost.settings import ConfigurationError

            raise ConfigurationError("WAYPOST_TURN_MAX_WAIT_SECONDS must be at least WAYPOST_TURN_QUIET_SECONDS")
        return self
