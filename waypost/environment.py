"""Settings as environment variables: what makes another process (`waypost dev`'s web and worker, a
test's subprocess) read exactly the settings of this one."""

from __future__ import annotations

import json

from pydantic import AliasChoices, SecretStr

from waypost.settings import Settings


def env_name(field_name: str) -> str:
    """The environment variable of a setting."""
    alias = Settings.model_fields[field_name].validation_alias
    assert isinstance(alias, AliasChoices)
    return str(alias.choices[0])


def environment(settings: Settings) -> dict[str, str]:
    """The environment variables that make another process read exactly these settings."""
    env = {}
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, bool):
            value = "1" if value else "0"
        elif isinstance(value, tuple):
            value = ",".join(value)
        elif isinstance(value, dict):
            value = json.dumps(value, ensure_ascii=False)
        env[env_name(name)] = str(value)
    return env
