"""`waypost`: a thin command line over the library. Each command is a function tests can call."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from waypost import __version__, operators
from waypost.environment import environment
from waypost.errors import BadOperatorInput, OperatorError, WaypostError
from waypost.logs import setup_logging
from waypost.operators import add_operator
from waypost.settings import ConfigurationError, Settings, load_settings

# Where `waypost dev` keeps its settings; other commands run in that folder use them (see main).
DEV_ENV_FILE = Path(".waypost") / "dev.env"


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

    settings.require_database_url()
    settings.check_webhook_security()
    # uvicorn would believe X-Forwarded-For from 127.0.0.1 by default: the app decides instead,
    # from WAYPOST_TRUSTED_PROXIES (none by default).
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_config": None,
        "proxy_headers": False,
    }
    if args.workers > 1:
        # Each process imports webhook.app:app and reads these settings from its environment.
        os.environ.update(environment(settings))
        uvicorn.run("webhook.app:app", workers=args.workers, **options)
    else:
        from webhook.app import create_app  # not in the parent of --workers: it serves nothing itself

        uvicorn.run(create_app(settings), **options)
    return 0


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    from waypost.schema import SchemaMismatchError
    from worker.runner import run_worker

    settings.require_database_url()
    # Acknowledgements first where web and worker share cores: never lowers a niceness already higher
    os.setpriority(os.PRIO_PROCESS, 0, max(os.getpriority(os.PRIO_PROCESS, 0), settings.worker_nice))
    import uvloop  # uvicorn's loop for the web process too: a job's round trips cost less CPU (issue 17)

    try:
        uvloop.run(run_worker(settings))
    except SchemaMismatchError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    return 0


def devtools(module: str) -> ModuleType:
    """A dev tool's module, imported only by the command that needs it (the image leaves them out)."""
    try:
        return importlib.import_module(f"waypost.devtools.{module}")
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("waypost.devtools"):
            raise
        raise ConfigurationError(
            "`waypost dev` and `waypost simulate` are dev tools, left out of this installation (the production "
            "image): run them from a checkout, e.g. `python3 bootstrap.py dev`"
        ) from None


def cmd_simulate(settings: Settings, args: argparse.Namespace) -> int:
    simulate = devtools("simulate").simulate

    replied, report = asyncio.run(
        simulate(
            settings,
            args.text,
            wa_id=args.from_number,
            name=args.name,
            url=args.url,
            wait_seconds=args.timeout,
            kind=args.kind,
            target=args.target,
            file=args.file,
        )
    )
    print(report)
    return 0 if replied else 1


def cmd_dev(settings: Settings, args: argparse.Namespace) -> int:
    return devtools("stack").run_dev(settings, data_dir=args.data_dir, graph_port=args.graph_port, verbose=args.verbose)


def read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    import getpass

    password = getpass.getpass("Password: ")
    if getpass.getpass("Password again: ") != password:
        raise BadOperatorInput("the passwords differ")
    return password


def cmd_operator_add(settings: Settings, args: argparse.Namespace) -> int:
    try:
        operator = add_operator(
            settings.require_database_url(), args.email, read_password(args), replace=args.reset_password
        )
    except OperatorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"Operator {operator['email']} (id {operator['id']}) can sign in at /inbox/login")
    return 0


