"""The WhatsApp message kinds Waypost sends, and Meta's limits for each (docs/whatsapp.md, "Sending
other kinds"), checked before anything is sent: a message Meta would refuse is refused here, with a
reason an operator or a rules-file author can act on, not after a round trip and a failed status.

Shared by the web app (operator sends), the worker (AI answers) and the fake Graph API.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

MB = 1024 * 1024
# Meta's size limits per media kind (docs/whatsapp.md): inbound downloads and outbound uploads.
MEDIA_SIZE_LIMITS = {"image": 5 * MB, "audio": 16 * MB, "video": 16 * MB, "document": 100 * MB, "sticker": 500 * 1024}
# The MIME types Meta accepts for each kind it sends (docs/whatsapp.md, "Supported media types").
OUTBOUND_MEDIA_TYPES: dict[str, frozenset[str]] = {
    "image": frozenset({"image/jpeg", "image/png"}),
    "audio": frozenset({"audio/aac", "audio/amr", "audio/mpeg", "audio/mp4", "audio/ogg"}),
    "video": frozenset({"video/mp4", "video/3gpp"}),
    "document": frozenset(
        {
            "text/plain",
            "application/pdf",
            "application/vnd.ms-excel",
            "application/msword",
            "application/vnd.ms-powerpoint",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            "application/vnd.openxmlformats-officedocument.presentationml.presentation",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        }
    ),
    "sticker": frozenset({"image/webp"}),
}
CAPTION_MAX = 1024
TEXT_MAX = 4096


class InvalidMessage(ValueError):
    """A message Meta would refuse; the text says which limit it breaks."""


def _limit(n: int) -> StringConstraints:
    return StringConstraints(strip_whitespace=True, min_length=1, max_length=n)


# Non-empty text of at most N characters (after trimming), as Meta counts them.
Text20 = Annotated[str, _limit(20)]
Text24 = Annotated[str, _limit(24)]
Text60 = Annotated[str, _limit(60)]
Text72 = Annotated[str, _limit(72)]
Text200 = Annotated[str, _limit(200)]
Text256 = Annotated[str, _limit(256)]
Text1024 = Annotated[str, _limit(1024)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Body(_Strict):
    text: Text1024


class _Footer(_Strict):
    text: Text60


class _Header(_Strict):
    type: Literal["text"]
    text: Text60


class _Reply(_Strict):
    id: Text256
    title: Text20


class _Button(_Strict):
    type: Literal["reply"]
    reply: _Reply


class _Row(_Strict):
    id: Text200
    title: Text24
    description: Text72 | None = None


class _Section(_Strict):
    title: Text24 | None = None
    rows: list[_Row] = Field(min_length=1, max_length=10)


class _ButtonAction(_Strict):
    buttons: list[_Button] = Field(min_length=1, max_length=3)

    @model_validator(mode="after")
    def _unique(self) -> _ButtonAction:
        ids = [b.reply.id for b in self.buttons]
        titles = [b.reply.title for b in self.buttons]
        if len(set(ids)) != len(ids) or len(set(titles)) != len(titles):
            raise ValueError("reply buttons need distinct ids and distinct titles")
        return self


class _ListAction(_Strict):
    button: Text20
    sections: list[_Section] = Field(min_length=1, max_length=10)

    @model_validator(mode="after")
    def _rows(self) -> _ListAction:
        ids = [row.id for section in self.sections for row in section.rows]
        if len(ids) > 10:
            raise ValueError(f"a list has at most 10 rows in all, not {len(ids)}")
        if len(set(ids)) != len(ids):
            raise ValueError("list rows need distinct ids")
        if len(self.sections) > 1 and any(s.title is None for s in self.sections):
            raise ValueError("every section needs a title when there are several")
        return self


class _Interactive(_Strict):
    type: Literal["button", "list"]
    body: _Body
    header: _Header | None = None
    footer: _Footer | None = None
    action: dict[str, Any]  # checked against the type's own model in check_interactive


class _Reaction(_Strict):
    message_id: Text256
    emoji: Annotated[str, StringConstraints(max_length=16)]  # "" removes a reaction


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    message = str(first["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def check_interactive(content: Any) -> dict[str, Any]:
    """The interactive object cleaned (text trimmed), or InvalidMessage naming the broken limit."""
    try:
        message = _Interactive.model_validate(content)
        action_model = _ButtonAction if message.type == "button" else _ListAction
        action = action_model.model_validate(message.action).model_dump(exclude_none=True)
    except ValidationError as exc:
        raise InvalidMessage(f"interactive message: {_describe(exc)}") from exc
    return {**message.model_dump(exclude_none=True), "action": action}


def check_reaction(content: Any) -> dict[str, Any]:
    try:
        return _Reaction.model_validate(content).model_dump()
    except ValidationError as exc:
        raise InvalidMessage(f"reaction: {_describe(exc)}") from exc


def reply_buttons(body: str, buttons: list[tuple[str, str]], *, footer: str | None = None) -> dict[str, Any]:
    """An interactive reply-buttons object from (id, title) pairs, checked."""
    content: dict[str, Any] = {
        "type": "button",
        "body": {"text": body},
        "action": {"buttons": [{"type": "reply", "reply": {"id": i, "title": t}} for i, t in buttons]},
    }
    if footer:
        content["footer"] = {"text": footer}
    return check_interactive(content)


def list_message(
    body: str, button: str, rows: list[tuple[str, str, str | None]], *, section: str | None = None
) -> dict[str, Any]:
    """An interactive list object of one section from (id, title, description) rows, checked."""
    section_obj: dict[str, Any] = {
        "rows": [{"id": i, "title": t, **({"description": d} if d else {})} for i, t, d in rows]
    }
    if section:
        section_obj["title"] = section
    return check_interactive(
        {"type": "list", "body": {"text": body}, "action": {"button": button, "sections": [section_obj]}}
    )


def summary(kind: str, content: dict[str, Any] | None, body: str | None) -> str:
    """What the inbox and the AI's history show for an outbound message of `kind`."""
    if kind == "text" or not content:
        return body or ""
    if kind == "interactive":
        action = content.get("action", {})
        choices = [b["reply"]["title"] for b in action.get("buttons", [])] or [
            row["title"] for section in action.get("sections", []) for row in section.get("rows", [])
        ]
        return f"{content.get('body', {}).get('text', '')} [{' | '.join(choices)}]"
    return body or f"[{kind}]"
