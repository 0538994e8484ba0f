"""Waypost's domain errors: what went wrong, as a stable machine code and a sentence, never as an
HTTP status. Whoever finds the problem raises one (the inbox store, sign-in, operator accounts, the
payload parser); the web app maps each class to a status in one table (`webhook/errors.py`) and
renders it once, so the data layer does not know it is behind HTTP. A class's docstring is its
default message.

The hierarchy:

* WaypostError                      ERROR
  + BadRequest                      BAD_REQUEST
    - BadInput                      BAD_INPUT
    - BadFilter                     BAD_FILTER
    - BadTime                       BAD_TIME
    - InvalidBody                   BAD_REQUEST (a body that does not fit the endpoint's schema)
    - PayloadError                  BAD_PAYLOAD (webhook/payload.py)
    - UnsupportedFile               UNSUPPORTED_FILE (a type Meta does not send, or bytes that are not it)
    - TemplateDraftInvalid          TEMPLATE_DRAFT_INVALID (a drafted template Meta would refuse; carries problems)
  + NotFound                        NOT_FOUND
  + Conflict                        CONFLICT
    - WindowClosed                  WINDOW_CLOSED
    - ContactHasLiveConversation    CONTACT_HAS_LIVE_CONVERSATION
    - BlockPending                  BLOCK_PENDING (a block or unblock still waits for Meta)
    - TemplateUnavailable           TEMPLATE_UNAVAILABLE (no such approved template)
    - MarketingRefused              MARKETING_OPTED_OUT (a marketing template to an opted-out contact)
    - TemplateExists                TEMPLATE_EXISTS (a drafted template's name and language are taken)
  + BodyTooLarge                    BODY_TOO_LARGE
    - FileTooLarge                  FILE_TOO_LARGE (over Meta's limit for the kind)
  + Unauthorized                    UNAUTHORIZED (a missing or wrong bearer secret: cron, metrics)
    - Unauthenticated               UNAUTHENTICATED (no live inbox session)
  + CsrfRefused                     CSRF
  + BadSignature                    BAD_SIGNATURE
    - SignatureMissing
    - SignatureInvalid
  + Disabled                        (a feature its setting leaves off)
    - CronDisabled                  CRON_DISABLED
    - InboxDisabled                 INBOX_DISABLED
    - MetricsOff                    METRICS_OFF
    - TemplatesOff                  TEMPLATES_OFF (no WHATSAPP_BUSINESS_ACCOUNT_ID to submit templates to)
  + ProcessingFailed                PROCESSING_FAILED
  + SignInRefused                   SIGN_IN_REFUSED (the sign-in form shows the message)
    - UnusableCredentials
    - WrongCredentials
    - TooManySignIns                (carries retry_after)
  + OperatorError                   OPERATOR (what `waypost operator ...` reports)
    - BadOperatorInput              BAD_INPUT (also a BadRequest)
    - NoSuchOperator                NOT_FOUND (also a NotFound)
    - OperatorExists                CONFLICT (also a Conflict)
  + DatabaseUnavailable             DB_UNAVAILABLE
  + MediaStoreUnavailable           MEDIA_STORE_UNAVAILABLE (the S3-compatible store did not answer)
  + SchemaMismatch                  DB_MISMATCH (carries the problems)
  + TemplateSyncFailed              TEMPLATE_SYNC_FAILED (Meta's template list could not be read whole)
"""

from __future__ import annotations

from typing import ClassVar


class WaypostError(Exception):
    """Waypost refused or failed."""

    code: ClassVar[str] = "ERROR"

    def __init__(self, message: str | None = None, **extra: object) -> None:
        super().__init__(message or " ".join((type(self).__doc__ or "").split()))
        self.extra = extra  # what the JSON envelope carries beside code, error and request_id

    @property
    def message(self) -> str:
        return str(self)


class BadRequest(WaypostError):
    """The request cannot be carried out as it is."""

    code = "BAD_REQUEST"


class BadInput(BadRequest):
    """Input that cannot be stored or sent as it is (a NUL character, say)."""

    code = "BAD_INPUT"


class BadFilter(BadRequest):
    """Not a known conversation filter."""

    code = "BAD_FILTER"


class BadTime(BadRequest):
    """Not a usable time."""

    code = "BAD_TIME"


class InvalidBody(BadRequest):
    """The body does not fit the endpoint's schema."""

    code = "BAD_REQUEST"


class UnsupportedFile(BadRequest):
    """WhatsApp cannot send this file."""

    code = "UNSUPPORTED_FILE"


class NotFound(WaypostError):
    """Not found."""

    code = "NOT_FOUND"

    @classmethod
    def of(cls, what: str) -> NotFound:
        """'<what> not found': the inbox pages show `what` on their missing page."""
        return cls(f"{what} not found")

    @property
    def what(self) -> str:
        return self.message.removesuffix(" not found")


class Conflict(WaypostError):
    """the conversation is not in a state that allows this"""

    code = "CONFLICT"


class WindowClosed(Conflict):
    """the 24-hour customer service window is closed: the contact has not written in the last 24 hours,
    and WhatsApp only delivers template messages until they do"""

    code = "WINDOW_CLOSED"


