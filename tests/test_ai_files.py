"""The AI answers with a stored file (WAYPOST_AI_FILES_DIR): a rules-file rule names it, or an
OpenAI-compatible model calls the send_file tool; the worker uploads it and sends it once, like an
operator's file (tests/test_outbound_media.py). Real PostgreSQL, web server, worker and fake Graph API."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import psycopg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.conftest import ServerThread, post_webhook, settled, wait_for
from tests.files import PDF, SVG
from waypost.devtools import payloads
from waypost.devtools.fake_graph import FakeGraph
from waypost.settings import ConfigurationError, Settings
from worker.orchestrator import ReplyRequest, Turn, build_orchestrator
from worker.orchestrator.rules import RulesOrchestrator


def ai_files_dir(tmp_path: Path) -> Path:
    files = tmp_path / "ai-files"
    files.mkdir()
    (files / "price-list.pdf").write_bytes(PDF)
    (files / "logo.svg").write_bytes(SVG)  # not a document WhatsApp sends: never offered
    return files


def write_rules(tmp_path: Path, file: str = "price-list.pdf") -> Path:
    rules = tmp_path / "rules.toml"
    rules.write_text(
        f"""
[[rules]]
name = "price list"
keywords = ["prices", "price list"]
answer = "Here is our price list, {{contact_name}}."
file = "{file}"
"""
    )
    return rules


def test_a_rules_answer_with_a_file_sends_the_document_once(
    client: httpx.Client, db: psycopg.Connection, fake_graph: FakeGraph, start_worker, tmp_path: Path
) -> None:
    files = ai_files_dir(tmp_path)
    start_worker(WAYPOST_RULES_FILE=str(write_rules(tmp_path)), WAYPOST_AI_FILES_DIR=str(files))
    contacts = [{"profile": {"name": "Sheena"}, "wa_id": "16505551234"}]
    inbound = payloads.text_message("Can I see your prices?")
    body = payloads.dumps(payloads.inbound(inbound, contacts=contacts))
    assert post_webhook(client, body).status_code == 200
    row = wait_for(db, "SELECT * FROM messages WHERE author = 'ai' AND status = 'sent'")
    assert post_webhook(client, body).status_code == 200  # Meta delivers the webhook again
    settled(db)
    assert (row["type"], row["body"]) == ("document", "Here is our price list, Sheena.")
    (upload,) = fake_graph.accepted_uploads()
    assert (upload.filename, upload.mime_type, upload.sha256) == (
        "price-list.pdf",
        "application/pdf",
        hashlib.sha256(PDF).hexdigest(),
    )
    (sent,) = fake_graph.accepted()
    assert sent.body["type"] == "document" and sent.body["context"] == {"message_id": inbound["id"]}
    assert sent.body["document"] == {
        "id": upload.media_id,
        "caption": "Here is our price list, Sheena.",
        "filename": "price-list.pdf",
    }
    media = db.execute("SELECT * FROM media WHERE message_id = %s", [row["id"]]).fetchone()
    assert (media["status"], media["byte_size"], media["wa_media_id"]) == ("stored", len(PDF), upload.media_id)


def test_a_rule_naming_a_file_that_cannot_be_sent_stops_the_worker_at_start(tmp_path: Path) -> None:
    files = ai_files_dir(tmp_path)
    (files / "fake.pdf").write_bytes(b"<html>not a pdf</html>")
    problems = {
        "missing.pdf": "cannot be read",
        "logo.svg": "does not send",
        "fake.pdf": "not application/pdf",
        "../price-list.pdf": "'file' must be the name of a file",
    }
    for name, problem in problems.items():
        try:
            RulesOrchestrator.from_file(write_rules(tmp_path, name), files)
        except ConfigurationError as exc:
            assert problem in str(exc), (name, str(exc))
        else:
            raise AssertionError(f"{name} was accepted")
    try:
        RulesOrchestrator.from_file(write_rules(tmp_path), None)
    except ConfigurationError as exc:
        assert "WAYPOST_AI_FILES_DIR" in str(exc)
    else:
        raise AssertionError("a file without WAYPOST_AI_FILES_DIR was accepted")


class ToolCallingModel:
    """An OpenAI-compatible /chat/completions that calls send_file, recording what it was offered."""

    def __init__(self, arguments: str) -> None:
        self.arguments = arguments
        self.requests: list[dict] = []
        self.app = Starlette(routes=[Route("/v1/chat/completions", self.complete, methods=["POST"])])

    async def complete(self, request: Request) -> JSONResponse:
        self.requests.append(await request.json())
        call = {"id": "call_1", "type": "function", "function": {"name": "send_file", "arguments": self.arguments}}
        message = {"role": "assistant", "content": None, "tool_calls": [call]}
        return JSONResponse({"choices": [{"message": message, "finish_reason": "tool_calls"}]})


async def test_the_openai_provider_offers_the_files_and_answers_with_the_one_the_model_chose(tmp_path: Path) -> None:
    model = ToolCallingModel('{"file": "price-list.pdf", "caption": "Our prices for 2027"}')
    request = ReplyRequest(1, "Ana", (Turn("contact", "prices please"),))
    with ServerThread(model.app) as server:
        settings = Settings(
            orchestrator="openai",
            openai_base_url=f"{server.url}/v1",
            openai_model="test-model",
            ai_files_dir=ai_files_dir(tmp_path),
        )
        orchestrator = build_orchestrator(settings)
        try:
            answer = await orchestrator.reply(request)
            model.arguments = '{"file": "/etc/passwd"}'  # not offered: no file answer
            unknown = await orchestrator.reply(request)
        finally:
            await orchestrator.aclose()
    (tool,) = model.requests[0]["tools"]
    assert tool["function"]["name"] == "send_file"
    assert tool["function"]["parameters"]["properties"]["file"]["enum"] == ["price-list.pdf"]  # no SVG
    assert answer is not None and (answer.kind, answer.text) == ("document", "Our prices for 2027")
    assert answer.payload == {"caption": "Our prices for 2027", "filename": "price-list.pdf"}
    assert unknown is None
