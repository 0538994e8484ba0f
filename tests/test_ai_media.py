"""What the AI reads of media, reactions and replies in context: a voice note is transcribed by an
OpenAI-compatible server (a real one on 127.0.0.1, below) and answered from its transcript; a photo
reaches a vision model as an image part; a document's name and a quoted message reach the model as
text; a reaction to the AI's question is answered; and a reply waits for its file without holding a
worker, whatever becomes of the download."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.types.json import Jsonb
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.conftest import CRON_SECRET, ServerThread, post_webhook, settled, wait_until
from tests.inbox_client import Inbox, conversation_id, create_operator
from waypost.devtools import payloads
from waypost.devtools.fake_graph import FakeGraph
from waypost.settings import Settings
from worker.orchestrator import Image, Quote, ReplyRequest, Turn
from worker.orchestrator.rules import RulesOrchestrator

VOICE = b"OggS" + bytes(range(256)) * 4100  # a bit over 1 MiB: more than one stored chunk
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
OPENING_HOURS = "We are open Monday to Friday, 9:00 to 18:00, and Saturday 10:00 to 14:00."


class FakeOpenAI:
    """An OpenAI-compatible server that records what it receives: `/v1/audio/transcriptions` answers
    `transcript` (after failing with `transcribe_failures`, one status per request), and
    `/v1/chat/completions` answers "Model answer to: <the last message's text>"."""

    def __init__(self, transcript: str = "", transcribe_failures: tuple[int, ...] = ()) -> None:
        self.transcript = transcript
        self.transcribe_failures = list(transcribe_failures)
        self.uploads: list[dict[str, Any]] = []
        self.chats: list[dict[str, Any]] = []
        self.app = Starlette(
            routes=[
                Route("/v1/audio/transcriptions", self.transcribe, methods=["POST"]),
                Route("/v1/chat/completions", self.complete, methods=["POST"]),
            ]
        )

    async def transcribe(self, request: Request) -> JSONResponse:
        form = await request.form(max_part_size=32 * 1024 * 1024)
        upload = form["file"]
        assert isinstance(upload, UploadFile)
        self.uploads.append(
            {
                "authorization": request.headers.get("authorization"),
                "content_length": request.headers.get("content-length"),
                "model": form["model"],
                "response_format": form.get("response_format"),
                "filename": upload.filename,
                "content_type": upload.content_type,
                "data": await upload.read(),
            }
        )
        if self.transcribe_failures:
            return JSONResponse({"error": {"message": "busy"}}, status_code=self.transcribe_failures.pop(0))
        return JSONResponse({"text": self.transcript})

    async def complete(self, request: Request) -> JSONResponse:
        body = json.loads(await request.body())
        self.chats.append({"body": body, "authorization": request.headers.get("authorization")})
        content = body["messages"][-1]["content"]
        if not isinstance(content, str):
            content = " ".join(part["text"] for part in content if part["type"] == "text")
        answer = {"role": "assistant", "content": f"Model answer to: {content}"}
        return JSONResponse({"choices": [{"index": 0, "message": answer, "finish_reason": "stop"}]})


@pytest.fixture
def openai_server() -> Iterator[tuple[FakeOpenAI, str]]:
    fake = FakeOpenAI()
    with ServerThread(fake.app) as server:
        yield fake, f"{server.url}/v1"


def post(client: httpx.Client, message: dict[str, Any]) -> str:
    answer = post_webhook(client, payloads.dumps(payloads.inbound(message)))
    assert answer.status_code == 200, answer.text
    return str(message["id"])


def one(db: psycopg.Connection, sql: str, *params: Any) -> dict[str, Any]:
    row = db.execute(sql, params).fetchone()
    assert row is not None, sql
    return row


def media_of(db: psycopg.Connection, wamid: str) -> dict[str, Any]:
    sql = "SELECT md.* FROM media md JOIN messages m ON m.id = md.message_id WHERE m.wa_message_id = %s"
    return one(db, sql, wamid)


def reply_to(db: psycopg.Connection, wamid: str) -> dict[str, Any] | None:
    """The AI's reply to an inbound message, once sent."""
    return db.execute(
        "SELECT r.* FROM messages r JOIN messages m ON m.id = r.reply_to_message_id"
        " WHERE m.wa_message_id = %s AND r.status = 'sent'",
        (wamid,),
    ).fetchone()


def transcribing(url: str, **env: str) -> dict[str, str]:
    return {"WAYPOST_TRANSCRIBE_URL": url, "WAYPOST_TRANSCRIBE_API_KEY": "sk-transcribe", **env}


