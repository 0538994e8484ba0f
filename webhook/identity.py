"""What a system message says about its sender's identifiers: a new phone number, a new BSUID, and
the ones they replace (docs/whatsapp.md, "System messages")."""

from __future__ import annotations

import dataclasses
from typing import Any

CHANGES = ("user_changed_number", "user_changed_user_id")


@dataclasses.dataclass(frozen=True)
class IdentityChange:
    new_wa_id: str | None = None
    new_user_id: str | None = None
    previous_user_id: str | None = None  # the BSUID being replaced: who the sender was
    previous_wa_id: str | None = None  # legacy `customer`: the number being replaced


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def identity_change(message_type: str, system: Any) -> IdentityChange:
    """A changed number also regenerates the BSUID: `user_changed_number` carries the new number in
    `system.wa_id` and the new BSUID in `system.user_id`, beside `system.previous_user_id`;
    `user_changed_user_id` carries the BSUID pair only. Anything else changes nothing."""
    if message_type != "system" or not isinstance(system, dict) or system.get("type") not in CHANGES:
        return IdentityChange()
    number_changed = system.get("type") == "user_changed_number"
    return IdentityChange(
        new_wa_id=(_text(system.get("wa_id")) or _text(system.get("new_wa_id"))) if number_changed else None,
        new_user_id=_text(system.get("user_id")) or _text(system.get("new_user_id")) or _text(system.get("user")),
        previous_user_id=_text(system.get("previous_user_id")),
        previous_wa_id=_text(system.get("customer")),
    )
