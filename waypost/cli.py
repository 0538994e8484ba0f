"""`waypost`: a thin command line over the library. Each command is a function tests can call."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from waypost import __version__
from waypost.logs import setup_logging
from waypost.settings import ConfigurationError, Settings, load_settings


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from waypost.schema import migrate, verify

    database_url = settings.require_database_url()
    applied = migrate(database_url)
    print(f"Applied: {', '.join(applied)}" if applied else "No migrations to apply")
    report = verify(database_url)
    print(report.render())
    return 0 if report.ok else 1


def cmd_verify_schema(settings: Settings, args: argparse.Namespace) -> int:
    from waypost.schema import verify

    report = verify(settings.require_database_url())
    print(report.render())
    return 0 if report.ok else 1


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from webhook.app import create_app

    settings.require_database_url()
    settings.check_webhook_security()
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=None)
    return 0


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    from waypost.schema import SchemaMismatchError
    from worker.runner import run_worker

    settings.require_database_url()
    try:
        asyncio.run(run_worker(settings))
    except SchemaMismatchError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="waypost", description="WhatsApp auto-reply service")
    parser.add_argument("--version", action="version", version=f"waypost {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply migrations (yoyo), repair drift, verify").set_defaults(func=cmd_migrate)
    sub.add_parser("verify-schema", help="check the database matches this code").set_defaults(func=cmd_verify_schema)
    serve = sub.add_parser("serve", help="run the web app (webhook, health checks)")
    serve.add_argument("--host", help="bind address (default WAYPOST_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default WAYPOST_PORT or 8000)")
    serve.set_defaults(func=cmd_serve)
    sub.add_parser("worker", help="run a procrastinate worker for the reply queue").set_defaults(func=cmd_worker)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(host=getattr(args, "host", None), port=getattr(args, "port", None))
        setup_logging(settings.log_level)
        return int(args.func(settings, args))
    except ConfigurationError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
