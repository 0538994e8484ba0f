"""One rule for every secret setting: empty or whitespace is unset, and an empty token matches nothing."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import WebServer
from waypost.environment import env_name
from waypost.settings import SECRET_FIELDS, ConfigurationError, Settings, load_settings
from waypost.signing import tokens_equal

EVERY_SECRET = {
    "whatsapp_app_secret",
    "whatsapp_verify_token",
    "whatsapp_access_token",
    "cron_secret",
    "metrics_token",
    "session_secret",
    "openai_api_key",
    "s3_secret_access_key",
    "transcribe_api_key",
}


def test_the_rule_knows_every_secret_setting() -> None:
    assert SECRET_FIELDS == EVERY_SECRET


@pytest.mark.parametrize("field", sorted(SECRET_FIELDS))
def test_an_empty_or_blank_secret_is_an_unset_secret(field: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for blank in ("", "   ", "\t\n"):
        monkeypatch.setenv(env_name(field), blank)
        settings = load_settings()
        assert getattr(settings, field) is None, (field, blank)
        assert settings.secret(field) is None
        assert getattr(Settings(**{field: blank}), field) is None  # passed directly, as tests and tools do
    monkeypatch.setenv(env_name(field), "a-real-secret")
    assert load_settings().secret(field) == "a-real-secret"


def test_an_empty_token_never_matches() -> None:
    assert not tokens_equal("", "")
    assert not tokens_equal("", "secret")
    assert not tokens_equal(None, "secret")
    assert not tokens_equal("secret", "")
    assert not tokens_equal("secret", None)
    assert tokens_equal("secret", "secret")


def rebuilt(settings: Settings, **changes: Any) -> Settings:
    """The settings validated anew with `changes`, as if read from the environment."""
    return Settings(**{**settings.model_dump(), **changes})


def test_empty_secrets_close_what_they_guard(settings: Settings) -> None:
    # .env.example ships `CRON_SECRET=`: with it, `?token=` once answered 200 "Job runner triggered".
    blank = rebuilt(settings, cron_secret="", session_secret=" ", metrics_token="")
    with WebServer(blank) as web, httpx.Client(base_url=web.url) as client:
        for attempt in ("/api/cron/run-outbound-jobs?token=", "/api/cron/run-outbound-jobs"):
            answer = client.get(attempt)
            assert (answer.status_code, answer.json()["code"]) == (503, "CRON_DISABLED"), attempt
        inbox = client.get("/inbox")  # the app started; the inbox is off, as documented
        assert (inbox.status_code, inbox.json()["code"]) == (503, "INBOX_DISABLED")
        assert client.get("/metrics").json()["code"] == "METRICS_OFF"
    with WebServer(settings) as web, httpx.Client(base_url=web.url) as client:
        for attempt in ("?token=", "?token=%20"):
            assert client.get("/api/cron/run-outbound-jobs" + attempt).status_code == 401, attempt


def test_an_empty_verify_token_or_app_secret_stops_the_web_app(settings: Settings) -> None:
    for field in ("whatsapp_verify_token", "whatsapp_app_secret"):
        with pytest.raises(ConfigurationError):
            rebuilt(settings, **{field: "  "}).check_webhook_security()
    with pytest.raises(ConfigurationError, match="WHATSAPP_ACCESS_TOKEN"):
        rebuilt(settings, whatsapp_access_token="").check_sending()


@pytest.mark.parametrize(
    ("url_var", "key_var"),
    [
        ("WHATSAPP_API_BASE", "WHATSAPP_ACCESS_TOKEN"),
        ("OPENAI_BASE_URL", "OPENAI_API_KEY"),
        ("WAYPOST_TRANSCRIBE_URL", "WAYPOST_TRANSCRIBE_API_KEY"),
    ],
)
def test_a_key_never_goes_over_plain_http_to_another_host(
    url_var: str, key_var: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(key_var, "sk-secret-value")
    for url in (
        "https://models.example.com/v1",
        "http://127.0.0.1:11434/v1",
        "http://localhost:9/v1",
        "http://[::1]:9",
    ):
        monkeypatch.setenv(url_var, url)
        Settings()
    monkeypatch.setenv(url_var, "http://10.0.0.5:11434/v1")
    with pytest.raises(ConfigurationError, match=f"{url_var} is plain http:// to '10.0.0.5'") as refused:
        Settings()
    assert "sk-secret-value" not in str(refused.value)
    monkeypatch.setenv(key_var, "")  # no key: nothing to leak, a LAN model server is fine
    Settings()


def test_webhook_statements_beyond_the_pool_are_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WAYPOST_DB_POOL_MAX_SIZE", "4")
    monkeypatch.setenv("WAYPOST_WEBHOOK_STATEMENTS", "5")
    with pytest.raises(ConfigurationError, match=r"WAYPOST_WEBHOOK_STATEMENTS \(5\) is more than"):
        load_settings()
    monkeypatch.setenv("WAYPOST_WEBHOOK_STATEMENTS", "4")
    assert load_settings().webhook_statements == 4
