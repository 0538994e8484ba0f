"""The opt-out and opt-in words (WAYPOST_OPT_OUT_WORDS, WAYPOST_OPT_IN_WORDS) and the language each
belongs to, shared by the webhook (which records the opt-out) and the worker (which answers it with the
confirmation in that language: WAYPOST_OPT_OUT_CONFIRMATIONS). A word is written `lang:word`
("es:baja"), or bare for the default confirmation."""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections.abc import Iterable

_SPACES = re.compile(r"\s+")
# a language tag before the word: es, pt_BR, zh-Hant…
_LANGUAGE = re.compile(r"^([A-Za-z]{2,3}(?:[_-][A-Za-z0-9]{2,4})?):(.+)$")


def normalise(text: str) -> str:
    """A message as the word lists are compared with it: case-folded, NFKC, inner spaces collapsed,
    punctuation, symbols (emoji) and spaces trimmed from both ends ("Stop!" is "stop")."""
    text = _SPACES.sub(" ", unicodedata.normalize("NFKC", text).casefold())
    start, end = 0, len(text)
    while start < end and _trimmed(text[start]):
        start += 1
    while end > start and _trimmed(text[end - 1]):
        end -= 1
    return text[start:end]


def _trimmed(char: str) -> bool:
    return char.isspace() or unicodedata.category(char)[0] in "PSZC"


def split_language(item: str) -> tuple[str, str]:
    """`es:baja` is ("es", "baja"); a bare word has the language ""."""
    found = _LANGUAGE.match(item.strip())
    return (found.group(1).lower().replace("-", "_"), found.group(2)) if found else ("", item)


def _table(items: Iterable[str]) -> dict[str, str]:
    table: dict[str, str] = {}
    for item in items:
        language, word = split_language(item)
        if key := normalise(word):
            table.setdefault(key, language)  # the first language listed wins ("stop" is English)
    return table


@dataclasses.dataclass(frozen=True)
class Match:
    kind: str  # opt_out | opt_in
    language: str  # "" when the word has none


@dataclasses.dataclass(frozen=True)
class ConsentWords:
    """The words, normalised, each with its language."""

    opt_out: dict[str, str]
    opt_in: dict[str, str]

    @classmethod
    def of(cls, opt_out: Iterable[str], opt_in: Iterable[str]) -> ConsentWords:
        return cls(_table(opt_out), _table(opt_in))

    def find(self, message_type: str, body: str | None) -> Match | None:
        """The word a whole text message is, else None: a word inside a sentence ("we have got to
        STOP this bill") is never one."""
        if message_type != "text" or not body or len(body) > 100:
            return None
        word = normalise(body)
        if word in self.opt_out:
            return Match("opt_out", self.opt_out[word])
        if word in self.opt_in:
            return Match("opt_in", self.opt_in[word])
        return None

    def match(self, message_type: str, body: str | None) -> str | None:
        """'opt_out' or 'opt_in', or None."""
        found = self.find(message_type, body)
        return found.kind if found else None


def confirmation(texts: dict[str, str], default: str, language: str) -> str:
    """The confirmation in the word's language (pt_BR falls back to pt), else the default."""
    for key in (language, language.split("_")[0]):
        if key and key in texts:
            return texts[key].strip()
    return default.strip()