def utc(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def cmd_operator_sessions(settings: Settings, args: argparse.Namespace) -> int:
    database_url = settings.require_database_url()
    try:
        if args.revoke:
            ended = operators.revoke_sessions(database_url, args.email)
            print(f"Ended {ended} session(s) of {args.email}")
            return 0
        rows = operators.sessions(database_url, args.email, settings.session_max_age_seconds)
    except OperatorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not rows:
        print(f"{args.email} has no sessions")
    for row in rows:
        signed_in, seen = (utc(row[key]) for key in ("created_at", "last_seen_at"))
        print(
            f"{row['id']}\t{row['state']}\tsigned in {signed_in}\tlast seen {seen}"
            f"\t{row['client_ip'] or '-'}\t{row['user_agent'] or '-'}"
        )
    return 0


def cmd_operator_disable(settings: Settings, args: argparse.Namespace) -> int:
    disabled = args.operator_command == "disable"
    try:
        ended = operators.set_disabled(settings.require_database_url(), args.email, disabled)
    except OperatorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{args.email} disabled; ended {ended} session(s)" if disabled else f"{args.email} can sign in again")
    return 0


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    from waypost import status

    report = status.collect(settings, args.max_age)
    print(status.as_json(report) if args.json else status.render(report))
    return 1 if report["attention"] else 0


async def _contact(settings: Settings, args: argparse.Namespace) -> str:
    import psycopg
    from psycopg.rows import dict_row

    from waypost import contact_data
    from waypost.media_store import MediaStore

    async with await psycopg.AsyncConnection.connect(settings.require_database_url(), row_factory=dict_row) as conn:
        if args.contact_command == "export":
            data = await contact_data.export(conn, args.id)
            return contact_data.as_html(data) if args.html else contact_data.as_json(data)
        store = MediaStore(settings)
        try:
            erasure = await contact_data.erase(conn, args.id, "cli", store)
        finally:
            await store.aclose()
        counts = ", ".join(f"{table} {n}" for table, n in erasure.counts.items() if n)
        return f"Erased (erasure {erasure.erasure_id}): {counts}"


def cmd_contact(settings: Settings, args: argparse.Namespace) -> int:
    if args.contact_command == "erase" and not args.yes:
        answer = input(f"Erase everything stored about {args.id}? This cannot be undone. Type 'erase': ")
        if answer.strip() != "erase":
            print("Not erased", file=sys.stderr)
            return 1
    try:
        out = asyncio.run(_contact(settings, args))
    except WaypostError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.contact_command == "export" and args.output is not None:
        args.output.write_text(out, encoding="utf-8")
    else:
        print(out)
    return 0


async def _templates(settings: Settings, args: argparse.Namespace) -> str:
    import psycopg
    from psycopg.rows import dict_row

    from worker import templates

    async with await psycopg.AsyncConnection.connect(settings.require_database_url(), row_factory=dict_row) as conn:
        if args.templates_command == "sync":
            result = await templates.sync(conn, settings)
            gone = f"; deleted: {', '.join(result.deleted)}" if result.deleted else ""
            return f"Synced {result.listed} template(s) from {result.pages} page(s){gone}"
        rows = await templates.list_templates(conn)
        return templates.as_json(rows) if args.json else templates.render(rows)


def cmd_templates(settings: Settings, args: argparse.Namespace) -> int:
    try:
        print(asyncio.run(_templates(settings, args)))
    except WaypostError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="waypost", description="WhatsApp auto-reply service")
    parser.add_argument("--version", action="version", version=f"waypost {__version__}")
    parser.add_argument("--env-file", type=Path, help="dotenv file for settings the environment leaves unset")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply migrations (yoyo), repair drift, verify").set_defaults(func=cmd_migrate)
    sub.add_parser("verify-schema", help="check the database matches this code").set_defaults(func=cmd_verify_schema)
    serve = sub.add_parser("serve", help="run the web app (webhook, health checks)")
    serve.add_argument("--host", help="bind address (default WAYPOST_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default WAYPOST_PORT or 8000)")
    serve.add_argument("--workers", type=int, default=1, help="web processes sharing the port (default 1)")
    serve.set_defaults(func=cmd_serve)
    sub.add_parser("worker", help="run a procrastinate worker for the reply queue").set_defaults(func=cmd_worker)
    dev = sub.add_parser("dev", help="run everything locally: PostgreSQL, migrations, web, worker, fake Graph API")
    dev.add_argument("--port", type=int, help="web app port (default WAYPOST_PORT or 8000)")
    dev.add_argument("--graph-port", type=int, default=8081, help="fake Graph API port (default 8081)")
    dev.add_argument("--data-dir", type=Path, default=Path(".waypost"), help="dev state (default ./.waypost)")
    dev.add_argument("--verbose", action="store_true", help="show every component's output while starting")
    dev.set_defaults(func=cmd_dev)
    simulate = sub.add_parser("simulate", help="post a signed inbound message and print the reply")
    simulate.add_argument("text")
    simulate.add_argument("--from", dest="from_number", default="15551230000", help="the contact's number")
    simulate.add_argument("--name", default="Dev Tester", help="the contact's profile name")
    simulate.add_argument("--url", help="webhook URL (default http://WAYPOST_HOST:WAYPOST_PORT/api/webhooks/whatsapp)")
    simulate.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the reply")
    simulate.add_argument(
        "--kind",
        choices=("text", "image", "voice", "document", "edit", "revoke", "echo"),
        default="text",
        help="media (the text is the caption), the contact editing or deleting a message, or a message the "
        "business sends from the WhatsApp Business app",
    )
    simulate.add_argument("--target", help="the wamid an edit or revoke names (default: the contact's latest message)")
    simulate.add_argument("--file", type=Path, help="the file of an image, voice or document (default: a small sample)")
    simulate.set_defaults(func=cmd_simulate)
    status = sub.add_parser("status", help="what needs attention, from the database; exits 1 if anything does")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument(
        "--max-age", type=float, default=120.0, help="seconds after which an open reply job needs attention"
    )
    status.set_defaults(func=cmd_status)
    operator = sub.add_parser("operator", help="manage the people who sign in to the inbox")
    operator_sub = operator.add_subparsers(dest="operator_command", required=True)
    add = operator_sub.add_parser("add", help="create an operator (prompts for the password)")
    add.add_argument("email")
    add.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    add.add_argument("--reset-password", action="store_true", help="set a new password if the operator exists")
    add.set_defaults(func=cmd_operator_add)
    listed = operator_sub.add_parser("sessions", help="list an operator's inbox sessions")
    listed.add_argument("email")
    listed.add_argument("--revoke", action="store_true", help="end every live session of the operator")
    listed.set_defaults(func=cmd_operator_sessions)
    for name, what in (("disable", "lock an operator out (their sessions end at once)"), ("enable", "undo disable")):
        toggle = operator_sub.add_parser(name, help=what)
        toggle.add_argument("email")
        toggle.set_defaults(func=cmd_operator_disable)
    contact = sub.add_parser("contact", help="export or erase everything stored about a contact")
    contact_sub = contact.add_subparsers(dest="contact_command", required=True)
    exported = contact_sub.add_parser("export", help="the contact's data as JSON (or --html), to stdout or --output")
    exported.add_argument("id", help="the contact's phone number (wa_id) or BSUID")
    exported.add_argument("--html", action="store_true", help="a readable HTML page instead of JSON")
    exported.add_argument("--output", type=Path, help="write to this file instead of stdout")
    erased = contact_sub.add_parser("erase", help="delete the contact's conversations, messages, files, journal rows")
    erased.add_argument("id", help="the contact's phone number (wa_id) or BSUID")
    erased.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    for command in (exported, erased):
        command.set_defaults(func=cmd_contact)
    templates = sub.add_parser("templates", help="the WhatsApp Business Account's message templates")
    templates_sub = templates.add_subparsers(dest="templates_command", required=True)
    templates_sub.add_parser("sync", help="read every template from Meta into message_templates").set_defaults(
        func=cmd_templates
    )
    shown = templates_sub.add_parser("list", help="the stored templates")
    shown.add_argument("--json", action="store_true", help="machine-readable output")
    shown.set_defaults(func=cmd_templates)
    from waypost import kb_cli

    kb_cli.add_parser(sub)
    return parser


def dev_env_file(args: argparse.Namespace) -> Path | None:
    """The env file to read: --env-file, or in a `waypost dev` folder its dev settings when the
    environment names no database (said on stderr, so nobody wonders which settings ran)."""
    if args.env_file is not None or args.command == "dev" or "DATABASE_URL" in os.environ:
        return args.env_file
    if not DEV_ENV_FILE.is_file():
        return None
    print(f"waypost: using the dev settings in {DEV_ENV_FILE} (no DATABASE_URL in the environment)", file=sys.stderr)
    return DEV_ENV_FILE


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        env_file = dev_env_file(args)
        settings = load_settings(env_file, host=getattr(args, "host", None), port=getattr(args, "port", None))
        setup_logging(settings.log_level, settings.log_format, settings.secret_values())
        return int(args.func(settings, args))
    except ConfigurationError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
