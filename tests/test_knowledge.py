"""The knowledge base (README "Knowledge base"): documents split into passages and indexed with
PostgreSQL full-text search; the `rules` provider answering from a question/answer pair through the
real worker; the `openai` provider given a PDF's passages (a fake OpenAI-compatible server on
127.0.0.1 records the request) and handing over through its tool; a strict miss handing over with no
model call; `waypost kb` in a subprocess; the inbox page."""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.conftest import ServerThread, post_webhook, run_waypost, settled, wait_until
from tests.inbox_client import Inbox, create_operator
from waypost import knowledge
from waypost.devtools import payloads
from waypost.devtools.fake_graph import FakeGraph
from waypost.errors import BadInput
from waypost.settings import Settings
from worker import summary
from worker.orchestrator import Answer, Handover, ReplyRequest, Turn
from worker.orchestrator.grounding import NO_PASSAGE
from worker.orchestrator.knowledge_prompt import handover_of
from worker.orchestrator.rules import RulesOrchestrator

FAQ = """# Acme Lamps

Welcome to Acme Lamps.

## Returns

You can return any lamp within 30 days. Broken items are replaced for free: send a photo of the
damage and your order number.

## Shipping

Orders ship from our warehouse in Lille. Delivery takes 2 to 3 working days.

```
# not a heading: fenced
```
"""


