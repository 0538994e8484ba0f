"""Answers grounded in the business's knowledge base (README "Knowledge base").

`GroundedOrchestrator` wraps the configured provider: for each turn it searches the knowledge base
(waypost.knowledge, read per turn: no restart after `waypost kb add`) for the customer's latest
words and hands the passages scoring at least WAYPOST_KB_MIN_SCORE to the provider (the `rules`
provider: only for a turn none of its rules matches, the only one it answers from them). The `openai`
provider is then told to answer only from them and the conversation, or to call its hand_over tool;
the `rules` provider answers from the best question/answer pair when no rule matches.

WAYPOST_KB_GROUNDING=strict: a turn with no passage above the score is handed over without asking
the model (the `rules` provider still answers from its own rules first). `lenient`: the provider
answers as it would without a knowledge base.
"""

from __future__ import annotations

import dataclasses
import logging

from waypost import knowledge
from waypost.db import Pool, autocommit
from waypost.errors import BadInput
from waypost.settings import ConfigurationError, Settings
from worker.orchestrator import Answer, Handover, Orchestrator, ReplyRequest

logger = logging.getLogger(__name__)


NO_PASSAGE = "no knowledge base passage answers this"


def no_passage(best: float | None, settings: Settings) -> Handover:
    found = f"the best scored {best:.2f}" if best is not None else "none matched"
    return Handover(f"{NO_PASSAGE} (WAYPOST_KB_MIN_SCORE {settings.kb_min_score:g}; {found})")


class GroundedOrchestrator:
    def __init__(self, inner: Orchestrator, settings: Settings, pool: Pool) -> None:
        self.inner = inner
        self.name = inner.name
        self.settings = settings
        self.pool = pool

    async def passages(self, request: ReplyRequest) -> list[knowledge.Hit]:
        words = request.customer_words()
        if not words or not request.knowledge_base:
            return []
        # A lost database raises as any query of the reply run does: the job runs again shortly
        # (worker.sending.run_send_task), without spending the orchestrator's retry budget.
        async with autocommit(self.pool) as conn:  # one read: no BEGIN and COMMIT round trips
            return await knowledge.search(
                conn, words, limit=self.settings.kb_passages, qa_only=self.inner.name == "rules"
            )

    async def reply(self, request: ReplyRequest) -> Answer | Handover | None:
        needs_knowledge = getattr(self.inner, "needs_knowledge", None)  # the rules provider's
        if needs_knowledge is not None and not needs_knowledge(request):
            return await self.inner.reply(request)  # a rule answers, whatever the knowledge base holds
        hits = await self.passages(request)
        strong = tuple(hit for hit in hits if hit.score >= self.settings.kb_min_score)
        strict = self.settings.kb_grounding == "strict"
        scores = ", ".join(f"{hit.passage_id}:{hit.score:.2f}" for hit in hits) or "-"
        if not request.knowledge_base:
            logger.info("knowledge search: none, the knowledge base is empty")
        else:
            logger.info("knowledge search: %d passage(s), %d above the score (%s)", len(hits), len(strong), scores)
        if strict and not strong and self.inner.name != "rules":
            return no_passage(hits[0].score if hits else None, self.settings)
        return await self.inner.reply(dataclasses.replace(request, knowledge=strong, strict=strict))

    async def aclose(self) -> None:
        await self.inner.aclose()


async def grounded(inner: Orchestrator, settings: Settings, pool: Pool) -> GroundedOrchestrator:
    """The provider with the knowledge base; WAYPOST_KB_LANGUAGE checked against pg_ts_config now,
    so a misspelt language stops the worker at start."""
    try:
        async with pool.connection() as conn:
            await knowledge.check_language(conn, settings.kb_language)
    except BadInput as exc:
        raise ConfigurationError(f"WAYPOST_KB_LANGUAGE: {exc}") from exc
    return GroundedOrchestrator(inner, settings, pool)
