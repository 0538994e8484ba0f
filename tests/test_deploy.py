"""The deploy files, checked without a Docker engine: the compose file parses and wires the services as
documented, every command it runs exists, every setting it passes is read by the app, and the
Dockerfile's install step works as a plain shell command in a fresh virtualenv."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest
import yaml

from tests.conftest import waypost_env
from waypost.cli import build_parser
from waypost.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
DOCKERFILE = (ROOT / "Dockerfile").read_text()
SETTINGS = {field.validation_alias.choices[0] for field in Settings.model_fields.values()}  # type: ignore[union-attr]
COMPOSE_ONLY = {"POSTGRES_PASSWORD", "WAYPOST_PUBLISH_PORT"}  # read by compose itself, not the app


def command_of(service: str) -> str:
    command = COMPOSE["services"][service]["command"]
    return " ".join(command) if isinstance(command, list) else command


def test_services_and_their_order() -> None:
    services = COMPOSE["services"]
    assert set(services) == {"postgres", "migrate", "web", "worker"}
    assert services["postgres"]["image"].startswith("postgres:")
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert any(v.endswith(":/var/lib/postgresql/data") for v in services["postgres"]["volumes"])
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert re.search(r"waypost migrate && waypost verify-schema", command_of("migrate"))
    for name in ("web", "worker"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert services[name]["env_file"] == ".env"
    assert "/readyz" in " ".join(services["web"]["healthcheck"]["test"])
    assert services["worker"]["restart"] == "always"


def test_every_command_compose_runs_exists() -> None:
    subcommands = set(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    for service in ("migrate", "web", "worker"):
        for used in re.findall(r"waypost ([a-z-]+)", command_of(service)):
            assert used in subcommands, (service, used)
    assert re.search(r'CMD \["waypost", "serve"\]', DOCKERFILE)


def test_every_setting_passed_is_one_the_app_reads() -> None:
    example = (ROOT / ".env.example").read_text()
    passed = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", example, re.MULTILINE))
    for service in COMPOSE["services"].values():
        environment = service.get("environment") or {}
        if service.get("image", "").startswith("postgres"):
            continue
        passed |= set(environment)
    passed |= set(re.findall(r"\$\{([A-Z0-9_]+)", (ROOT / "docker-compose.yml").read_text()))
    unknown = passed - SETTINGS - COMPOSE_ONLY - {"POSTGRES_USER", "POSTGRES_DB"}
    assert unknown == set()
    assert "DATABASE_URL=postgresql://waypost:" in example and "@postgres:5432/waypost" in example


def test_dockerfile_runs_as_non_root_from_a_slim_image() -> None:
    assert re.search(r"^FROM python:3\.1\d-slim", DOCKERFILE, re.MULTILINE)
    assert re.search(r"^USER waypost$", DOCKERFILE, re.MULTILINE)
    assert "[test]" not in DOCKERFILE and "[dev]" not in DOCKERFILE


@pytest.mark.timeout(300)
def test_dockerfile_install_step_works_in_a_fresh_virtualenv(tmp_path: Path, settings: Settings) -> None:
    """Replays the Dockerfile: its COPY lines into an empty directory, its `pip install .` into a new
    virtualenv; the installed package (not this checkout) then verifies a migrated database."""
    context = tmp_path / "app"
    context.mkdir()
    for source, _ in re.findall(r"^COPY (\S+(?: \S+)*?) (\S+)$", DOCKERFILE, re.MULTILINE):
        for name in source.split():
            path = ROOT / name
            if path.is_dir():
                shutil.copytree(path, context / name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy(path, context / name)
    install = re.search(r"^RUN (pip install \.)", DOCKERFILE, re.MULTILINE)
    assert install, "the Dockerfile's install step"
    venv.EnvBuilder(with_pip=True).create(tmp_path / "venv")
    bin_dir = tmp_path / "venv" / "bin"
    # --no-compile: the same packages installed, without byte-compiling every module of every dependency
    # (a compile error never fails pip's install; the imports below run the code that matters)
    done = subprocess.run(
        f"{bin_dir}/{install.group(1)} --quiet --disable-pip-version-check --no-compile",
        shell=True,
        cwd=context,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    shutil.rmtree(context)  # as the image does: nothing may still come from the build context
    env = waypost_env(settings)
    verified = subprocess.run(
        [str(bin_dir / "waypost"), "verify-schema"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "Schema verification PASSED" in verified.stdout
    for module in ("worker.app", "webhook.app:app"):
        path = module.replace(":", ".").rsplit(".", 1)
        check = subprocess.run(
            [str(bin_dir / "python"), "-c", f"import {path[0]} as m; assert m.{path[1]}"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert check.returncode == 0, check.stderr
    assert (bin_dir / "procrastinate").exists() and not (bin_dir / "pytest").exists()
    assert sys.prefix not in verified.stdout
