"""`waypost kb`: the knowledge base from the command line, a thin layer over waypost.knowledge."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from waypost import knowledge
from waypost.errors import BadInput, WaypostError
from waypost.settings import Settings


def _one_line(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


async def _run(settings: Settings, args: argparse.Namespace) -> str:
    command = args.kb_command
    language = getattr(args, "language", None) or settings.kb_language
    url = settings.require_database_url()
    async with await psycopg.AsyncConnection.connect(url, row_factory=dict_row, autocommit=True) as conn:
        if command == "add":
            path: Path = args.file
            try:
                data = await asyncio.to_thread(path.read_bytes)
            except OSError as exc:
                raise BadInput(f"cannot read {path}: {exc}") from exc
            document_id = await knowledge.add_file(
                conn, path.name, data, language=language, title=args.title, kind=args.kind
            )
            count = len(await knowledge.passages(conn, document_id))
            return f"Added document {document_id} ({count} passage(s), {language})"
        if command == "add-qa":
            if args.file is not None:
                pairs = knowledge.read_pairs(args.file)
            elif args.question and args.answer:
                pairs = [(args.question, args.answer)]
            else:
                raise BadInput('give "question" "answer", or --file pairs.csv / pairs.toml')
            ids = []
            async with conn.transaction():  # a file of pairs goes in whole or not at all
                for question, answer in pairs:
                    ids.append(await knowledge.add_qa(conn, question, answer, language=language))
            return f"Added {len(ids)} question/answer pair(s): {', '.join(map(str, ids))}"
        if command == "list":
            rows = await knowledge.list_documents(conn)
            if args.json:
                return json.dumps(rows, default=str, indent=2)
            lines = [
                f"{r['id']}\t{r['source_kind']}\t{r['language']}\t{r['passages']} passage(s)\t"
                f"{_one_line(r['title'], 60)}\t{r['created_by']}"
                for r in rows
            ]
            return "\n".join(lines) or "The knowledge base is empty"
        if command == "remove":
            title = await knowledge.remove(conn, args.id)
            return f"Removed {args.id}: {title}"
        hits = await knowledge.search(conn, args.query, limit=args.limit)
        if args.json:
            return json.dumps([hit.__dict__ for hit in hits], indent=2)
        shown = [
            f"{hit.score:.3f}\tdocument {hit.document_id} #{hit.seq}\t{_one_line(hit.title, 40)}"
            f"{' > ' + _one_line(hit.heading, 40) if hit.heading and hit.source_kind != 'qa' else ''}\n"
            f"\t{_one_line(hit.text, 160)}"
            for hit in hits
        ]
        threshold = f"(WAYPOST_KB_MIN_SCORE is {settings.kb_min_score:g})"
        return "\n".join([*shown, threshold]) if shown else f"No passage matches {threshold}"


def cmd_kb(settings: Settings, args: argparse.Namespace) -> int:
    try:
        print(asyncio.run(_run(settings, args)))
    except WaypostError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def add_parser(sub: Any) -> None:
    kb = sub.add_parser("kb", help="the knowledge base the AI answers from (documents, question/answer pairs)")
    kb_sub = kb.add_subparsers(dest="kb_command", required=True)
    language = {"help": "text search configuration, e.g. english, spanish, simple (default WAYPOST_KB_LANGUAGE)"}
    add = kb_sub.add_parser("add", help="add a Markdown (.md), text (.txt) or PDF (.pdf) document")
    add.add_argument("file", type=Path)
    add.add_argument("--title", help="default: the file's name without its suffix")
    add.add_argument("--kind", choices=("markdown", "text", "pdf"), help="default: from the file's suffix")
    add.add_argument("--language", **language)
    qa = kb_sub.add_parser("add-qa", help='add a question/answer pair: "question" "answer", or --file')
    qa.add_argument("question", nargs="?")
    qa.add_argument("answer", nargs="?")
    qa.add_argument("--file", type=Path, help="pairs from a CSV (question,answer) or TOML ([[pairs]]) file")
    qa.add_argument("--language", **language)
    listed = kb_sub.add_parser("list", help="the documents and pairs, newest first")
    listed.add_argument("--json", action="store_true", help="machine-readable output")
    removed = kb_sub.add_parser("remove", help="remove a document or pair (and its passages) by id")
    removed.add_argument("id", type=int)
    searched = kb_sub.add_parser("search", help="the passages the AI would get for a customer's message")
    searched.add_argument("query")
    searched.add_argument("--limit", type=int, default=5)
    searched.add_argument("--json", action="store_true", help="machine-readable output")
    for command in (add, qa, listed, removed, searched):
        command.set_defaults(func=cmd_kb)
