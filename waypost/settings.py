"""The one settings object, read from the environment here and nowhere else.

Every option is documented in the README's "Settings" table; keep the two in step.
"""

from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ConfigurationError(RuntimeError):
    """A setting is missing or unsafe; raised at startup, never at the first request."""


def _env(name: str) -> AliasChoices:
    return AliasChoices(name)


class Settings(BaseSettings):
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
    db_pool_min_size: int = Field(2, ge=1, validation_alias=_env("WAYPOST_DB_POOL_MIN_SIZE"))
    db_pool_max_size: int = Field(10, ge=1, validation_alias=_env("WAYPOST_DB_POOL_MAX_SIZE"))
    schema_check_interval: float = Field(30.0, gt=0, validation_alias=_env("WAYPOST_SCHEMA_CHECK_INTERVAL"))
    worker_concurrency: int = Field(10, ge=1, validation_alias=_env("WAYPOST_WORKER_CONCURRENCY"))
    worker_poll_interval: float = Field(1.0, gt=0, validation_alias=_env("WAYPOST_WORKER_POLL_INTERVAL"))
    log_level: str = Field("INFO", validation_alias=_env("WAYPOST_LOG_LEVEL"))

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


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with explicit values (CLI flags, tests) taking precedence."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
