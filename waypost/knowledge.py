"""The knowledge base the AI answers from (README "Knowledge base"): documents (Markdown, plain text,
PDF) and question/answer pairs, split into passages and indexed with PostgreSQL full-text search
(`kb_documents`, `kb_passages`, sql/knowledge.sql).

Passages follow the document's structure: a Markdown section (its headings kept with each passage as
context), then paragraphs packed up to MAX_PASSAGE_CHARS; a paragraph longer than that is cut at
word boundaries with OVERLAP_CHARS of overlap, so a sentence cut in two is whole in one of them. A
PDF's text is read page by page with pypdf (each passage's heading is its page).

Everything here takes a connection: the CLI (`waypost kb`), the inbox page and the worker share it.
The worker searches per turn, so what is added or removed counts at the next message, no restart.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import re
import tomllib
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Literal

import anyio.to_thread
from psycopg import AsyncConnection

from waypost.db import execute, fetch_all, fetch_optional, fetch_value
from waypost.errors import BadInput, NotFound
from waypost.text import clean_text

SourceKind = Literal["markdown", "text", "pdf", "qa"]
MAX_PASSAGE_CHARS = 1200
OVERLAP_CHARS = 150
MAX_TITLE_CHARS = 200
MAX_QA_CHARS = 4000  # an answer the rules provider sends must fit a WhatsApp text (4,096)
MAX_DOCUMENT_BYTES = 20 * 1024 * 1024  # a file added from the CLI or the inbox
MAX_PASSAGES = 5000  # a document that would make more is refused: split it
MAX_QUERY_WORDS = 64
SUFFIXES: dict[str, SourceKind] = {".md": "markdown", ".markdown": "markdown", ".txt": "text", ".pdf": "pdf"}

_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_WORD = re.compile(r"\w+")


@dataclasses.dataclass(frozen=True)
class Passage:
    heading: str
    text: str


@dataclasses.dataclass(frozen=True)
class Hit:
    """A passage found by `search`, with its score (0..1, README "Knowledge base")."""

    passage_id: int
    document_id: int
    title: str
    source_kind: str
    seq: int
    heading: str
    text: str
    score: float


def _pieces(paragraph: str) -> list[str]:
    """A paragraph cut into pieces of at most MAX_PASSAGE_CHARS at spaces, each starting with the
    last OVERLAP_CHARS of the one before (at a word boundary)."""
    if len(paragraph) <= MAX_PASSAGE_CHARS:
        return [paragraph]
    pieces, start = [], 0
    while start < len(paragraph):
        end = min(start + MAX_PASSAGE_CHARS, len(paragraph))
        if end < len(paragraph):
            space = paragraph.rfind(" ", start + MAX_PASSAGE_CHARS // 2, end)
            end = space if space > 0 else end
        pieces.append(paragraph[start:end].strip())
        if end >= len(paragraph):
            break
        back = paragraph.find(" ", end - OVERLAP_CHARS, end)
        start = back + 1 if back > start else end
    return [piece for piece in pieces if piece]


def _pack(heading: str, paragraphs: list[str]) -> list[Passage]:
    """Paragraphs joined into passages of at most MAX_PASSAGE_CHARS, all under one heading."""
    passages: list[Passage] = []
    current = ""
    for paragraph in paragraphs:
        for piece in _pieces(paragraph):
            if current and len(current) + 2 + len(piece) > MAX_PASSAGE_CHARS:
                passages.append(Passage(heading, current))
                current = ""
            current = f"{current}\n\n{piece}" if current else piece
    if current:
        passages.append(Passage(heading, current))
    return passages


def _paragraphs(text: str) -> list[str]:
    return [" ".join(block.split()) for block in re.split(r"\n\s*\n", text) if block.strip()]


def split_text(text: str, heading: str = "") -> list[Passage]:
    return _pack(heading, _paragraphs(clean_text(text)))


def split_markdown(text: str) -> list[Passage]:
    """Sections by ATX headings (`#` … `######`), each passage carrying the path of headings above it
    ("Shipping > Returns"). Fenced code is kept as text; a `#` inside it is no heading."""
    passages: list[Passage] = []
    path: list[tuple[int, str]] = []
    lines: list[str] = []
    fenced = False

    def flush() -> None:
        passages.extend(split_text("\n".join(lines), " > ".join(title for _, title in path)))
        lines.clear()

    for line in clean_text(text).splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        found = None if fenced else _HEADING.match(line)
        if found is None:
            lines.append(line)
            continue
        flush()
        level = len(found.group(1))
        path = [(lvl, title) for lvl, title in path if lvl < level] + [(level, found.group(2).strip())]
    flush()
    return passages


def split_pdf(data: bytes) -> list[Passage]:
    """A PDF's text, page by page (pypdf), each page's passages headed "Page N"."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise BadInput("the PDF is encrypted: save it without a password first")
        pages = [page.extract_text() or "" for page in reader.pages]
    except (PdfReadError, ValueError, KeyError, TypeError) as exc:  # pypdf raises these for broken files
        raise BadInput(f"not a PDF pypdf can read: {exc}") from exc
    passages: list[Passage] = []
    for number, page in enumerate(pages, start=1):
        passages.extend(split_text(page, f"Page {number}"))
    return passages


