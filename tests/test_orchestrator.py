"""The orchestrator providers: rules from TOML, and an OpenAI-compatible endpoint served on 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.conftest import ServerThread, run_waypost
from waypost.settings import ConfigurationError, Settings
from worker.orchestrator import Answer, Orchestrator, OrchestratorError, ReplyRequest, Turn, build_orchestrator
from worker.orchestrator.rules import RulesOrchestrator


def ask(text: str, *, name: str | None = "Ana", earlier: tuple[Turn, ...] = ()) -> ReplyRequest:
    return ReplyRequest(conversation_id=1, contact_name=name, history=(*earlier, Turn("contact", text)))


async def text_of(orchestrator: Orchestrator, text: str, *, name: str | None = "Ana") -> str | None:
    answer = await orchestrator.reply(ask(text, name=name))
    return answer.text if answer else None


async def test_default_rules_answer_sensibly() -> None:
    rules = RulesOrchestrator.from_file(None)
    assert "Monday to Friday" in await text_of(rules, "What are your opening HOURS?")
    assert await text_of(rules, "hello!") == "Hello Ana! How can we help you today?"
    assert "order number" in await text_of(rules, "where is my order")
    assert (await text_of(rules, "qwerty", name=None)).startswith("Thanks for your message, there!")


async def test_rules_file_first_match_wins_and_no_fallback_means_no_reply(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(
        '[[rules]]\nkeywords = ["refund"]\nanswer = "A"\n\n[[rules]]\nregex = "re(fund|turn)"\nanswer = "B"\n'
    )
    rules = RulesOrchestrator.from_file(path)
    assert await text_of(rules, "I want a refund") == "A"
    assert await text_of(rules, "can I return it") == "B"
    assert await text_of(rules, "refunding") == "B"  # keywords match whole words only
    assert await rules.reply(ask("nothing relevant")) is None


@pytest.mark.parametrize(
    "content, error",
    [
        ("[[rules]]\nkeywords = ['x']\n", "'answer' must be a non-empty string"),
        ("[[rules]]\nanswer = 'x'\n", "give 'keywords', 'regex', 'taps', 'reaction' or several"),
        ("[[rules]]\nregex = '('\nanswer = 'x'\n", "bad regex"),
        ("[[rules]]\nreaction = ['👍', 3]\nanswer = 'x'\n", "'reaction' must be a list of emojis"),
        ('[[rules]]\nreaction = ["\\ufe0f"]\nanswer = "x"\n', "'reaction' must be a list of emojis"),  # no emoji
        ("fallback = 3\n", "'fallback' must be a string"),
        ("not toml = = =", "not valid TOML"),
    ],
)
def test_broken_rules_are_a_clear_configuration_error(tmp_path: Path, content: str, error: str) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(content)
    with pytest.raises(ConfigurationError, match=error):
        RulesOrchestrator.from_file(path)


class FakeCompletions:
    """An OpenAI-compatible /v1/chat/completions server; answers 429 and 503 first when told to, and
    answers `raw_content` (a JSON string literal, escapes and all) when given."""

    def __init__(self, failures: list[int], raw_content: str | None = None) -> None:
        self.failures = failures
        self.raw_content = raw_content
        self.requests: list[dict] = []
        self.app = Starlette(routes=[Route("/v1/chat/completions", self.complete, methods=["POST"])])

    async def complete(self, request: Request) -> JSONResponse:
        self.requests.append(
            {"body": json.loads(await request.body()), "authorization": request.headers.get("authorization")}
        )
        if self.failures:
            return JSONResponse({"error": {"message": "busy"}}, status_code=self.failures.pop(0))
        if self.raw_content is not None:  # JSONResponse could not even encode a lone surrogate
            body = '{"choices": [{"message": {"role": "assistant", "content": "' + self.raw_content + '"}}]}'
            return Response(body.encode(), media_type="application/json")  # type: ignore[return-value]
        last = self.requests[-1]["body"]["messages"][-1]["content"]
        return JSONResponse(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": f"  You said: {last}  "},
                        "finish_reason": "stop",
                    }
                ],
            }
        )


def openai_settings(url: str, **extra) -> Settings:
    return Settings(
        orchestrator="openai",
        openai_base_url=f"{url}/v1",
        openai_api_key="sk-test",
        openai_model="test-model",
        system_prompt="Be brief.",
        openai_max_retries=3,
        **extra,
    )


async def test_openai_provider_sends_history_and_retries_429_and_5xx() -> None:
    fake = FakeCompletions(failures=[429, 503])
    with ServerThread(fake.app) as server:
        orchestrator = build_orchestrator(openai_settings(server.url))
        try:
            answer = await orchestrator.reply(
                ask(
                    "Do you ship to Spain?",
                    earlier=(Turn("contact", "Hi"), Turn("ai", "Hello!"), Turn("operator", "I'm Eva from support.")),
                )
            )
        finally:
            await orchestrator.aclose()
    assert answer == Answer("You said: Do you ship to Spain?")
    assert len(fake.requests) == 3
    request = fake.requests[-1]
    assert request["authorization"] == "Bearer sk-test"
    assert request["body"]["model"] == "test-model"
    assert request["body"]["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "assistant", "content": "I'm Eva from support."},
        {"role": "user", "content": "Do you ship to Spain?"},
    ]


async def test_openai_provider_gives_up_with_an_orchestrator_error() -> None:
    fake = FakeCompletions(failures=[500, 500, 500])
    with ServerThread(fake.app) as server:
        orchestrator = build_orchestrator(openai_settings(server.url).model_copy(update={"openai_max_retries": 2}))
        with pytest.raises(OrchestratorError, match="500"):
            await orchestrator.reply(ask("hello"))
        await orchestrator.aclose()
    assert len(fake.requests) == 3


def test_openai_end_to_end_through_the_worker(client, db, fake_graph, start_worker, settings) -> None:
    from tests.test_reply import deliver, job_with_status

    fake = FakeCompletions(failures=[])
    with ServerThread(fake.app) as server:
        start_worker(
            WAYPOST_ORCHESTRATOR="openai",
            OPENAI_BASE_URL=f"{server.url}/v1",
            OPENAI_MODEL="m",
            WAYPOST_HISTORY_MESSAGES="2",
        )
        deliver(client, "first", wa_id="777")
        job_with_status(db, "done")
        deliver(client, "second", wa_id="777")
        job_with_status(db, "done", count=2)
    assert fake_graph.requests[-1].body["text"]["body"] == "You said: second"
    # the last 2 messages of the conversation: the AI's first reply, then the new question
    assert [m["content"] for m in fake.requests[-1]["body"]["messages"][1:]] == ["You said: first", "second"]


def test_a_model_answer_postgresql_cannot_hold_is_cleaned_and_sent(client, db, fake_graph, start_worker) -> None:
    """A NUL or a lone surrogate in the model's answer made every write of the reply fail: the job
    stayed `running` and the sweep asked the model again every minute."""
    from tests.test_reply import deliver, job_with_status

    fake = FakeCompletions(failures=[], raw_content="Hello\\u0000 there \\ud800!")
    with ServerThread(fake.app) as server:
        start_worker(WAYPOST_ORCHESTRATOR="openai", OPENAI_BASE_URL=f"{server.url}/v1", OPENAI_MODEL="m")
        deliver(client, "hi")
        [job] = job_with_status(db, "done", "failed")
    assert job["status"] == "done", job["last_error"]
    assert fake_graph.accepted()[-1].body["text"]["body"] == "Hello\ufffd there \ufffd!"
    assert len(fake.requests) == 1


@pytest.mark.parametrize(
    "env, error",
    [
        ({"WAYPOST_ORCHESTRATOR": "openai"}, "OPENAI_BASE_URL must be an http(s) URL"),
        ({"WAYPOST_ORCHESTRATOR": "openai", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}, "OPENAI_MODEL is not set"),
        ({"WAYPOST_RULES_FILE": "/nonexistent/rules.toml"}, "cannot read rules file"),
        ({"WAYPOST_ORCHESTRATOR": "magic"}, "WAYPOST_ORCHESTRATOR"),
        ({"WHATSAPP_ACCESS_TOKEN": ""}, "WHATSAPP_ACCESS_TOKEN is not set"),
        ({"WAYPOST_TRANSCRIBE_URL": "whisper.local:8080"}, "WAYPOST_TRANSCRIBE_URL must be an http(s) URL"),
    ],
)
def test_broken_configuration_stops_the_worker_at_start(settings: Settings, env: dict, error: str) -> None:
    result = run_waypost(settings, "worker", **env)
    assert result.returncode != 0
    assert error in result.stderr, result.stderr[-2000:]
