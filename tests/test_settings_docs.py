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


def test_the_procrastinate_command_names_the_settings_it_ignores() -> None:
    """It once said "the two WAYPOST_WORKER_* ones" when there were four."""
    readme = (ROOT / "README.md").read_text()
    paragraph = readme.split("`procrastinate --app=worker.app worker` reads every setting above")[1].split("\n\n")[0]
    worker_settings = [name for name in env_names() if name.startswith("WAYPOST_WORKER_")]
    assert [name for name in worker_settings if f"`{name}`" not in paragraph] == []
    number = ["no", "one", "two", "three", "four", "five", "six"][len(worker_settings)]
    assert f"the {number} `WAYPOST_WORKER_*` ones" in " ".join(paragraph.split())