def test_a_voice_note_whose_download_fails_twice_is_answered_from_its_transcript_once_stored(
    client: httpx.Client,
    db: psycopg.Connection,
    fake_graph: FakeGraph,
    start_worker: Callable[..., Any],
    openai_server: tuple[FakeOpenAI, str],
    database_url: str,
) -> None:
    fake, url = openai_server
    fake.transcript = "Hi, what are your opening hours on Saturday?"
    fake_graph.add_media("voice-hours", VOICE, "audio/ogg", fail_lookups=1, fail_downloads=1)
    wamid = post(client, payloads.media_message("audio", "voice-hours", mime_type="audio/ogg; codecs=opus", voice=True))
    worker = start_worker(**transcribing(url))

    sent = wait_until(lambda: reply_to(db, wamid), what="the answer to the voice note")
    media = media_of(db, wamid)
    assert (media["status"], media["attempts"]) == ("stored", 3)
    assert (media["transcript_status"], media["transcript"]) == ("done", fake.transcript)
    # the reply waited for the file and its transcript, and was answered from the words said
    assert sent["body"] == OPENING_HOURS
    assert media["stored_at"] < media["transcribed_at"] < sent["created_at"]
    assert [r.body["text"]["body"] for r in fake_graph.accepted()] == [OPENING_HOURS]
    assert fake_graph.accepted()[0].body["context"] == {"message_id": wamid}  # it quotes the voice note
    # waiting took no attempt and no worker slot: one parked run, one woken run
    job = one(db, "SELECT * FROM outbound_jobs")
    assert (job["status"], job["attempts"], job["waiting_since"]) == ("done", 1, None)
    assert "waiting for file" in worker.output()
    runs = one(db, "SELECT count(*) AS n FROM procrastinate_jobs WHERE task_name = 'send_reply'")["n"]
    assert runs == 2
    # the file went to the transcription server whole, streamed with its length, with its own key
    [upload] = fake.uploads
    assert upload["data"] == VOICE and int(upload["content_length"]) > len(VOICE)
    assert upload["authorization"] == "Bearer sk-transcribe"
    assert (upload["model"], upload["response_format"], upload["filename"]) == ("whisper-1", "json", "voice.ogg")
    assert upload["content_type"] == "audio/ogg"
    assert "sk-transcribe" not in worker.output()

    # the operators read it under the player
    create_operator(database_url)
    inbox = Inbox(client)
    listed = inbox.get(f"/api/inbox/conversations/{conversation_id(db)}").json()["messages"]
    voice = next(m for m in listed if m["wa_message_id"] == wamid)["media"]
    assert (voice["transcript_status"], voice["transcript"]) == ("done", fake.transcript)
    page = inbox.get(f"/inbox/conversations/{conversation_id(db)}").text
    assert f'<p class="transcript" title="transcript">{fake.transcript}</p>' in page


def test_a_download_that_never_succeeds_still_gets_the_reply_the_unreadable_answer(
    client: httpx.Client,
    db: psycopg.Connection,
    fake_graph: FakeGraph,
    start_worker: Callable[..., Any],
    openai_server: tuple[FakeOpenAI, str],
    settings: Settings,
) -> None:
    fake, url = openai_server
    fake_graph.add_media("voice-gone", VOICE, "audio/ogg", fail_lookups=100)
    wamid = post(client, payloads.media_message("audio", "voice-gone", mime_type="audio/ogg", voice=True))
    start_worker(**transcribing(url, WAYPOST_MEDIA_MAX_ATTEMPTS="2"))
    sent = wait_until(lambda: reply_to(db, wamid), what="the answer to the voice note")
    media = media_of(db, wamid)
    assert (media["status"], media["attempts"], media["transcript_status"]) == ("failed", 2, None)
    assert sent["body"] == settings.media_unreadable_reply and sent["created_at"] > media["created_at"]
    kinds = {row["kind"] for row in db.execute("SELECT kind FROM notifications").fetchall()}
    assert kinds == {"media_failed", "operator_needed"}
    assert fake.uploads == [] and fake.chats == []
    settled(db)
    assert len(fake_graph.accepted()) == 1