def kind_of(filename: str, given: str | None = None) -> SourceKind:
    if given is not None:
        if given not in ("markdown", "text", "pdf"):
            raise BadInput(f"a document is markdown, text or pdf, not {given!r}")
        return given  # type: ignore[return-value]
    kind = SUFFIXES.get(Path(filename).suffix.lower())
    if kind is None:
        raise BadInput(f"{filename}: name a .md, .markdown, .txt or .pdf file (or give its kind)")
    return kind


def read_document(kind: SourceKind, data: bytes) -> list[Passage]:
    """The passages of a file's bytes; BadInput when it has no text or is not what it claims to be."""
    if len(data) > MAX_DOCUMENT_BYTES:
        raise BadInput(f"the file is larger than {MAX_DOCUMENT_BYTES // (1024 * 1024)} MiB")
    if kind == "pdf":
        if not data.startswith(b"%PDF-"):
            raise BadInput("not a PDF file (it does not start with %PDF-)")
        passages = split_pdf(data)
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise BadInput(f"a {kind} file must be UTF-8 text: {exc}") from exc
        passages = split_markdown(text) if kind == "markdown" else split_text(text)
    if not passages:
        raise BadInput("no text found in the document (a scanned PDF has none: it needs OCR first)")
    if len(passages) > MAX_PASSAGES:
        raise BadInput(f"the document makes {len(passages)} passages, more than {MAX_PASSAGES}: split it")
    return passages


def search_query(text: str) -> str:
    """A customer's words as a websearch_to_tsquery query matching any of them (`or`): a question
    rarely repeats every word of the passage that answers it."""
    words = [w for w in _WORD.findall(clean_text(text)) if w.lower() != "or"]
    return " or ".join(words[-MAX_QUERY_WORDS:])


def _title(title: str) -> str:
    shown = " ".join(clean_text(title).split())[:MAX_TITLE_CHARS]
    if not shown:
        raise BadInput("the title is empty")
    return shown


async def check_language(conn: AsyncConnection[Any], language: str) -> str:
    """`language` if PostgreSQL has a text search configuration of that name (pg_ts_config)."""
    if not language or not await fetch_value(conn, "kb_language_exists", language=language):
        raise BadInput(
            f"no text search configuration {language!r} in this PostgreSQL (SELECT cfgname FROM pg_ts_config "
            "lists them: english, spanish, french, german, simple…)"
        )
    return language


async def add_document(
    conn: AsyncConnection[Any],
    *,
    title: str,
    kind: SourceKind,
    passages: list[Passage],
    language: str,
    filename: str | None = None,
    created_by: str = "cli",
) -> int:
    """Store a document and its passages in one transaction; its id."""
    await check_language(conn, language)
    async with conn.transaction():
        document_id = await fetch_value(
            conn,
            "kb_document_insert",
            title=_title(title),
            source_kind=kind,
            language=language,
            filename=filename,
            created_by=created_by,
        )
        for seq, passage in enumerate(passages, start=1):
            await execute(
                conn, "kb_passage_insert", document_id=document_id, seq=seq, heading=passage.heading, text=passage.text
            )
    return int(document_id)