class ContactHasLiveConversation(Conflict):
    """this contact wrote again since the conversation was deleted, and that newer conversation is
    live: delete it first to restore this one"""

    code = "CONTACT_HAS_LIVE_CONVERSATION"


class BlockPending(Conflict):
    """a block or unblock of this contact is still waiting for Meta's answer, or the conversation is
    deleted"""

    code = "BLOCK_PENDING"


class BodyTooLarge(WaypostError):
    """The request body is larger than this endpoint's limit."""

    code = "BODY_TOO_LARGE"

    def __init__(self, limit: int, message: str | None = None) -> None:
        super().__init__(message or f"the request body is larger than this endpoint's {limit} byte limit")
        self.limit = limit


class FileTooLarge(BodyTooLarge):
    """The file is larger than WhatsApp allows for its kind."""

    code = "FILE_TOO_LARGE"

    def __init__(self, limit: int, message: str | None = None) -> None:
        super().__init__(limit, message or " ".join((type(self).__doc__ or "").split()))


class Unauthorized(WaypostError):
    """Not authorised."""

    code = "UNAUTHORIZED"


class Unauthenticated(Unauthorized):
    """sign in to the inbox first"""

    code = "UNAUTHENTICATED"


class CsrfRefused(WaypostError):
    """missing or wrong CSRF token; reload the page"""

    code = "CSRF"


class BadSignature(WaypostError):
    """X-Hub-Signature-256 is invalid"""

    code = "BAD_SIGNATURE"


class SignatureMissing(BadSignature):
    """X-Hub-Signature-256 is missing"""


class SignatureInvalid(BadSignature):
    """X-Hub-Signature-256 is invalid"""


class Disabled(WaypostError):
    """This feature is off."""

    code = "DISABLED"


class CronDisabled(Disabled):
    """CRON_SECRET is not set: the cron endpoint is off"""

    code = "CRON_DISABLED"


class InboxDisabled(Disabled):
    """the operator inbox is off: set WAYPOST_SESSION_SECRET (32+ characters)"""

    code = "INBOX_DISABLED"


class MetricsOff(Disabled):
    """metrics are off: set WAYPOST_METRICS_TOKEN to scrape /metrics"""

    code = "METRICS_OFF"


class ProcessingFailed(WaypostError):
    """the webhook could not be stored; it will be retried"""

    code = "PROCESSING_FAILED"


class SignInRefused(WaypostError):
    """The sign-in was refused."""

    code = "SIGN_IN_REFUSED"


class UnusableCredentials(SignInRefused):
    """The email or the password contains characters that cannot be used."""


class WrongCredentials(SignInRefused):
    """Wrong email or password."""


class TooManySignIns(SignInRefused):
    """Too many failed sign-ins. Try again later."""

    def __init__(self, retry_after: int) -> None:
        super().__init__()
        self.retry_after = retry_after


class OperatorError(WaypostError):
    """The operator account cannot be changed so."""

    code = "OPERATOR"


class BadOperatorInput(OperatorError, BadRequest):
    """Not a usable email or password."""

    code = "BAD_INPUT"


class NoSuchOperator(OperatorError, NotFound):
    """No such operator."""

    code = "NOT_FOUND"


class OperatorExists(OperatorError, Conflict):
    """The operator exists already."""

    code = "CONFLICT"


class DatabaseUnavailable(WaypostError):
    """the database cannot be reached"""

    code = "DB_UNAVAILABLE"


class MediaStoreUnavailable(WaypostError):
    """the media store cannot be reached"""

    code = "MEDIA_STORE_UNAVAILABLE"


class SchemaMismatch(WaypostError):
    """the database schema does not match this version of Waypost; run `waypost migrate`"""

    code = "DB_MISMATCH"

    def __init__(self, problems: list[str]) -> None:
        super().__init__(problems=problems)
        self.problems = problems


class TemplateSyncFailed(WaypostError):
    """the message templates could not be read from Meta; nothing was changed"""

    code = "TEMPLATE_SYNC_FAILED"


class TemplateUnavailable(Conflict):
    """no approved template of that name and language: run `waypost templates sync`, or pick another"""

    code = "TEMPLATE_UNAVAILABLE"


class MarketingRefused(Conflict):
    """the contact opted out of marketing messages (or is blocked): a marketing template cannot go to them"""

    code = "MARKETING_OPTED_OUT"


class TemplateParameters(InvalidBody):
    """the template's parameters do not fit it: WhatsApp would refuse the send (error 132000)"""

    code = "TEMPLATE_PARAMETERS"


# Templates drafted in the inbox (webhook/inbox/template_drafts.py)


class TemplateDraftInvalid(BadRequest):
    """the template draft has what Meta would refuse"""

    code = "TEMPLATE_DRAFT_INVALID"

    def __init__(self, problems: dict[str, str]) -> None:
        # the JSON envelope carries {field: message} as `problems`, the draft form shows each by its field
        super().__init__("; ".join(f"{field}: {message}" for field, message in problems.items()), problems=problems)
        self.problems = problems


class TemplateExists(Conflict):
    """a template of that name and language exists already (or is being submitted): pick another name"""

    code = "TEMPLATE_EXISTS"


class TemplatesOff(Disabled):
    """templates cannot be submitted: set WHATSAPP_BUSINESS_ACCOUNT_ID"""

    code = "TEMPLATES_OFF"