def test_a_transcription_that_keeps_failing_falls_back_to_the_unreadable_answer(
    client: httpx.Client,
    db: psycopg.Connection,
    fake_graph: FakeGraph,
    start_worker: Callable[..., Any],
    openai_server: tuple[FakeOpenAI, str],
    settings: Settings,
) -> None:
    fake, url = openai_server
    fake.transcribe_failures = [503, 429, 503]
    fake_graph.add_media("voice-mumble", VOICE, "audio/ogg")
    wamid = post(client, payloads.media_message("audio", "voice-mumble", mime_type="audio/ogg", voice=True))
    start_worker(**transcribing(url, WAYPOST_MEDIA_MAX_ATTEMPTS="3"))
    sent = wait_until(lambda: reply_to(db, wamid), what="the answer to the voice note")
    media = media_of(db, wamid)
    assert (media["status"], media["transcript_status"], media["transcript_attempts"]) == ("stored", "failed", 3)
    assert "HTTP 503" in media["transcript_error"]
    assert sent["body"] == settings.media_unreadable_reply
    notices = db.execute("SELECT kind, body FROM notifications ORDER BY id").fetchall()
    assert any(n["kind"] == "media_failed" and "transcribed" in n["body"] for n in notices)
    assert any(n["kind"] == "operator_needed" for n in notices)
    assert len(fake.uploads) == 3


@pytest.mark.parametrize("vision", [True, False])
def test_a_photo_reaches_a_vision_model_as_an_image_part_and_otherwise_only_its_caption(
    vision: bool,
    client: httpx.Client,
    db: psycopg.Connection,
    fake_graph: FakeGraph,
    start_worker: Callable[..., Any],
    openai_server: tuple[FakeOpenAI, str],
    settings: Settings,
) -> None:
    fake, url = openai_server
    fake_graph.add_media("photo-lamp", PNG, "image/png")
    fake_graph.add_media("photo-plain", PNG, "image/png")
    captioned = post(client, payloads.media_message("image", "photo-lamp", mime_type="image/png", caption="Broken?"))
    start_worker(
        WAYPOST_ORCHESTRATOR="openai",
        OPENAI_BASE_URL=url,
        OPENAI_MODEL="gpt-test",
        OPENAI_VISION="1" if vision else "0",
    )
    wait_until(lambda: reply_to(db, captioned), what="the answer to the photo")
    last = fake.chats[-1]["body"]["messages"][-1]
    if vision:
        data_url = "data:image/png;base64," + base64.b64encode(PNG).decode()
        assert last == {
            "role": "user",
            "content": [
                {"type": "text", "text": "[a photo] Broken?"},
                {"type": "image_url", "image_url": {"url": data_url}},
            ],
        }
    else:
        assert last == {"role": "user", "content": "[a photo] Broken?"}

    # without a caption, a vision model answers it; any other gets the unreadable answer
    plain = post(client, payloads.media_message("image", "photo-plain", mime_type="image/png"))
    sent = wait_until(lambda: reply_to(db, plain), what="the answer to the uncaptioned photo")
    if vision:
        assert sent["body"] == "Model answer to: [a photo]" and len(fake.chats) == 2
        assert fake.chats[-1]["body"]["messages"][-1]["content"][1]["type"] == "image_url"
        # the earlier photo stays in the history as text only
        assert fake.chats[-1]["body"]["messages"][1] == {"role": "user", "content": "[a photo] Broken?"}
    else:
        assert sent["body"] == settings.media_unreadable_reply and len(fake.chats) == 1


def test_a_documents_name_and_a_quoted_message_reach_the_model_as_text(
    client: httpx.Client,
    db: psycopg.Connection,
    fake_graph: FakeGraph,
    start_worker: Callable[..., Any],
    openai_server: tuple[FakeOpenAI, str],
) -> None:
    fake, url = openai_server
    fake_graph.add_media("doc-invoice", b"%PDF-1.4 invoice", "application/pdf")
    start_worker(WAYPOST_ORCHESTRATOR="openai", OPENAI_BASE_URL=url, OPENAI_MODEL="gpt-test")
    order = post(client, payloads.text_message("My order number is 4417"))
    wait_until(lambda: reply_to(db, order), what="the first answer")
    document = payloads.media_message(
        "document", "doc-invoice", mime_type="application/pdf", filename="invoice-4417.pdf", caption="Here it is"
    )
    post(client, document)
    wait_until(lambda: reply_to(db, document["id"]), what="the answer to the document")
    assert fake.chats[-1]["body"]["messages"][-1]["content"] == '[document "invoice-4417.pdf"] Here it is'

    # a reply in context: the model is told what the contact replied to, theirs or the AI's
    answer = {**payloads.text_message("Any news on this one?"), "context": {"from": "16505551234", "id": order}}
    post(client, answer)
    wait_until(lambda: reply_to(db, answer["id"]), what="the answer in context")
    quoted = '(replying to their own message: "My order number is 4417") Any news on this one?'
    assert fake.chats[-1]["body"]["messages"][-1]["content"] == quoted
    ai_wamid = reply_to(db, order)["wa_message_id"]  # type: ignore[index]
    on_ai = {**payloads.text_message("Why?"), "context": {"from": "16505551234", "id": ai_wamid}}
    post(client, on_ai)
    wait_until(lambda: reply_to(db, on_ai["id"]), what="the answer to a quote of the AI")
    said = "Model answer to: My order number is 4417"
    assert fake.chats[-1]["body"]["messages"][-1]["content"] == f'(replying to your message: "{said}") Why?'