async def add_file(
    conn: AsyncConnection[Any],
    filename: str,
    data: bytes,
    *,
    language: str,
    title: str | None = None,
    kind: str | None = None,
    created_by: str = "cli",
) -> int:
    # the name alone (a browser may send a Windows path), printable, bounded
    name = "".join(c for c in clean_text(PureWindowsPath(PurePosixPath(filename).name).name) if c.isprintable())
    name = name.strip()[:240]
    source_kind = kind_of(name, kind)
    # a thread: reading a large PDF takes seconds, and the web app's event loop also answers Meta's webhooks
    passages = await anyio.to_thread.run_sync(read_document, source_kind, data)
    return await add_document(
        conn,
        title=title or Path(name).stem,
        kind=source_kind,
        passages=passages,
        language=language,
        filename=name,
        created_by=created_by,
    )


async def add_qa(
    conn: AsyncConnection[Any], question: str, answer: str, *, language: str, created_by: str = "cli"
) -> int:
    """One question/answer pair: a document of one passage, the question its heading."""
    question, answer = (" ".join(clean_text(v).split()) for v in (question, answer))
    if not question or not answer:
        raise BadInput("a pair needs a question and an answer")
    if len(answer) > MAX_QA_CHARS or len(question) > MAX_QA_CHARS:
        raise BadInput(f"a question or an answer is at most {MAX_QA_CHARS} characters")
    passages = [Passage(question, answer)]
    return await add_document(
        conn, title=question, kind="qa", passages=passages, language=language, created_by=created_by
    )


def read_pairs(path: Path) -> list[tuple[str, str]]:
    """Question/answer pairs from a CSV file (two columns; a first row `question,answer` is a header)
    or a TOML file (`[[pairs]]` tables with `question` and `answer`)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"cannot read {path}: {exc}") from exc
    if path.suffix.lower() == ".toml":
        try:
            tables = tomllib.loads(text).get("pairs", [])
        except tomllib.TOMLDecodeError as exc:
            raise BadInput(f"{path} is not valid TOML: {exc}") from exc
        if not isinstance(tables, list) or not all(
            isinstance(t, dict) and isinstance(t.get("question"), str) and isinstance(t.get("answer"), str)
            for t in tables
        ):
            raise BadInput(f"{path}: give [[pairs]] tables, each with a question and an answer string")
        pairs = [(t["question"], t["answer"]) for t in tables]
    else:
        rows = [row for row in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in row)]
        if rows and [cell.strip().lower() for cell in rows[0]] == ["question", "answer"]:
            rows = rows[1:]
        bad = [n for n, row in enumerate(rows, start=1) if len(row) != 2]
        if bad:
            raise BadInput(f"{path}: every row is question,answer (row {bad[0]} is not)")
        pairs = [(row[0], row[1]) for row in rows]
    if not pairs:
        raise BadInput(f"{path}: no pairs found")
    return pairs


async def list_documents(conn: AsyncConnection[Any], limit: int = 1000) -> list[dict[str, Any]]:
    return await fetch_all(conn, "kb_documents_list", limit=limit)


async def passages(conn: AsyncConnection[Any], document_id: int) -> list[dict[str, Any]]:
    return await fetch_all(conn, "kb_document_passages", document_id=document_id)


async def remove(conn: AsyncConnection[Any], document_id: int) -> str:
    """Delete a document or pair with its passages; its title."""
    row = await fetch_optional(conn, "kb_document_delete", document_id=document_id)
    if row is None:
        raise NotFound.of(f"knowledge document {document_id}")
    return str(row["title"])


async def search(conn: AsyncConnection[Any], text: str, *, limit: int = 5, qa_only: bool = False) -> list[Hit]:
    """The passages that best match `text` (any of its words), best first."""
    query = search_query(text)
    if not query:
        return []
    rows = await fetch_all(conn, "kb_search", query=query, limit=limit, qa_only=qa_only)
    return [Hit(**row) for row in rows]
