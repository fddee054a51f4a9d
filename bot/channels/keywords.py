"""Carrier keywords (STOP, START, HELP and their French and Spanish forms) from reviewed data.

A keyword counts only as the whole message: "stop" is a keyword, "stop hitting me" is not.
Case, accents, surrounding spaces and punctuation are ignored ("Arrêt." == "ARRET").
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from bot import DATA_DIR

KEYWORDS_FILE = DATA_DIR / "channels" / "carrier_keywords.yml"
KINDS = ("opt_out", "opt_in", "help")


def normalise(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return bare.strip(" \t\r\n.!?¡¿,;:'\"()[]-_*")


@dataclass(frozen=True)
class CarrierKeywords:
    words: dict[str, str]

    @classmethod
    def load(cls, path: Path = KEYWORDS_FILE) -> "CarrierKeywords":
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        words = {}
        for kind in KINDS:
            for language_words in (data.get(kind) or {}).values():
                for word in language_words or []:
                    words[normalise(str(word))] = kind
        return cls(words)

    def classify(self, body: str) -> str | None:
        """``opt_out``, ``opt_in``, ``help`` or ``None`` for an ordinary message."""
        if len(body) > 40:
            return None
        return self.words.get(normalise(body))


@lru_cache(maxsize=1)
def carrier_keywords() -> CarrierKeywords:
    return CarrierKeywords.load()