def reaction(target: str, emoji: str) -> dict[str, Any]:
    message = payloads.text_message("x")
    del message["text"]
    return {**message, "type": "reaction", "reaction": {"message_id": target, "emoji": emoji}}


def test_a_reaction_to_the_ais_question_reaches_the_rules_as_its_answer(
    client: httpx.Client,
    db: psycopg.Connection,
    fake_graph: FakeGraph,
    start_worker: Callable[..., Any],
    tmp_path: Path,
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[[rules]]\nkeywords = ["appointment"]\nanswer = "Is Friday 2 pm good for you?"\n\n'
        '[[rules]]\nreaction = ["👍"]\nanswer = "Booked: see you on Friday at 2 pm!"\n\n'
        '[[rules]]\nreaction = ["👎"]\nanswer = "Which day suits you better?"\n'
    )
    start_worker(WAYPOST_RULES_FILE=str(rules))
    asked = post(client, payloads.text_message("I need an appointment"))
    question = wait_until(lambda: reply_to(db, asked), what="the AI's question")
    assert question["body"] == "Is Friday 2 pm good for you?"

    thumbs = post(client, reaction(question["wa_message_id"], "👍🏽"))  # any skin tone
    booked = wait_until(lambda: reply_to(db, thumbs), what="the answer to the reaction")
    assert booked["body"] == "Booked: see you on Friday at 2 pm!"
    # the reply quotes the question reacted to (a reaction is not a bubble one can quote)
    assert fake_graph.accepted()[-1].body["context"] == {"message_id": question["wa_message_id"]}

    # a reaction to anything else (the contact's own message, the AI's answer that asked nothing)
    # and a reaction taken back are shown to the operators, never answered
    post(client, reaction(asked, "👎"))
    post(client, reaction(booked["wa_message_id"], "👍"))
    post(client, reaction(question["wa_message_id"], ""))
    taken_back = reaction(question["wa_message_id"], "")
    del taken_back["reaction"]["emoji"]  # Meta's way: no emoji field at all
    post(client, taken_back)
    post(client, reaction(question["wa_message_id"], "❤️"))  # changed its mind: answered once already
    settled(db)
    assert one(db, "SELECT count(*) AS n FROM outbound_jobs")["n"] == 2
    assert len(fake_graph.accepted()) == 2


async def test_the_rules_match_reactions_transcripts_and_document_names() -> None:
    rules = RulesOrchestrator.from_file(None)
    question = Quote("ai", "Is Friday 2 pm good?")

    async def ask(turn: Turn) -> str | None:
        answer = await rules.reply(ReplyRequest(1, "Ana", (turn,)))
        return answer.text if answer else None

    assert await ask(Turn("contact", "👍", kind="reaction", quoted=question)) == "Great, thank you for confirming!"
    assert await ask(Turn("contact", "👍🏿")) == "Great, thank you for confirming!"  # typed, not reacted
    assert await ask(Turn("contact", "when do you open?", kind="audio")) == OPENING_HOURS
    price = await ask(Turn("contact", "", kind="document", filename="price list.pdf"))
    assert price is not None and price.startswith("You can find our current prices")


def test_what_a_model_reads_of_each_kind_of_turn() -> None:
    question = Quote("ai", "Is Friday 2 pm good?")
    assert Turn("contact", "👍", kind="reaction", quoted=question).describe() == (
        'The customer reacted 👍 to: "Is Friday 2 pm good?"'
    )
    assert Turn("contact", "see you", quoted=question).describe() == (
        '(replying to your message: "Is Friday 2 pm good?") see you'
    )
    assert Turn("contact", "ok", kind="audio").describe() == "[voice note, transcribed] ok"
    assert Turn("contact", "", kind="sticker").describe() == "[a sticker]"
    assert Turn("contact", "", kind="image", quoted=Quote("contact", "", "audio")).describe() == (
        "(replying to their own message: [a voice note]) [a photo]"
    )
    assert not Turn("contact", " ", kind="document", filename="x.pdf").readable
    assert Turn("contact", "", kind="image", image=Image("image/png", PNG)).readable


