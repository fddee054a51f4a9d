"""Short answers to the bot's questions: yes, no, skip, an age, or the word that starts deletion.

Why not only the NLU model: a texter answering "Are you safe right now?" types "n", "2", "👍",
"oo po" or nothing at all. Those are too short for a statistical model to be sure of, and a wrong
reading here is dangerous, so the whole message is looked up in reviewed word lists
(data/conversation/answers.yml) first: the conversation's language, then words that mean the same
in every language, then the other languages when the word means one thing in all of them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from bot import DATA_DIR
from bot.nlu.language_id import fold

ANSWERS_FILE = DATA_DIR / "conversation" / "answers.yml"
KINDS = ("yes", "no", "skip", "delete")
YES, NO, SKIP = "yes", "no", "skip"
#: A message longer than this is not a short answer, whatever words it holds.
MAX_ANSWER_LENGTH = 40
#: Punctuation dropped before matching, anywhere in the message.
_PUNCTUATION = re.compile("[" + re.escape(".!?¡¿,;:'\"()[]-_*~…。！？،؟") + "]")
_AGE = re.compile(r"(?<!\d)(\d{1,2})(?!\d)")


def normalise(text: str) -> str:
    """Case and Latin accents folded, punctuation removed, whitespace collapsed ("Sí, claro!" is
    "si claro")."""
    return " ".join(_PUNCTUATION.sub(" ", fold(text)).split())


@dataclass(frozen=True)
class Answers:
    by_language: dict[str, dict[str, str]]
    anywhere: dict[str, str]
    unambiguous: dict[str, str]

    @classmethod
    def load(cls, path: Path = ANSWERS_FILE) -> "Answers":
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        by_language = {lang: _table(words) for lang, words in data["languages"].items()}
        meanings: dict[str, set[str]] = {}
        for table in by_language.values():
            for word, kind in table.items():
                meanings.setdefault(word, set()).add(kind)
        unambiguous = {word: kinds.pop() for word, kinds in meanings.items() if len(kinds) == 1}
        return cls(by_language, _table(data["any_language"]), unambiguous)

    def classify(self, text: str | None, language: str | None = None) -> str | None:
        """``yes``, ``no``, ``skip``, ``delete``, or ``None`` when the message is not a short answer.

        An empty message (or one of only punctuation) is a skip: "nothing" is a valid answer."""
        if text is None or len(text) > MAX_ANSWER_LENGTH:
            return None
        word = normalise(text)
        if not word:
            return SKIP
        for table in (self.by_language.get(language or "", {}), self.anywhere, self.unambiguous):
            if word in table:
                return table[word]
        return None


def _table(words: dict[str, list]) -> dict[str, str]:
    return {normalise(str(word)): kind for kind in KINDS for word in words.get(kind) or [] if normalise(str(word))}


@lru_cache(maxsize=1)
def answers() -> Answers:
    return Answers.load()


def parse_age(text: str | None) -> int | None:
    """An age written as digits (any script's digits: "16", "١٦", "१६"), alone or in a short reply."""
    if not text or len(text) > MAX_ANSWER_LENGTH:
        return None
    digits = "".join(str(int(ch)) if ch.isdecimal() else ch for ch in text)
    found = _AGE.findall(digits)
    if len(found) != 1:
        return None
    age = int(found[0])
    return age if 5 <= age <= 99 else None
