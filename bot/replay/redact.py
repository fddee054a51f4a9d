"""Redaction of a real conversation before it becomes training material.

Phone numbers, e-mail and web addresses, street addresses, numbers of three digits or more, names
and places are replaced by realistic fake ones from the ``faker`` library, the same fake for the
same original throughout one conversation, so the script still reads naturally ("Maria said...
Maria's boss") without pointing at anyone. What counts as a name or a place is reviewed data
(``data/replay/redaction.yml``). It errs towards replacing: a training script with one word too
many changed is harmless, a real name left in it is not.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass
from functools import lru_cache

import yaml
from faker import Faker

from bot import DATA_DIR

RULES_FILE = DATA_DIR / "replay" / "redaction.yml"
#: Faker locales per language; Latin-letter text (romanized Hindi or Punjabi) gets Latin names.
LOCALES = {"en": "en_CA", "fr": "fr_CA", "es": "es_MX", "tl": "fil_PH", "hi": "hi_IN", "pa": "en_IN",
           "zh": "zh_CN", "ko": "ko_KR", "vi": "vi_VN", "th": "th_TH", "ar": "ar_AA", "uk": "uk_UA"}
LATIN_LOCALES = {"hi": "en_IN", "pa": "en_IN", "ar": "en_US", "uk": "en_US", "zh": "en_US", "ko": "en_US",
                 "th": "en_US"}
#: Locales whose first names are looked for in Latin-letter text.
NAME_LOCALES = ("en_CA", "en_US", "fr_FR", "fr_CA", "es_MX", "es_ES", "fil_PH", "en_IN", "vi_VN", "en_PH")

URL = re.compile(r"(?:https?://|www\.)\S+|\b[\w.-]+\.(?:com|org|net|ca|gov|info|io|ph|in|mx)(?:/\S*)?", re.I)
EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
PHONE = re.compile(r"(?<!\w)(?:\+|00)?\d(?:[\s().-]*\d){6,14}(?!\w)")
STREET = re.compile(
    r"\b\d{1,5}[\s,]+(?:[^\W\d_][\w'.-]*\s+){0,3}?(?:st|street|ave|avenue|rd|road|blvd|boulevard|dr|drive|way|"
    r"lane|ln|crescent|cres|rue|chemin|boul|calle|avenida|av)\b\.?", re.I)
NUMBER = re.compile(r"\d(?:[\d,. ]*\d)?")
LATIN_WORD = re.compile(r"[A-Za-zÀ-ÖØ-öø-ÿĀ-ž][\w'-]*")
NON_LATIN_WORD = re.compile(r"[^\s\d.,!?;:()\"'،؟。，！？]+")
HAN = re.compile(r"[\u4e00-\u9fff]{2,3}")
SENTENCE_START = re.compile(r"(?:^|[.!?\n]\s*)$")


@dataclass(frozen=True)
class Rules:
    name_cues: dict[str, list[str]]
    title_cues: dict[str, list[str]]
    place_cues: dict[str, list[str]]
    places: frozenset[str]


@lru_cache(maxsize=1)
def rules() -> Rules:
    data = yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))
    return Rules(data["name_cues"], data["title_cues"], data["place_cues"],
                 frozenset(p.casefold() for p in data["places"]))


@lru_cache(maxsize=1)
def first_names() -> frozenset[str]:
    """First names of the texters' communities, from Faker's lists (Latin letters, 3+ letters)."""
    names: set[str] = set()
    for locale in NAME_LOCALES:
        provider = Faker(locale).provider("faker.providers.person")
        for attribute in ("first_names", "first_names_female", "first_names_male"):
            values = getattr(provider, attribute, ()) or ()
            names |= {n for n in values if len(n) >= 3 and n.isalpha()}
    return frozenset(names)


@lru_cache(maxsize=1)
def last_names() -> frozenset[str]:
    """Family names (lowercase) of the same communities: "my name is maria lopez" loses both."""
    names: set[str] = set()
    for locale in NAME_LOCALES:
        names |= {n.casefold() for n in getattr(Faker(locale).provider("faker.providers.person"), "last_names", ())
                  if len(n) >= 3 and n.isalpha()}
    return frozenset(names)


class Redactor:
    """One conversation's redaction: the same original always gets the same fake."""

    def __init__(self, language: str, seed: int | None = None) -> None:
        self.language = language
        self.random = random.Random(seed)
        self.fakers: dict[str, Faker] = {}
        self.seed = seed
        self.replaced: dict[tuple[str, str], str] = {}

    def redact(self, text: str) -> str:
        spans: list[tuple[int, int, str]] = []
        for kind, pattern in (("url", URL), ("email", EMAIL), ("street", STREET), ("phone", PHONE)):
            spans += [(m.start(), m.end(), kind) for m in pattern.finditer(text)]
        spans += self._names(text) + self._places(text)
        spans += [(m.start(), m.end(), "number") for m in NUMBER.finditer(text)
                  if sum(ch.isdigit() for ch in m.group()) >= 3]
        out, last = [], 0
        for start, end, kind in _without_overlaps(spans):
            out += [text[last:start], self._fake(kind, text[start:end])]
            last = end
        return "".join(out + [text[last:]])

    # What is found ---------------------------------------------------------------------------

    def _names(self, text: str) -> list[tuple[int, int, str]]:
        spans = []
        folded = text.casefold()
        for cue in rules().name_cues.get(self.language, []) + rules().name_cues["en"]:
            for at in _cue_positions(folded, cue.casefold()):
                span = self._word_after(text, at, strong=True)
                if span:
                    spans.append((*span, "name"))
        for cue in rules().title_cues.get(self.language, []):
            for at in _cue_positions(folded, cue.casefold()):
                span = self._word_after(text, at, strong=False)
                if span:
                    spans.append((*span, "name"))
        for (kind, original) in list(self.replaced):  # a name met earlier is a name anywhere
            if kind in ("name", "place"):
                spans += [(m.start(), m.end(), kind) for m in re.finditer(
                    r"(?<!\w)" + re.escape(original) + r"(?!\w)", folded)]
        names = first_names()
        for match in LATIN_WORD.finditer(text):
            word = match.group()
            if word in names and word[0].isupper() and not SENTENCE_START.search(text[:match.start()]):
                spans.append((match.start(), match.end(), "name"))
        return spans

    def _word_after(self, text: str, at: int, strong: bool) -> tuple[int, int] | None:
        """The name after a cue: Latin words (a second one when capitalised), two or three Chinese
        characters, else the next word; a title cue needs a capital in Latin letters."""
        rest = text[at:]
        skipped = len(rest) - len(rest.lstrip(" :,-"))
        start = at + skipped
        if self.language == "zh" and HAN.match(text, start):
            match = HAN.match(text, start)
            return match.start(), match.end()
        match = LATIN_WORD.match(text, start)
        if match:
            if not strong and not match.group()[0].isupper():
                return None
            end = match.end()
            second = LATIN_WORD.match(text, end + 1) if text[end:end + 1] == " " else None
            if second and (second.group()[0].isupper() or second.group().casefold() in last_names()):
                end = second.end()
            return start, end
        match = NON_LATIN_WORD.match(text, start)
        return (start, match.end()) if match else None

    def _places(self, text: str) -> list[tuple[int, int, str]]:
        folded = text.casefold()
        spans = []
        for place in rules().places:
            edge = r"(?<!\w)" if LATIN_WORD.match(place) else ""
            end = r"(?!\w)" if LATIN_WORD.match(place) else ""
            spans += [(m.start(), m.end(), "place") for m in re.finditer(edge + re.escape(place) + end, folded)]
        for cue in rules().place_cues.get(self.language, []) + (rules().place_cues["en"] if self.language != "en" else []):
            for at in _cue_positions(folded, cue.casefold()):
                span = self._word_after(text, at, strong=False)
                if span and LATIN_WORD.fullmatch(text[span[0]:span[1]].split()[0]):
                    spans.append((*span, "place"))
        return spans

    # What replaces it ------------------------------------------------------------------------

    def _fake(self, kind: str, original: str) -> str:
        key = (kind, original.casefold())
        if key not in self.replaced:
            self.replaced[key] = self._new_fake(kind, original)
        return self.replaced[key]

    def _new_fake(self, kind: str, original: str) -> str:
        faker = self._faker(latin=bool(LATIN_WORD.search(original)))
        for _ in range(20):
            value = {
                "url": lambda: f"https://example.org/{faker.slug()}",
                "email": lambda: faker.user_name() + "@example.org",
                "phone": lambda: f"+1 {self.random.randint(201, 989)} 555-01{self.random.randint(0, 99):02d}",
                "street": lambda: faker.street_address(),
                "number": lambda: _same_shape_number(original, self.random),
                "name": lambda: _like(original, faker.first_name(), faker.last_name()),
                "place": lambda: faker.city(),
            }[kind]()
            if value.casefold() != original.casefold() and value not in self.replaced.values():
                return value
        return "[redacted]"

    def _faker(self, latin: bool) -> Faker:
        locale = (LATIN_LOCALES.get(self.language) if latin else None) or LOCALES.get(self.language, "en_CA")
        if locale not in self.fakers:
            faker = Faker(locale)
            faker.seed_instance(self.seed if self.seed is not None else self.random.getrandbits(32))
            self.fakers[locale] = faker
        return self.fakers[locale]