def test_the_sweep_keeps_a_lost_download_going_and_no_reply_waits_forever(
    client: httpx.Client, db: psycopg.Connection, settings: Settings
) -> None:
    lost, spent = (
        payloads.media_message("audio", f"voice-{n}", mime_type="audio/ogg", voice=True, wa_id=f"155500000{n}")
        for n in (1, 2)
    )
    for message in (lost, spent):
        post(client, message)
    spent_media = media_of(db, spent["id"])["id"]
    # no worker: both downloads' jobs are lost; the second one is out of attempts and its reply was
    # left waiting for it (as a reply run that found the file pending leaves it)
    db.execute("DELETE FROM procrastinate_jobs")
    db.execute("UPDATE media SET created_at = now() - interval '1 minute'")
    db.execute("UPDATE media SET attempts = %s WHERE id = %s", (settings.media_max_attempts, spent_media))
    db.execute(
        "UPDATE outbound_jobs SET waiting_since = now(), updated_at = now() - interval '1 minute'"
        " WHERE inbound_message_id = (SELECT message_id FROM media WHERE id = %s)",
        (spent_media,),
    )
    headers = {"Authorization": f"Bearer {CRON_SECRET}"}
    report = client.post("/api/cron/run-outbound-jobs", headers=headers).json()
    assert (report["media_requeued"], report["media_given_up"]) == (1, 1)
    # the first download is queued again; the second is given up, the operators told, its reply woken
    assert media_of(db, lost["id"])["status"] == "pending"
    downloads = db.execute(
        "SELECT args FROM procrastinate_jobs WHERE status = 'todo' AND task_name = 'download_media'"
    ).fetchall()
    assert [job["args"]["media_id"] for job in downloads] == [media_of(db, lost["id"])["id"]]
    failed = media_of(db, spent["id"])
    assert (failed["status"], failed["last_error"]) == (
        "failed",
        f"gave up after {settings.media_max_attempts} attempt(s)",
    )
    assert one(db, "SELECT count(*) AS n FROM notifications WHERE kind = 'media_failed'")["n"] == 1
    job = one(
        db,
        "SELECT j.waiting_since, q.task_name, q.status FROM outbound_jobs j"
        " JOIN procrastinate_jobs q ON q.id = j.procrastinate_job_id WHERE j.inbound_message_id = %s",
        failed["message_id"],
    )
    assert (job["waiting_since"], job["task_name"], job["status"]) == (None, "send_reply", "todo")
    # a second sweep finds every download and reply in motion
    again = client.post("/api/cron/run-outbound-jobs", headers=headers).json()
    assert (again["media_requeued"], again["media_given_up"]) == (0, 0)


def test_two_reactions_to_one_question_in_flight_together_are_answered_once(
    client: httpx.Client, db: psycopg.Connection, database_url: str
) -> None:
    """The second reaction's webhook decides after the first's commits (the conversation's lock is
    taken before the decision), so it sees the first one's reply job."""
    post(client, payloads.text_message("I need an appointment"))
    cid = one(db, "SELECT id FROM conversations")["id"]
    db.execute(
        "INSERT INTO messages (conversation_id, direction, author, wa_message_id, idempotency_key, type, body, status)"
        " VALUES (%s, 'outbound', 'ai', 'wamid.QUESTION', 'reply:q', 'text', 'Is Friday good for you?', 'sent')",
        [cid],
    )
    with psycopg.connect(database_url) as first:  # the first reaction's webhook, not committed yet
        first.execute("SELECT id FROM conversations WHERE id = %s FOR UPDATE", [cid])
        inbound = first.execute(
            "INSERT INTO messages (conversation_id, direction, author, wa_message_id, type, body, payload, status)"
            " VALUES (%s, 'inbound', 'contact', 'wamid.THUMBS', 'reaction', '👍', %s, 'received') RETURNING id",
            [cid, Jsonb({"reaction": {"message_id": "wamid.QUESTION", "emoji": "👍"}})],
        ).fetchone()
        assert inbound is not None
        job = "INSERT INTO outbound_jobs (inbound_message_id, conversation_id) VALUES (%s, %s)"
        first.execute(job, [inbound[0], cid])
        second = threading.Thread(target=post, args=(client, reaction("wamid.QUESTION", "❤️")))
        second.start()
        wait_until(
            lambda: one(db, "SELECT count(*) AS n FROM pg_locks WHERE NOT granted")["n"] > 0, what="the second waiting"
        )
        first.commit()
        second.join(timeout=20)
    jobs = one(
        db,
        "SELECT count(*) AS n FROM outbound_jobs j JOIN messages m ON m.id = j.inbound_message_id"
        " WHERE m.type = 'reaction'",
    )
    assert jobs["n"] == 1
