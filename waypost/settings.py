"""The one settings object, read from the environment here and nowhere else.

Every option is documented in the README's "Settings" table; keep the two in step.
"""

from __future__ import annotations

import ipaddress
import json
import re
import typing
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from waypost import consent_defaults
from waypost.settings_handback import HandbackSettings
from waypost.settings_handover import HandoverSettings
from waypost.settings_turns import TurnSettings

# S3's bucket naming rules (lowercase, digits, dots, hyphens; 3 to 63 characters)
S3_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


class ConfigurationError(RuntimeError):
    """A setting is missing or unsafe; raised at startup, never at the first request."""


def _env(name: str) -> AliasChoices:
    return AliasChoices(name)


class Settings(TurnSettings, HandbackSettings, HandoverSettings, BaseSettings):
    model_config = SettingsConfigDict(populate_by_name=True, extra="ignore", frozen=True)

    database_url: str | None = Field(None, validation_alias=_env("DATABASE_URL"))
    whatsapp_app_secret: SecretStr | None = Field(None, validation_alias=_env("WHATSAPP_APP_SECRET"))
    whatsapp_verify_token: SecretStr | None = Field(None, validation_alias=_env("WHATSAPP_VERIFY_TOKEN"))
    # Loudly named on purpose: only for local development against unsigned traffic.
    dangerously_skip_signature_check: bool = Field(
        False, validation_alias=_env("WAYPOST_DANGEROUSLY_SKIP_SIGNATURE_CHECK")
    )
    max_body_bytes: int = Field(4 * 1024 * 1024, gt=0, validation_alias=_env("WAYPOST_MAX_BODY_BYTES"))
    host: str = Field("127.0.0.1", validation_alias=_env("WAYPOST_HOST"))
    port: int = Field(8000, ge=0, le=65535, validation_alias=_env("WAYPOST_PORT"))
    # The reverse proxies whose X-Forwarded-For / X-Forwarded-Proto are believed (addresses or
    # networks, comma-separated). None by default: a client's own headers grant nothing.
    trusted_proxies: Annotated[tuple[str, ...], NoDecode] = Field((), validation_alias=_env("WAYPOST_TRUSTED_PROXIES"))
    db_pool_min_size: int = Field(2, ge=1, validation_alias=_env("WAYPOST_DB_POOL_MIN_SIZE"))
    db_pool_max_size: int = Field(10, ge=1, validation_alias=_env("WAYPOST_DB_POOL_MAX_SIZE"))
    # How long a request or a job waits for a database connection before it is refused (503) or retried.
    db_pool_timeout: float = Field(10.0, gt=0, validation_alias=_env("WAYPOST_DB_POOL_TIMEOUT"))
    # The common webhook's statements one web process runs at once; POSTs that come while all are busy
    # wait, and the next statement stores them together (webhook/group_commit.py).
    webhook_statements: int = Field(2, ge=1, validation_alias=_env("WAYPOST_WEBHOOK_STATEMENTS"))
    schema_check_interval: float = Field(30.0, gt=0, validation_alias=_env("WAYPOST_SCHEMA_CHECK_INTERVAL"))
    worker_concurrency: int = Field(10, ge=1, validation_alias=_env("WAYPOST_WORKER_CONCURRENCY"))
    worker_poll_interval: float = Field(1.0, gt=0, validation_alias=_env("WAYPOST_WORKER_POLL_INTERVAL"))
    worker_nice: int = Field(10, ge=0, le=19, validation_alias=_env("WAYPOST_WORKER_NICE"))
    log_level: str = Field("INFO", validation_alias=_env("WAYPOST_LOG_LEVEL"))
    log_format: Literal["text", "json"] = Field("text", validation_alias=_env("WAYPOST_LOG_FORMAT"))
    # Message texts stay out of the logs unless this is on (debugging only).
    log_bodies: bool = Field(False, validation_alias=_env("WAYPOST_LOG_BODIES"))
    cron_secret: SecretStr | None = Field(None, validation_alias=_env("CRON_SECRET"))

    # Sending through the WhatsApp Cloud API (Graph API)
    whatsapp_api_base: str = Field("https://graph.facebook.com", validation_alias=_env("WHATSAPP_API_BASE"))
    whatsapp_api_version: str = Field("v25.0", validation_alias=_env("WHATSAPP_API_VERSION"))
    whatsapp_access_token: SecretStr | None = Field(None, validation_alias=_env("WHATSAPP_ACCESS_TOKEN"))
    # The WhatsApp Business Account whose message templates `waypost templates sync` reads.
    whatsapp_business_account_id: str | None = Field(None, validation_alias=_env("WHATSAPP_BUSINESS_ACCOUNT_ID"))
    # The sweep syncs the account's templates when the last sync is this old (0: never; needs the account id).
    template_sync_seconds: float = Field(3600.0, ge=0, validation_alias=_env("WAYPOST_TEMPLATE_SYNC_SECONDS"))
    send_connect_timeout: float = Field(5.0, gt=0, validation_alias=_env("WAYPOST_SEND_CONNECT_TIMEOUT"))
    send_read_timeout: float = Field(20.0, gt=0, validation_alias=_env("WAYPOST_SEND_READ_TIMEOUT"))
    reply_max_attempts: int = Field(6, ge=1, validation_alias=_env("WAYPOST_REPLY_MAX_ATTEMPTS"))
    reply_max_retry_seconds: float = Field(900.0, gt=0, validation_alias=_env("WAYPOST_REPLY_MAX_RETRY_SECONDS"))
    retry_base_seconds: float = Field(2.0, gt=0, validation_alias=_env("WAYPOST_RETRY_BASE_SECONDS"))
    unknown_grace_seconds: float = Field(600.0, ge=0, validation_alias=_env("WAYPOST_UNKNOWN_GRACE_SECONDS"))
    window_margin_seconds: float = Field(300.0, ge=0, validation_alias=_env("WAYPOST_WINDOW_MARGIN_SECONDS"))
    # An outbound message accepted by Meta with no delivered/read status after this long is flagged
    # "not delivered" by the sweep (a number without a payment method: accepted, never delivered).
    undelivered_after_seconds: float = Field(900.0, gt=0, validation_alias=_env("WAYPOST_UNDELIVERED_AFTER_SECONDS"))
    # A monthly budget of service messages per business number (0: none): at the threshold the
    # operators are told once; at the cap the AI stops answering and leaves conversations to them.
    service_budget_threshold: int = Field(0, ge=0, validation_alias=_env("WAYPOST_SERVICE_BUDGET_THRESHOLD"))
    service_budget_cap: int = Field(0, ge=0, validation_alias=_env("WAYPOST_SERVICE_BUDGET_CAP"))
    # Read receipts and the typing indicator on the contact's phone (worker/receipts.py). `operator_open`:
    # a message the AI answers is marked read when it starts answering, one left to an operator when an
    # operator opens its conversation; `ai`: only the former; `never`: none (and no typing indicator,
    # which Meta only shows with a read receipt).
    read_receipts: Literal["operator_open", "ai", "never"] = Field(
        "operator_open", validation_alias=_env("WAYPOST_READ_RECEIPTS")
    )
    typing_indicator: bool = Field(True, validation_alias=_env("WAYPOST_TYPING_INDICATOR"))
    # Meta drops the indicator after 25 s: it is sent again this often while the AI is still working.
    typing_refresh_seconds: float = Field(20.0, gt=0, le=25, validation_alias=_env("WAYPOST_TYPING_REFRESH_SECONDS"))
    # The indicator goes out only for an answer not ready this soon: an immediate one (the rules provider)
    # is sent at once, its message marked read right after it; 0: always, the reply waiting for Meta's answer.
    typing_after_seconds: float = Field(0.25, ge=0, le=5, validation_alias=_env("WAYPOST_TYPING_AFTER_SECONDS"))
    # One read/typing call's whole budget: it never holds up a reply longer than this (or 1 s at its end).
    read_receipt_timeout: float = Field(3.0, gt=0, le=30, validation_alias=_env("WAYPOST_READ_RECEIPT_TIMEOUT"))
    # Inbound media: the hosts a media URL from Meta may point at (the access token goes only there;
    # comma-separated host names), and how many attempts a download gets before it is given up.
    media_hosts: Annotated[tuple[str, ...], NoDecode] = Field(
        ("lookaside.fbsbx.com",), validation_alias=_env("WHATSAPP_MEDIA_HOSTS")
    )
    media_max_attempts: int = Field(6, ge=1, validation_alias=_env("WAYPOST_MEDIA_MAX_ATTEMPTS"))
    # The longest one download attempt may take, lookup to last byte: a URL that hangs or drips is cut
    # off and retried with a fresh URL (each read also has WAYPOST_SEND_READ_TIMEOUT).
    media_download_timeout: float = Field(600.0, gt=0, validation_alias=_env("WAYPOST_MEDIA_DOWNLOAD_TIMEOUT"))
    # Where file bytes go: empty = PostgreSQL (media_chunks); `s3://bucket/prefix` = an S3-compatible
    # object store (waypost.media_store), reached at WAYPOST_S3_ENDPOINT_URL (empty: AWS).
    media_store_url: str = Field("", validation_alias=_env("WAYPOST_MEDIA_STORE_URL"))
    s3_endpoint_url: str | None = Field(None, validation_alias=_env("WAYPOST_S3_ENDPOINT_URL"))
    s3_region: str = Field("us-east-1", validation_alias=_env("WAYPOST_S3_REGION"))
    s3_access_key_id: str | None = Field(None, validation_alias=_env("WAYPOST_S3_ACCESS_KEY_ID"))
    s3_secret_access_key: SecretStr | None = Field(None, validation_alias=_env("WAYPOST_S3_SECRET_ACCESS_KEY"))
    media_retention_days: float = Field(90.0, gt=0, validation_alias=_env("WAYPOST_MEDIA_RETENTION_DAYS"))
    # The AI's answer to a voice note, or a photo, video or document without a caption, which it cannot
    # read: the message is also left to an operator. Empty: no answer, only the operator is told.
    media_unreadable_reply: str = Field(
        "Thanks! I can only read text messages here, so a member of our team will look at this and get back to you.",
        validation_alias=_env("WAYPOST_MEDIA_UNREADABLE_REPLY"),
    )

    # Consent (README "Consent"): a text message that is only one of these words (any case, punctuation
    # and emoji around it ignored; never a word inside a sentence) opts its contact out of, or back into,
    # marketing messages, and is answered with the confirmation instead of the AI (empty: no answer).
    opt_out_words: Annotated[tuple[str, ...], NoDecode] = Field(
        consent_defaults.OPT_OUT_WORDS, validation_alias=_env("WAYPOST_OPT_OUT_WORDS")
    )
    opt_in_words: Annotated[tuple[str, ...], NoDecode] = Field(
        consent_defaults.OPT_IN_WORDS, validation_alias=_env("WAYPOST_OPT_IN_WORDS")
    )
    opt_out_confirmation: str = Field(
        consent_defaults.OPT_OUT_CONFIRMATION, validation_alias=_env("WAYPOST_OPT_OUT_CONFIRMATION")
    )
    opt_in_confirmation: str = Field(
        consent_defaults.OPT_IN_CONFIRMATION, validation_alias=_env("WAYPOST_OPT_IN_CONFIRMATION")
    )
    # The confirmations in other languages, by the language of the word the contact wrote (a JSON
    # object, {"es": "..."}); a language with none here gets the one above.
    opt_out_confirmations: Annotated[dict[str, str], NoDecode] = Field(
        consent_defaults.OPT_OUT_CONFIRMATIONS, validation_alias=_env("WAYPOST_OPT_OUT_CONFIRMATIONS")
    )
    opt_in_confirmations: Annotated[dict[str, str], NoDecode] = Field(
        consent_defaults.OPT_IN_CONFIRMATIONS, validation_alias=_env("WAYPOST_OPT_IN_CONFIRMATIONS")
    )

    # Re-engagement (README "Message templates"): an AI reply that falls due after the 24-hour window
    # closed sends this approved template ("name:language") instead of being skipped. Empty: off.
    # What fills its body's {{1}}, {{2}}…, in order: `contact_name` or `text:FIXED`, comma-separated.
    # Checked when the worker starts (worker.reengage).
    reengage_template: str = Field("", validation_alias=_env("WAYPOST_REENGAGE_TEMPLATE"))
    reengage_parameters: Annotated[tuple[str, ...], NoDecode] = Field(
        (), validation_alias=_env("WAYPOST_REENGAGE_PARAMETERS")
    )

    # Sweep
    stalled_worker_seconds: float = Field(60.0, gt=0, validation_alias=_env("WAYPOST_STALLED_WORKER_SECONDS"))
    retention_days: float = Field(30.0, gt=0, validation_alias=_env("WAYPOST_RETENTION_DAYS"))

    # The orchestrator ("the AI")
    orchestrator: Literal["rules", "openai"] = Field("rules", validation_alias=_env("WAYPOST_ORCHESTRATOR"))
    rules_file: Path | None = Field(None, validation_alias=_env("WAYPOST_RULES_FILE"))
    # Files the AI may answer with (a price list PDF...): a rules file's `file = "name"`, or the model's
    # send_file tool. Each is checked against WhatsApp's document types and size when the worker starts.
    ai_files_dir: Path | None = Field(None, validation_alias=_env("WAYPOST_AI_FILES_DIR"))
    openai_base_url: str | None = Field(None, validation_alias=_env("OPENAI_BASE_URL"))
    openai_api_key: SecretStr | None = Field(None, validation_alias=_env("OPENAI_API_KEY"))
    openai_model: str | None = Field(None, validation_alias=_env("OPENAI_MODEL"))
    openai_timeout: float = Field(30.0, gt=0, validation_alias=_env("OPENAI_TIMEOUT"))
    openai_max_retries: int = Field(3, ge=0, validation_alias=_env("OPENAI_MAX_RETRIES"))
    openai_interactive: bool = Field(False, validation_alias=_env("OPENAI_INTERACTIVE"))
    system_prompt: str = Field(
        "You are the helpful WhatsApp assistant of this business. Answer briefly and politely, in the "
        "customer's language. If you cannot help, say that a person will follow up.",
        validation_alias=_env("WAYPOST_SYSTEM_PROMPT"),
    )
    history_messages: int = Field(10, ge=1, validation_alias=_env("WAYPOST_HISTORY_MESSAGES"))
    # Images reach the `openai` provider as image parts only when its model can see them, up to a size.
    openai_vision: bool = Field(False, validation_alias=_env("OPENAI_VISION"))
    openai_vision_max_bytes: int = Field(5 * 1024 * 1024, gt=0, validation_alias=_env("OPENAI_VISION_MAX_BYTES"))
    # The knowledge base (README "Knowledge base"): its text search language (a pg_ts_config name,
    # checked when the worker starts), the score a passage needs to count, how many reach the model,
    # and whether no passage above the score hands over (strict) or lets the AI answer anyway (lenient).
    kb_language: str = Field("english", min_length=1, validation_alias=_env("WAYPOST_KB_LANGUAGE"))
    kb_min_score: float = Field(0.3, ge=0, le=1, validation_alias=_env("WAYPOST_KB_MIN_SCORE"))
    kb_passages: int = Field(4, ge=1, le=20, validation_alias=_env("WAYPOST_KB_PASSAGES"))
    kb_grounding: Literal["strict", "lenient"] = Field("lenient", validation_alias=_env("WAYPOST_KB_GROUNDING"))
    # Handing over (README "Handing over"): phrases that ask for a person (`language:phrase`, anywhere
    # in a text message; empty: off), and the customer's message when the conversation is handed over.
    handover_words: Annotated[tuple[str, ...], NoDecode] = Field(
        consent_defaults.HANDOVER_WORDS, validation_alias=_env("WAYPOST_HANDOVER_WORDS")
    )
    handover_message: str = Field(consent_defaults.HANDOVER_MESSAGE, validation_alias=_env("WAYPOST_HANDOVER_MESSAGE"))
    # Voice notes: an OpenAI-compatible /audio/transcriptions endpoint (base URL with /v1; unset: off).
    # The key goes to that URL only.
    transcribe_url: str | None = Field(None, validation_alias=_env("WAYPOST_TRANSCRIBE_URL"))
    transcribe_model: str = Field("whisper-1", min_length=1, validation_alias=_env("WAYPOST_TRANSCRIBE_MODEL"))
    transcribe_api_key: SecretStr | None = Field(None, validation_alias=_env("WAYPOST_TRANSCRIBE_API_KEY"))
    transcribe_timeout: float = Field(60.0, gt=0, validation_alias=_env("WAYPOST_TRANSCRIBE_TIMEOUT"))

    # Operator inbox
    session_secret: SecretStr | None = Field(None, validation_alias=_env("WAYPOST_SESSION_SECRET"))
    session_max_age_seconds: int = Field(12 * 3600, gt=0, validation_alias=_env("WAYPOST_SESSION_MAX_AGE_SECONDS"))
    operator_reply_pauses_ai: bool = Field(True, validation_alias=_env("WAYPOST_OPERATOR_REPLY_PAUSES_AI"))
    # A message the business sends from the WhatsApp Business app (coexistence) pauses that conversation's AI
    pause_ai_on_phone_reply: bool = Field(True, validation_alias=_env("WAYPOST_PAUSE_AI_ON_PHONE_REPLY"))
    sign_in_max_failures: int = Field(5, ge=1, validation_alias=_env("WAYPOST_SIGN_IN_MAX_FAILURES"))
    sign_in_window_seconds: float = Field(
        900.0, gt=0, le=86400, validation_alias=_env("WAYPOST_SIGN_IN_WINDOW_SECONDS")
    )

    # Metrics (Prometheus text format)
    metrics_token: SecretStr | None = Field(None, validation_alias=_env("WAYPOST_METRICS_TOKEN"))
    worker_metrics_host: str = Field("127.0.0.1", validation_alias=_env("WAYPOST_WORKER_METRICS_HOST"))
    worker_metrics_port: int = Field(0, ge=0, le=65535, validation_alias=_env("WAYPOST_WORKER_METRICS_PORT"))

    @field_validator("*", mode="before")
    @classmethod
    def _empty_secret_is_unset(cls, value: Any, info: ValidationInfo) -> Any:
        """One rule for every secret: empty or whitespace means unset (`.env.example` ships `CRON_SECRET=`)."""
        if info.field_name in SECRET_FIELDS:
            text = value.get_secret_value() if isinstance(value, SecretStr) else value
            if text is None or (isinstance(text, str) and not text.strip()):
                return None
        return value

    @field_validator("s3_endpoint_url", "s3_access_key_id", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("media_hosts", mode="before")
    @classmethod
    def _host_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [item.strip().lower() for item in value.split(",") if item.strip()]
        return tuple(value)

    @field_validator("opt_out_words", "opt_in_words", "reengage_parameters", "handover_words", mode="before")
    @classmethod
    def _word_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [item.strip() for item in value.split(",") if item.strip()]
        return tuple(value)

    @field_validator("opt_out_confirmations", "opt_in_confirmations", mode="before")
    @classmethod
    def _by_language(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = json.loads(value) if value.strip() else {}
            except ValueError as exc:
                raise ValueError(f'a JSON object of language to text, e.g. {{"es": "..."}}: {exc}') from None
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise ValueError('a JSON object of language to text, e.g. {"es": "..."}')
        return {str(k).strip().lower().replace("-", "_"): v for k, v in value.items()}

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _proxy_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [item.strip() for item in value.split(",") if item.strip()]
        networks = []
        for item in value:
            try:
                # normalised (10.0.0.1/8 is 10.0.0.0/8): uvicorn reads networks strictly
                networks.append(str(ipaddress.ip_network(item, strict=False)))
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or network") from None
        return tuple(networks)

    @model_validator(mode="after")
    def _keys_only_over_tls(self) -> Settings:
        """A key never travels in clear text: plain http:// is for loopback (the fakes, a local model
        server) or for hosts that get no key."""
        pairs = (
            ("WHATSAPP_API_BASE", self.whatsapp_api_base, self.whatsapp_access_token),
            ("OPENAI_BASE_URL", self.openai_base_url, self.openai_api_key),
            ("WAYPOST_TRANSCRIBE_URL", self.transcribe_url, self.transcribe_api_key),
        )
        for name, url, key in pairs:
            if url and key is not None and not _encrypted_or_local(url):
                # not a ValueError: pydantic would quote every setting's input, the keys included
                raise ConfigurationError(
                    f"{name} is plain http:// to {urlsplit(url.strip()).hostname!r}: its key would travel "
                    "unencrypted. Use https://, or plain http only to this machine (localhost, 127.0.0.1, ::1)"
                )
        return self

    @model_validator(mode="after")
    def _webhook_statements_within_the_pool(self) -> Settings:
        # each statement holds a pool connection: more than the pool has would only wait for one
        if self.webhook_statements > self.db_pool_max_size:
            raise ConfigurationError(
                f"WAYPOST_WEBHOOK_STATEMENTS ({self.webhook_statements}) is more than WAYPOST_DB_POOL_MAX_SIZE "
                f"({self.db_pool_max_size}): each statement holds one of the pool's connections"
            )
        return self

    def require_database_url(self) -> str:
        if not self.database_url:
            raise ConfigurationError("DATABASE_URL is not set")
        return self.database_url

    def check_webhook_security(self) -> None:
        """Refuse to serve webhooks that nobody can authenticate."""
        if not self.whatsapp_verify_token:
            raise ConfigurationError("WHATSAPP_VERIFY_TOKEN is not set")
        if not self.whatsapp_app_secret and not self.dangerously_skip_signature_check:
            raise ConfigurationError(
                "WHATSAPP_APP_SECRET is not set. Set it to the Meta app secret, or, for local "
                "development only, set WAYPOST_DANGEROUSLY_SKIP_SIGNATURE_CHECK=1"
            )

    def check_sending(self) -> None:
        if not self.whatsapp_access_token:
            raise ConfigurationError("WHATSAPP_ACCESS_TOKEN is not set: the worker cannot send replies")

    def media_store(self) -> tuple[str, str] | None:
        """The S3 bucket and key prefix files go to, or None: PostgreSQL. Raises ConfigurationError
        for a URL or an S3 setting that cannot work, at start rather than at the first file."""
        url = self.media_store_url.strip()
        if not url or url in ("postgres", "postgresql"):
            return None
        parts = urlsplit(url)
        bucket, prefix = parts.netloc, parts.path.strip("/")
        if parts.scheme != "s3" or not S3_BUCKET.fullmatch(bucket) or parts.query or parts.fragment:
            raise ConfigurationError(
                f"WAYPOST_MEDIA_STORE_URL must be empty (PostgreSQL) or s3://bucket/prefix, not {url!r}"
            )
        if self.s3_endpoint_url is not None:
            endpoint = urlsplit(self.s3_endpoint_url)
            if endpoint.scheme not in ("http", "https") or not endpoint.hostname:
                raise ConfigurationError(
                    f"WAYPOST_S3_ENDPOINT_URL must be an http(s) URL, not {self.s3_endpoint_url!r}"
                )
        if (self.s3_access_key_id is None) != (self.s3_secret_access_key is None):
            raise ConfigurationError("set both WAYPOST_S3_ACCESS_KEY_ID and WAYPOST_S3_SECRET_ACCESS_KEY, or neither")
        if self.s3_endpoint_url is not None and self.s3_access_key_id is None:
            # Without them boto3 would look for AWS credentials (environment, ~/.aws) and sign
            # requests to another endpoint with them.
            raise ConfigurationError(
                "WAYPOST_S3_ENDPOINT_URL is set: set WAYPOST_S3_ACCESS_KEY_ID and WAYPOST_S3_SECRET_ACCESS_KEY "
                "for that endpoint too"
            )
        return bucket, (prefix + "/" if prefix else "")

    def check_inbox(self) -> bool:
        """Whether the operator inbox can run: it needs a session secret long enough to sign cookies."""
        if self.session_secret is None:
            return False
        if len(self.session_secret.get_secret_value()) < 32:
            raise ConfigurationError(
                "WAYPOST_SESSION_SECRET must be at least 32 characters (try `openssl rand -hex 32`)"
            )
        return True

    def secret(self, name: str) -> str | None:
        """The value of a secret setting, None when unset (never an empty string)."""
        value = getattr(self, name)
        return value.get_secret_value() if isinstance(value, SecretStr) else None

    def secret_values(self) -> list[str]:
        """Every secret this process knows, for the log redaction; the database password included."""
        values = [value for name in SECRET_FIELDS if (value := self.secret(name)) is not None]
        if self.database_url:
            password = urlsplit(self.database_url).password
            if password:
                values.append(password)
        return values

    @property
    def transcription_on(self) -> bool:
        """Whether voice notes are transcribed (an empty WAYPOST_TRANSCRIBE_URL is off)."""
        return bool(self.transcribe_url and self.transcribe_url.strip())

    @property
    def sending_stale_after(self) -> float:
        """Longest a send attempt can be in flight; past it, its worker is presumed dead."""
        return self.send_connect_timeout + self.send_read_timeout + 5.0


def _encrypted_or_local(url: str) -> bool:
    parts = urlsplit(url.strip())
    if parts.scheme.lower() != "http":
        return True
    host = (parts.hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_secret(annotation: Any) -> bool:
    return annotation is SecretStr or SecretStr in typing.get_args(annotation)


# Every SecretStr setting: found from the annotations, so a new secret cannot miss the rule.
SECRET_FIELDS: frozenset[str] = frozenset(
    name for name, field in Settings.model_fields.items() if _is_secret(field.annotation)
)


def load_settings(env_file: Path | None = None, **overrides: object) -> Settings:
    """Settings from the environment, then `env_file` (a dotenv file, such as the one `waypost dev`
    writes) for what the environment leaves unset; explicit values (CLI flags, tests) win over both."""
    values: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}
    if env_file is not None:
        if not env_file.is_file():
            raise ConfigurationError(f"env file {env_file} does not exist")
        return Settings(_env_file=env_file, **values)
    return Settings(**values)