def _cue_positions(folded: str, cue: str):
    """Where text after a whole-word cue starts; Chinese and Thai cues (no spaces between words)
    match anywhere, the others must end a word ("사장" is not a cue inside "사장님")."""
    spaced = not re.match(r"[\u4e00-\u9fff\u0e00-\u0e7f]", cue)
    pattern = (r"(?<!\w)" + re.escape(cue) + r"(?=\s|:|,)") if spaced else re.escape(cue)
    for match in re.finditer(pattern, folded):
        yield match.end()


def _like(original: str, first: str, last: str) -> str:
    """A fake with as many words as the original, and its capitalisation when it had none."""
    fake = f"{first} {last}" if len(original.split()) > 1 else first
    return fake.lower() if original.islower() else fake


def _same_shape_number(original: str, rng: random.Random) -> str:
    """A different number with the same digits count and separators ("6,000" -> "8,000"-like)."""
    out, first = [], True
    for ch in original:
        if ch.isdigit():
            out.append(str(rng.randint(1, 9) if first else rng.randint(0, 9)))
            first = False
        else:
            out.append(ch)
    return "".join(out)


def _without_overlaps(spans: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """Longest first wins; then in text order."""
    kept: list[tuple[int, int, str]] = []
    for span in sorted(spans, key=lambda s: (-(s[1] - s[0]), s[0])):
        if all(span[1] <= k[0] or span[0] >= k[1] for k in kept):
            kept.append(span)
    return sorted(kept)