def pdf(*pages: list[str]) -> bytes:
    """A real PDF, written by hand: one page per list of lines, in Helvetica."""
    objects: list[bytes] = [b"<< /Type /Catalog /Pages 2 0 R >>"]
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(len(pages)))
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode())
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
    for i, lines in enumerate(pages):
        escaped = [line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") for line in lines]
        stream = ("BT /F1 12 Tf 72 720 Td 16 TL " + " ".join(f"({line}) '" for line in escaped) + " ET").encode()
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >>"
            b" /Contents %d 0 R >>" % (5 + 2 * i)
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


WARRANTY_PDF = pdf(
    ["Acme Lamps warranty", "Every lamp has a two-year warranty covering the switch and the cable."],
    ["Spare bulbs", "Spare bulbs cost 4 euros each and fit the E27 socket only."],
)


# --- splitting -------------------------------------------------------------------------------------


def test_markdown_is_split_by_headings_and_each_passage_keeps_its_heading_path() -> None:
    passages = knowledge.split_markdown(FAQ)
    assert [p.heading for p in passages] == ["Acme Lamps", "Acme Lamps > Returns", "Acme Lamps > Shipping"]
    assert passages[1].text.startswith("You can return any lamp within 30 days. Broken items")
    assert "# not a heading: fenced" in passages[2].text  # a # inside fenced code is text


def test_a_long_paragraph_is_cut_at_words_into_bounded_passages_that_overlap() -> None:
    words = [f"word{n}" for n in range(900)]
    passages = knowledge.split_text(" ".join(words))
    assert len(passages) > 3
    assert all(len(p.text) <= knowledge.MAX_PASSAGE_CHARS for p in passages)
    for before, after in itertools.pairwise(passages):
        first = after.text.split()[0]
        assert first in before.text.split(), "the next passage starts inside the one before"
    seen = {w for p in passages for w in p.text.split()}
    assert seen == set(words), "nothing is lost"


def test_short_paragraphs_are_packed_together_up_to_the_bound() -> None:
    text = "\n\n".join(f"Paragraph {n} " + "x" * 300 for n in range(10))
    passages = knowledge.split_text(text)
    assert 2 < len(passages) < 10
    assert all(len(p.text) <= knowledge.MAX_PASSAGE_CHARS for p in passages)


def test_a_pdf_is_read_page_by_page_and_bad_files_are_refused_clearly() -> None:
    passages = knowledge.read_document("pdf", WARRANTY_PDF)
    assert [p.heading for p in passages] == ["Page 1", "Page 2"]
    assert "two-year warranty" in passages[0].text and "E27" in passages[1].text
    with pytest.raises(BadInput, match="not a PDF"):
        knowledge.read_document("pdf", b"hello")
    with pytest.raises(BadInput, match="pypdf"):
        knowledge.read_document("pdf", b"%PDF-1.4\ngarbage")
    with pytest.raises(BadInput, match="UTF-8"):
        knowledge.read_document("text", b"\xff\xfe\xfa")
    with pytest.raises(BadInput, match="no text"):
        knowledge.read_document("markdown", b"   \n\n")
    with pytest.raises(BadInput, match=r"\.md"):
        knowledge.kind_of("notes.docx")


def test_a_customers_words_become_an_any_word_query() -> None:
    assert knowledge.search_query("My lamp arrived broken!") == "My or lamp or arrived or broken"
    assert knowledge.search_query("this or that") == "this or that"
    assert knowledge.search_query("?!") == ""


def test_the_search_reads_the_customers_messages_since_the_business_last_spoke() -> None:
    history = (
        Turn("contact", "hello"),
        Turn("ai", "Hi! How can I help?"),
        Turn("contact", "I ordered a lamp"),
        Turn("contact", "it arrived broken"),
    )
    assert ReplyRequest(1, None, history).customer_words() == "I ordered a lamp it arrived broken"


def test_a_hand_over_call_becomes_a_handover_with_its_reason() -> None:
    def call(arguments: str) -> dict[str, Any]:
        return {"tool_calls": [{"type": "function", "function": {"name": "hand_over", "arguments": arguments}}]}

    assert handover_of(call('{"reason": "asks for a refund\\u0000"}')) == Handover("asks for a refund\ufffd")
    assert handover_of(call("not json")) == Handover("the model handed over without a reason")
    assert handover_of({"content": "hi"}) is None


async def test_the_rules_provider_prefers_its_rules_then_the_best_pair_then_hands_over_when_strict() -> None:
    rules = RulesOrchestrator.from_file(None)
    pair = knowledge.Hit(7, 3, "Do you deliver to Lyon?", "qa", 1, "Do you deliver to Lyon?", "Yes, in 3 days.", 0.5)
    passage = dataclasses.replace(pair, source_kind="pdf", text="A passage, not an answer")

    async def ask(text: str, *hits: knowledge.Hit, strict: bool = False) -> Any:
        return await rules.reply(ReplyRequest(1, "Ann", (Turn("contact", text),), knowledge=hits, strict=strict))

    assert await ask("Deliver to Lyon?", pair) == Answer("Yes, in 3 days.")
    assert await ask("hello", pair) == Answer("Hello Ann! How can we help you today?")  # a rule first
    assert await ask("Deliver to Lyon?", passage, strict=True) == Handover(NO_PASSAGE)  # documents: no answer
    assert (await ask("Deliver to Lyon?")).text.startswith("Thanks for your message, Ann!")  # lenient: fallback


# --- the database ----------------------------------------------------------------------------------


async def test_passages_are_indexed_and_the_search_ranks_the_passage_that_answers(database_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, row_factory=dict_row, autocommit=True) as conn:
        faq = await knowledge.add_file(conn, "faq.md", FAQ.encode(), language="english")
        hours = await knowledge.add_qa(
            conn, "What are your opening hours?", "Monday to Friday, 9:00 to 18:00.", language="english"
        )
        hits = await knowledge.search(conn, "my lamp arrived broken, what can I do?")
        assert (hits[0].document_id, hits[0].heading) == (faq, "Acme Lamps > Returns")
        assert hits[0].score > 0.5 and all(h.score <= hits[0].score for h in hits)
        # stemming in the business's language: "opening" in the question, "open" in the message
        hits = await knowledge.search(conn, "When are you open?")
        assert [h.document_id for h in hits] == [hours] and hits[0].score >= 0.3
        assert [h.source_kind for h in await knowledge.search(conn, "lamp opening", qa_only=True)] == ["qa"]
        assert await knowledge.search(conn, "the meaning of life") == []
        tsv = await (await conn.execute("SELECT tsv::text FROM kb_passages WHERE document_id = %s", [hours])).fetchone()
        assert tsv is not None and "'open':4A" in tsv["tsv"]  # the question weighs A
        with pytest.raises(BadInput, match="pg_ts_config"):
            await knowledge.add_qa(conn, "q", "a", language="klingon")
        assert await knowledge.remove(conn, faq) == "faq"
        assert await knowledge.search(conn, "broken lamp") == []  # its passages went with it
        count = await (await conn.execute("SELECT count(*) AS n FROM kb_passages")).fetchone()
        assert count is not None and count["n"] == 1


# --- through the worker ----------------------------------------------------------------------------


class KnowledgeOpenAI:
    """An OpenAI-compatible /v1/chat/completions that records each request. It calls `hand_over`
    when the customer asks for a refund, answers nothing to "say nothing", else "Grounded answer to:
    <the message>". A handover's summary request (worker.summary's prompt) is recorded apart, in
    `summaries`, and answered "Model summary: <n> lines, the last: <the transcript's last line>"."""

    def __init__(self) -> None:
        self.chats: list[dict[str, Any]] = []
        self.summaries: list[dict[str, Any]] = []
        self.app = Starlette(routes=[Route("/v1/chat/completions", self.complete, methods=["POST"])])

    async def complete(self, request: Request) -> JSONResponse:
        body = json.loads(await request.body())
        content = body["messages"][-1]["content"]
        if body["messages"][0]["content"] == summary.PROMPT:
            self.summaries.append(body)
            lines = content.splitlines()
            written = {"role": "assistant", "content": f"Model summary: {len(lines)} lines, the last: {lines[-1]}"}
            return JSONResponse({"choices": [{"index": 0, "message": written, "finish_reason": "stop"}]})
        self.chats.append(body)
        if "say nothing" in content:
            message: dict[str, Any] = {"role": "assistant", "content": ""}
        elif "refund" in content:
            call = {"id": "c1", "type": "function", "function": {"name": "hand_over", "arguments": ""}}
            call["function"]["arguments"] = json.dumps({"reason": "the customer wants a refund"})
            message = {"role": "assistant", "content": None, "tool_calls": [call]}
        else:
            message = {"role": "assistant", "content": f"Grounded answer to: {content}"}
        return JSONResponse({"choices": [{"index": 0, "message": message, "finish_reason": "stop"}]})


@pytest.fixture
def model() -> Iterator[tuple[KnowledgeOpenAI, str]]:
    fake = KnowledgeOpenAI()
    with ServerThread(fake.app) as server:
        yield fake, f"{server.url}/v1"


def post(client: httpx.Client, text: str) -> str:
    message = payloads.text_message(text)
    answer = post_webhook(client, payloads.dumps(payloads.inbound(message)))
    assert answer.status_code == 200, answer.text
    return str(message["id"])


def reply_to(db: psycopg.Connection, wamid: str) -> dict[str, Any] | None:
    return db.execute(
        "SELECT r.* FROM messages r JOIN messages m ON m.id = r.reply_to_message_id"
        " WHERE m.wa_message_id = %s AND r.status = 'sent'",
        (wamid,),
    ).fetchone()


def job_of(db: psycopg.Connection, wamid: str) -> dict[str, Any]:
    row = db.execute(
        "SELECT j.* FROM outbound_jobs j JOIN messages m ON m.id = j.inbound_message_id WHERE m.wa_message_id = %s",
        (wamid,),
    ).fetchone()
    assert row is not None
    return row


def kb(settings: Settings, *args: str) -> str:
    done = run_waypost(settings, "kb", *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_rules_provider_answers_from_the_best_pair_and_a_pair_added_later_counts_at_once(
    client: httpx.Client, db: psycopg.Connection, settings: Settings, start_worker: Callable[..., Any]
) -> None:
    start_worker()
    kb(settings, "add-qa", "Do you deliver to Lyon?", "Yes: everywhere in France within 3 working days.")
    first = post(client, "Hi, do you deliver in Lyon?")
    wait_until(lambda: reply_to(db, first), what="the grounded answer")
    assert reply_to(db, first)["body"] == "Yes: everywhere in France within 3 working days."  # type: ignore[index]
    # no pair matches: the rules' fallback, as before
    other = post(client, "What is the meaning of life?")
    wait_until(lambda: reply_to(db, other), what="the fallback")
    fallback = reply_to(db, other)["body"]  # type: ignore[index]
    assert "France" not in fallback
    # added while the worker runs: the next message finds it (no restart)
    kb(settings, "add-qa", "What is the meaning of life?", "42, according to our founder.")
    again = post(client, "and the meaning of life?")
    wait_until(lambda: reply_to(db, again), what="the answer from the new pair")
    assert reply_to(db, again)["body"] == "42, according to our founder."  # type: ignore[index]


def test_an_empty_knowledge_base_is_not_searched_and_a_first_pair_counts_at_once(
    client: httpx.Client, db: psycopg.Connection, settings: Settings, start_worker: Callable[..., Any]
) -> None:
    worker = start_worker()
    first = post(client, "Do you deliver to Lyon?")
    wait_until(lambda: reply_to(db, first), what="the rules' fallback")
    assert "knowledge search: none, the knowledge base is empty" in worker.output()
    assert "passage(s)" not in worker.output()  # no search ran
    # the first pair, added while the worker runs: the next message searches, and finds it
    kb(settings, "add-qa", "Do you deliver to Lyon?", "Yes: everywhere in France within 3 working days.")
    again = post(client, "Hi, do you deliver in Lyon?")
    wait_until(lambda: reply_to(db, again), what="the grounded answer")
    assert reply_to(db, again)["body"] == "Yes: everywhere in France within 3 working days."  # type: ignore[index]
    assert "knowledge search: 1 passage(s), 1 above the score" in worker.output()


def test_a_pdf_passage_reaches_the_model_and_its_grounded_answer_is_sent(
    client: httpx.Client,
    db: psycopg.Connection,
    settings: Settings,
    start_worker: Callable[..., Any],
    model: tuple[KnowledgeOpenAI, str],
    tmp_path: Path,
) -> None:
    fake, url = model
    (tmp_path / "warranty.pdf").write_bytes(WARRANTY_PDF)
    assert "Added document" in kb(settings, "add", str(tmp_path / "warranty.pdf"), "--title", "Warranty")
    start_worker(WAYPOST_ORCHESTRATOR="openai", OPENAI_BASE_URL=url, OPENAI_MODEL="gpt-test")
    question = post(client, "How long is the warranty on a lamp?")
    wait_until(lambda: reply_to(db, question), what="the model's answer")
    sent = reply_to(db, question)
    assert sent is not None and sent["body"] == "Grounded answer to: How long is the warranty on a lamp?"
    system = fake.chats[-1]["messages"][0]["content"]
    assert "Every lamp has a two-year warranty covering the switch and the cable." in system
    assert "Warranty — Page 1" in system and "Answer only from the knowledge passages" in system
    assert "E27" not in system, "only the passages that match"
    assert [t["function"]["name"] for t in fake.chats[-1]["tools"]] == ["hand_over"]

    # the model calls hand_over: the AI pauses, the customer is told a person will answer, the
    # operators why (README "Handing over")
    refund = post(client, "I want a refund for my lamp under the warranty")
    told = wait_until(lambda: reply_to(db, refund), what="the handover message")
    assert told["body"] == settings.handover_message
    notice = db.execute("SELECT kind, body FROM notifications ORDER BY id DESC LIMIT 1").fetchone()
    assert notice["kind"] == "handover"
    assert notice["body"].startswith("Handed over to a person: the customer wants a refund.")
    # the summary the model wrote, in a request of its own
    assert "\nSummary: Model summary: 3 lines, the last: Customer: I want a refund for my lamp" in notice["body"]
    assert fake.summaries[0]["max_tokens"] == summary.MAX_TOKENS
    assert db.execute("SELECT ai_enabled FROM conversations").fetchone()["ai_enabled"] is False


def test_a_strict_miss_hands_over_without_asking_the_model(
    client: httpx.Client,
    db: psycopg.Connection,
    settings: Settings,
    fake_graph: FakeGraph,
    start_worker: Callable[..., Any],
    model: tuple[KnowledgeOpenAI, str],
) -> None:
    fake, url = model
    kb(settings, "add-qa", "What are your opening hours?", "Monday to Friday, 9:00 to 18:00.")
    start_worker(
        WAYPOST_ORCHESTRATOR="openai", OPENAI_BASE_URL=url, OPENAI_MODEL="gpt-test", WAYPOST_KB_GROUNDING="strict"
    )
    miss = post(client, "Can I pay with bitcoin?")
    wait_until(lambda: reply_to(db, miss), what="the strict miss's handover message")
    notice = db.execute("SELECT kind, body FROM notifications ORDER BY id DESC LIMIT 1").fetchone()
    assert notice is not None and notice["kind"] == "handover"
    assert notice["body"].startswith("Handed over to a person: no knowledge base passage answers this")
    assert fake.chats == [], "no answer asked of the model (only the handover's summary)"
    # an operator resumes the AI: a message the knowledge base answers reaches the model
    db.execute("UPDATE conversations SET ai_enabled = true")
    hit = post(client, "When are you open on Friday?")
    wait_until(lambda: reply_to(db, hit), what="the grounded answer")
    assert len(fake.chats) == 1 and "Monday to Friday, 9:00 to 18:00." in fake.chats[0]["messages"][0]["content"]
    settled(db)
    assert len(fake_graph.accepted()) == 2, "two messages sent: the handover message and the grounded answer"


def test_the_worker_refuses_a_language_postgresql_does_not_have(settings: Settings) -> None:
    done = run_waypost(settings, "worker", WAYPOST_KB_LANGUAGE="klingon")
    assert done.returncode == 2
    assert "WAYPOST_KB_LANGUAGE" in done.stderr and "pg_ts_config" in done.stderr


# --- the command line and the inbox ----------------------------------------------------------------


def test_kb_add_list_search_remove_from_the_command_line(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "faq.md").write_text(FAQ)
    (tmp_path / "pairs.csv").write_text('question,answer\n"Do you ship abroad?","Yes, to all of Europe."\n')
    (tmp_path / "pairs.toml").write_text('[[pairs]]\nquestion = "Gift wrapping?"\nanswer = "Yes, 2 euros."\n')
    assert re.match(r"Added document (\d+) \(3 passage\(s\), english\)", kb(settings, "add", str(tmp_path / "faq.md")))
    assert "Added 1 question/answer pair(s)" in kb(settings, "add-qa", "--file", str(tmp_path / "pairs.csv"))
    assert "Added 1 question/answer pair(s)" in kb(settings, "add-qa", "--file", str(tmp_path / "pairs.toml"))
    listed = json.loads(kb(settings, "list", "--json"))
    assert sorted((d["source_kind"], d["title"], d["passages"]) for d in listed) == [
        ("markdown", "faq", 3),
        ("qa", "Do you ship abroad?", 1),
        ("qa", "Gift wrapping?", 1),
    ]
    found = json.loads(kb(settings, "search", "my lamp arrived broken", "--json"))
    assert found[0]["heading"] == "Acme Lamps > Returns"
    assert "Acme Lamps > Returns" in kb(settings, "search", "my lamp arrived broken")
    faq_id = next(d["id"] for d in listed if d["source_kind"] == "markdown")
    assert kb(settings, "remove", str(faq_id)) == f"Removed {faq_id}: faq\n"
    assert "No passage matches" in kb(settings, "search", "my lamp arrived broken")
    refused = run_waypost(settings, "kb", "remove", str(faq_id))
    assert refused.returncode == 1 and "not found" in refused.stderr
    refused = run_waypost(settings, "kb", "add", str(tmp_path / "faq.md"), "--language", "klingon")
    assert refused.returncode == 1 and "pg_ts_config" in refused.stderr
    (tmp_path / "broken.csv").write_text("only one column\n")
    refused = run_waypost(settings, "kb", "add-qa", "--file", str(tmp_path / "broken.csv"))
    assert refused.returncode == 1 and "question,answer" in refused.stderr
    assert len(json.loads(kb(settings, "list", "--json"))) == 2, "nothing half-added"


def test_the_inbox_page_uploads_adds_searches_and_removes(
    client: httpx.Client, db: psycopg.Connection, settings: Settings
) -> None:
    create_operator(settings.require_database_url())
    inbox = Inbox(client)
    page = client.get("/inbox/knowledge")
    assert page.status_code == 200 and "Nothing yet" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    files = {"file": ("warranty.pdf", WARRANTY_PDF, "application/pdf")}
    added = client.post("/inbox/knowledge/documents", data={"csrf_token": inbox.csrf, "title": "Warranty"}, files=files)
    assert added.status_code == 303, added.text
    pair = {"csrf_token": inbox.csrf, "question": "Do you sell bulbs?", "answer": "Yes, E27 bulbs."}
    assert client.post("/inbox/knowledge/pairs", data=pair).status_code == 303
    rows = db.execute("SELECT id, title, source_kind, created_by FROM kb_documents ORDER BY id").fetchall()
    assert [(r["title"], r["source_kind"], r["created_by"]) for r in rows] == [
        ("Warranty", "pdf", "op@example.com"),
        ("Do you sell bulbs?", "qa", "op@example.com"),
    ]
    found = client.get("/inbox/knowledge", params={"q": "how long is the warranty"})
    assert "two-year warranty" in found.text and "Warranty &gt; Page 1" in found.text

    # refusals: no CSRF token, a file that is not what it says, a body over the limit
    forged = client.post("/inbox/knowledge/pairs", data={**pair, "csrf_token": "forged"})
    assert forged.status_code == 403
    files = {"file": ("fake.pdf", b"not a pdf at all", "application/pdf")}
    bad = client.post("/inbox/knowledge/documents", data={"csrf_token": inbox.csrf}, files=files)
    assert bad.status_code == 400 and "not a PDF file" in bad.text
    huge = client.post(
        "/inbox/knowledge/pairs", data={**pair, "answer": "x" * (2 * knowledge.MAX_QA_CHARS * 12 + 8192)}
    )
    assert huge.status_code == 413
    assert db.execute("SELECT count(*) AS n FROM kb_documents").fetchone() == {"n": 2}

    removed = client.post(f"/inbox/knowledge/{rows[0]['id']}/remove", data={"csrf_token": inbox.csrf})
    assert removed.status_code == 303
    assert "Removed" in client.get(removed.headers["location"]).text
    assert db.execute("SELECT count(*) AS n FROM kb_passages").fetchone() == {"n": 1}
    missing = client.post(f"/inbox/knowledge/{rows[0]['id']}/remove", data={"csrf_token": inbox.csrf})
    assert missing.status_code == 404
