"""Every setting is documented: in the README's table and in .env.example."""

from __future__ import annotations

from pathlib import Path

from waypost.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def env_names() -> list[str]:
    return [field.validation_alias.choices[0] for field in Settings.model_fields.values()]  # type: ignore[union-attr]


def test_every_setting_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    assert [name for name in env_names() if f"`{name}`" not in readme] == []


def test_every_setting_is_in_env_example() -> None:
    example = (ROOT / ".env.example").read_text()
    assert [name for name in env_names() if f"{name}=" not in example] == []
