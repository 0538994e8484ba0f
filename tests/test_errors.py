"""Domain errors: each class has a stable code, a default message and one HTTP status, and the
envelope is built in one place. No database, no server."""

from __future__ import annotations

import ast
import json
from pathlib import Path

from waypost import errors
from waypost.logs import request_id_var
from webhook import payload
from webhook.errors import STATUS, error_response, status_of

ROOT = Path(__file__).resolve().parent.parent

# The contract clients read: changing a code or a status is an API change, not a refactoring.
CONTRACT: dict[type[errors.WaypostError], tuple[str, int]] = {
    errors.BadInput: ("BAD_INPUT", 400),
    errors.BadFilter: ("BAD_FILTER", 400),
    errors.BadTime: ("BAD_TIME", 400),
    errors.InvalidBody: ("BAD_REQUEST", 422),
    payload.PayloadError: ("BAD_PAYLOAD", 400),
    errors.NotFound: ("NOT_FOUND", 404),
    errors.Conflict: ("CONFLICT", 409),
    errors.WindowClosed: ("WINDOW_CLOSED", 409),
    errors.ContactHasLiveConversation: ("CONTACT_HAS_LIVE_CONVERSATION", 409),
    errors.BlockPending: ("BLOCK_PENDING", 409),
    errors.BodyTooLarge: ("BODY_TOO_LARGE", 413),
    errors.FileTooLarge: ("FILE_TOO_LARGE", 413),
    errors.UnsupportedFile: ("UNSUPPORTED_FILE", 415),
    errors.Unauthorized: ("UNAUTHORIZED", 401),
    errors.Unauthenticated: ("UNAUTHENTICATED", 401),
    errors.CsrfRefused: ("CSRF", 403),
    errors.SignatureMissing: ("BAD_SIGNATURE", 401),
    errors.SignatureInvalid: ("BAD_SIGNATURE", 403),
    errors.CronDisabled: ("CRON_DISABLED", 503),
    errors.InboxDisabled: ("INBOX_DISABLED", 503),
    errors.MetricsOff: ("METRICS_OFF", 404),
    errors.ProcessingFailed: ("PROCESSING_FAILED", 500),
    errors.UnusableCredentials: ("SIGN_IN_REFUSED", 400),
    errors.WrongCredentials: ("SIGN_IN_REFUSED", 401),
    errors.TooManySignIns: ("SIGN_IN_REFUSED", 429),
    errors.DatabaseUnavailable: ("DB_UNAVAILABLE", 503),
    errors.MediaStoreUnavailable: ("MEDIA_STORE_UNAVAILABLE", 503),
    errors.SchemaMismatch: ("DB_MISMATCH", 500),
    errors.TemplateSyncFailed: ("TEMPLATE_SYNC_FAILED", 502),
    errors.TemplateUnavailable: ("TEMPLATE_UNAVAILABLE", 409),
    errors.MarketingRefused: ("MARKETING_OPTED_OUT", 409),
    errors.TemplateParameters: ("TEMPLATE_PARAMETERS", 422),
    errors.TemplateDraftInvalid: ("TEMPLATE_DRAFT_INVALID", 422),
    errors.TemplateExists: ("TEMPLATE_EXISTS", 409),
    errors.TemplatesOff: ("TEMPLATES_OFF", 503),
}
# Bases nobody raises as such, and the CLI's operator errors (never answered over HTTP).
NOT_ANSWERED = {errors.WaypostError, errors.BadRequest, errors.BadSignature, errors.Disabled, errors.SignInRefused}


def every_error_class() -> set[type[errors.WaypostError]]:
    found: set[type[errors.WaypostError]] = set()
    pending = [errors.WaypostError]
    while pending:
        cls = pending.pop()
        found.add(cls)
        pending.extend(cls.__subclasses__())
    return found


def example(cls: type[errors.WaypostError]) -> errors.WaypostError:
    if cls in (errors.BodyTooLarge, errors.FileTooLarge):
        return cls(4096)
    if cls is errors.TooManySignIns:
        return cls(retry_after=3)
    if cls is errors.SchemaMismatch:
        return cls(["a problem"])
    if cls is errors.TemplateDraftInvalid:
        return cls({"name": "only lowercase letters, digits and underscores"})
    return cls()


def test_every_error_has_a_code_a_default_message_and_a_status() -> None:
    for cls in every_error_class():
        assert cls.__dict__.get("__doc__"), f"{cls.__name__} needs a docstring: it is the default message"
        assert cls.code.isupper(), cls
        if cls in NOT_ANSWERED or issubclass(cls, errors.OperatorError):
            continue
        assert cls in CONTRACT, f"{cls.__name__}: add its code and status to CONTRACT (and to STATUS if new)"
        exc = example(cls)
        assert (exc.code, status_of(exc)) == CONTRACT[cls], cls
        assert str(exc), cls


def test_the_status_table_names_only_domain_errors() -> None:
    assert all(issubclass(cls, errors.WaypostError) for cls in STATUS)
    assert status_of(errors.OperatorExists()) == 409 and status_of(errors.NoSuchOperator()) == 404


def test_the_envelope_carries_code_message_request_id_and_extras() -> None:
    token = request_id_var.set("req-1")
    try:
        response = error_response(errors.SchemaMismatch(["x"]), 503)
        refused = error_response(payload.PayloadError("no", refused=[{"reason": "r"}]))
    finally:
        request_id_var.reset(token)
    assert response.status_code == 503
    assert json.loads(response.body) == {
        "ok": False,
        "code": "DB_MISMATCH",
        "error": "the database schema does not match this version of Waypost; run `waypost migrate`",
        "request_id": "req-1",
        "problems": ["x"],
    }
    assert refused.status_code == 400 and json.loads(refused.body)["refused"] == [{"reason": "r"}]


def test_the_envelope_is_built_in_one_place() -> None:
    """No module but webhook/errors.py writes `"ok": False` (the data layer raises, the app renders)."""
    builders = []
    for path in (ROOT / "webhook").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Dict) and any(
                isinstance(k, ast.Constant) and k.value == "ok" and isinstance(v, ast.Constant) and v.value is False
                for k, v in zip(node.keys, node.values, strict=True)
            ):
                builders.append(str(path.relative_to(ROOT)))
    assert builders == ["webhook/errors.py"]
