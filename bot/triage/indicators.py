"""Indicators of trafficking in one message, with evidence spans, from reviewed per-language lexicons.

Each language has a lexicon in ``data/indicators/lexicon/<lang>.yml`` (format in the README of
that folder): phrases that show an indicator on their own, pairs of term lists that must occur
together in one sentence, age patterns, and cue words for negation, hypotheticals/rights
questions, third parties and worry. Matching runs on spaCy ``PhraseMatcher`` over a folded copy
of the text (lowercase, Latin accents removed, one character for one character) tokenised into
characters, so evidence offsets are offsets into the original text, accents and scripts without
spaces need no tokenizer of their own, and word boundaries are checked per language.

What it gets right on purpose:
- "he didn't take my passport": a negation cue just before a term cancels the match, unless the
  negation is part of the term itself ("won't give back my passport", "not paid");
- "what if my boss keeps my ID?": a hypothetical or rights-question cue earlier in the sentence
  cancels it;
- "my friend can't leave": still an indicator, and ``third_party`` is set;
- ages under 18 ("I'm 16", "tengo 17 años") give MINOR;
- imminent danger needs a phrase or a pair (a "now" cue with a danger term): one word never
  raises the alarm.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import re
import tempfile
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import spacy
import yaml
from spacy.matcher import PhraseMatcher
from spacy.tokens import Doc

from bot import DATA_DIR, PROJECT_ROOT

LEXICON_DIR = DATA_DIR / "indicators" / "lexicon"
TAXONOMY = DATA_DIR / "indicators" / "taxonomy.yml"
#: libyaml's parser where installed: the lexicons are long lists, and the pure-Python parser alone
#: took seconds per language at start-up.
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
#: How terms meet word boundaries: "word" (whole words; a trailing * allows any ending),
#: "prefix" (must start a word, any ending: Korean particles), "none" (anywhere: Chinese, Thai, Arabic).
BOUNDARY = {"ko": "prefix", "zh": "none", "th": "none", "ar": "none"}
SENTENCE_END = re.compile(r"[.!?;\n。！？؟]+")
#: Addresses are quoted text, not the texter's situation ("example.com/passport-taken").
URL = re.compile(r"(?:https?://|www\.)\S+|\b[\w.-]+\.(?:com|org|net|ca|gov|info|io)(?:/\S*)?", re.IGNORECASE)
PAIR_WINDOW = {"pairs": 80, "near_pairs": 30}
NOW_WINDOW = 40
#: How far before a term a negation cue still negates it: words in between (whole-word languages)
#: or characters in between (the others).
NEGATION_WORDS = 2
NEGATION_CHARS = {"prefix": 4, "none": 3}
#: Below this language-detection confidence, a message in Latin letters may be a language typed in
#: Latin letters that the detector does not know in that form (Arabizi, Ukrainian transliteration).
UNSURE_LANGUAGE = 0.7
#: Then the detector's best few other candidates run too, when they have any real score.
CANDIDATES, CANDIDATE_SCORE = 3, 0.05
#: Cues that cancel a match, and conjunctions that end a negation's reach. Those of the message's
#: own language (the first lexicon run) apply to every lexicon's matches: "kya recruitment fee
#: lena legal hai?" is a Hindi rights question about English words, and only the Hindi lexicon
#: knows "legal hai?".
CANCELLING = ("cue:negation", "cue:negation_after", "cue:hypothetical", "cue:hypothetical_after", "cue:clause")


@lru_cache(maxsize=None)
def fold_char(char: str) -> str:
    """One character, lowercased and without Latin accents; always exactly one character."""
    if "\ud800" <= char <= "\udfff":
        return "\ufffd"
    lowered = char.lower()
    if len(lowered) != 1:
        lowered = char
    if lowered.isascii():
        return lowered
    base = unicodedata.normalize("NFD", lowered)[0]
    if base.isascii() and base.isalpha():
        return base
    return {"đ": "d", "’": "'", "‘": "'", "ʼ": "'", "`": "'"}.get(lowered, lowered)


def fold(text: str) -> str:
    """The text folded character by character: same length, so offsets carry over. (Unlike
    ``bot.nlu.language_id.fold``, which may shorten text; evidence spans need this one.)"""
    return "".join(fold_char(c) for c in text)


def fold_term(term: str) -> str:
    return re.sub(r"\s+", " ", fold(unicodedata.normalize("NFC", str(term)).strip()))


@dataclass(frozen=True)
class Evidence:
    indicator: str
    start: int
    end: int

    def as_dict(self, text: str) -> dict:
        return {"indicator": self.indicator, "start": self.start, "end": self.end, "text": text[self.start:self.end]}


@dataclass
class Finding:
    """What one message shows."""

    evidence: list[Evidence] = field(default_factory=list)
    imminent: bool = False
    #: The words that made the message imminent danger (what the agent reads first).
    danger: list[Evidence] = field(default_factory=list)
    third_party: bool = False
    minor: bool = False
    age: int | None = None
    worry: bool = False
    #: Words that show SEX only for a minor, when this message shows no minor: the conversation
    #: keeps them until it learns the texter's age ("the clients come at night", then "I'm 15").
    if_minor: list[Evidence] = field(default_factory=list)

    @property
    def indicators(self) -> list[str]:
        return sorted({e.indicator for e in self.evidence})


@dataclass(frozen=True)
class _Term:
    """A matched term or cue: its span in the text."""

    start: int
    end: int


class LanguageLexicon:
    """The compiled lexicon of one language."""

    def __init__(self, code: str, data: dict, vocab) -> None:
        self.boundary = BOUNDARY.get(code, "word")
        #: The lexicon has terms in Latin letters for texters who type this language that way.
        self.romanized = bool(data.get("romanized"))
        self.matcher = PhraseMatcher(vocab)
        self.vocab = vocab
        self.prefix_keys: set[str] = set()
        #: Every word of every term: the English lexicon's tell which matches are English words.
        self.words: set[str] = set()
        self.rules: list[tuple[str, str, list[str]]] = []  # (target, kind, matcher keys)
        #: Terms that show an indicator only when the texter is a minor: (target, matcher key).
        self.minor_rules: list[tuple[str, str]] = []
        cues = data.get("cues") or {}
        for cue in ("negation", "negation_after", "hypothetical", "hypothetical_after", "third_party", "worry", "now",
                    "past", "urgent", "clause"):
            self._add_split(f"cue:{cue}", cues.get(cue) or [])
        for indicator, spec in (data.get("indicators") or {}).items():
            self._add_rules(indicator, spec or {})
        self._add_rules("IMMINENT", data.get("imminent") or {})
        self.age_patterns = [re.compile(p) for p in (data.get("indicators", {}).get("MINOR") or {}).get("age_patterns", [])]

    def _add(self, key: str, terms: list[str]) -> None:
        folded = dict.fromkeys(fold_term(term).rstrip("*").strip() for term in terms)
        self.words.update(word for term in folded for word in re.findall(r"\w+", term))
        patterns = [self._char_doc(term) for term in folded if term]
        if patterns:
            self.matcher.add(key, patterns)

    def _add_rules(self, target: str, spec: dict) -> None:
        if spec.get("phrases"):
            key = f"{target}:phrase"
            self._add_split(key, spec["phrases"])
            self.rules.append((target, "phrase", [key]))
        if spec.get("minor_context"):
            key = f"{target}:minor"
            self._add_split(key, spec["minor_context"])
            self.minor_rules.append((target, key))
        for kind in ("pairs", "near_pairs"):
            for index, pair in enumerate(spec.get(kind) or []):
                keys = [f"{target}:{kind}{index}:a", f"{target}:{kind}{index}:b"]
                self._add_split(keys[0], pair[0])
                self._add_split(keys[1], pair[1])
                self.rules.append((target, kind, keys))

    def _add_split(self, key: str, terms: list[str]) -> None:
        """Whole-word and prefix terms of one list go under two keys: key and key+'*'."""
        exact = [t for t in terms if not str(t).strip().endswith("*")]
        prefix = [t for t in terms if str(t).strip().endswith("*")]
        self._add(key, exact)
        self._add(key + "*", prefix)
        self.prefix_keys.add(key + "*")

    def _char_doc(self, text: str) -> Doc:
        return Doc(self.vocab, words=list(text), spaces=[False] * len(text))

    def matches(self, folded: str, doc: Doc) -> dict[str, list[_Term]]:
        """Matched terms per matcher key (prefix keys merged into their base key), boundary-checked."""
        found: dict[str, list[_Term]] = {}
        for match_id, start, end in self.matcher(doc):
            key = self.vocab.strings[match_id]
            if not self._bounded(folded, start, end, key in self.prefix_keys):
                continue
            found.setdefault(key.rstrip("*"), []).append(_Term(start, end))
        return found

    def _bounded(self, text: str, start: int, end: int, prefix: bool) -> bool:
        if self.boundary == "none":
            return True
        starts_word = start == 0 or not _word_character(text[start - 1])
        if prefix or self.boundary == "prefix":
            return starts_word
        return starts_word and (end == len(text) or not _word_character(text[end]))


def _word_character(char: str) -> bool:
    """Letters, digits and the marks that belong to them. Devanagari and Gurmukhi vowel signs are
    marks, not letters: without them "बेहोश" (unconscious, imminent) matched inside "बेहोशी"
    (fainting spells) as a whole word (found by tests/test_fuzz_triage.py)."""
    return char.isalnum() or unicodedata.category(char).startswith("M")


def _build(directory: Path) -> dict[str, LanguageLexicon]:
    vocab = spacy.blank("xx").vocab
    lexicons = {}
    for path in sorted(directory.glob("*.yml")):
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=LOADER) or {}
        lexicons[path.stem] = LanguageLexicon(path.stem, data, vocab)
    return lexicons


def compiled_lexicons(directory: Path = LEXICON_DIR) -> dict[str, LanguageLexicon]:
    """Every language's compiled lexicon. Compiling ~200,000 terms into spaCy matchers takes about
    10 s on 2 cores, and every process that triages (the Rasa server, ``hotline triage``, tests)
    needs them; so the result is kept in a cache file named after the lexicons, this module and
    spaCy's version, which any change to them replaces. The cache is read only when this user owns
    it and nobody else may write to it (it is a pickle); otherwise the lexicons are compiled again."""
    digest = hashlib.sha256(spacy.__version__.encode() + Path(__file__).read_bytes())
    for path in sorted(directory.glob("*.yml")):
        digest.update(path.name.encode() + path.read_bytes())
    cache = lexicon_cache_dir() / f"lexicons-{digest.hexdigest()[:32]}.pickle"
    if _private(cache):
        try:
            return pickle.loads(cache.read_bytes())
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ValueError):
            pass
    lexicons = _build(directory)
    _write_private(cache, pickle.dumps(lexicons, protocol=pickle.HIGHEST_PROTOCOL))
    for stale in cache.parent.glob("lexicons-*.pickle"):
        if stale != cache:
            stale.unlink(missing_ok=True)
    return lexicons


def lexicon_cache_dir() -> Path:
    return Path(os.environ.get("HOTLINE_CACHE_DIR") or PROJECT_ROOT / ".cache")


def _private(path: Path) -> bool:
    try:
        info = path.stat()
    except OSError:
        return False
    return info.st_uid == os.getuid() and not info.st_mode & 0o022 and not path.parent.stat().st_mode & 0o022


def _write_private(path: Path, data: bytes) -> None:
    """Written whole or not at all (a temporary file renamed), owner-only; a read-only disk only
    means the next process compiles again."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".lexicons-")
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temporary, path)
    except OSError:
        return


def _blank(folded: str, spans: list[_Term]) -> str:
    """The folded text with the spans (addresses) turned into spaces: a link is quoted text, not the
    texter's situation, so no term, cue or age inside one is matched ("https://example.com/
    outside-knife" alone raised the imminent alarm; found by tests/test_fuzz_triage.py). Spaces
    keep every offset, and keep a link's dots from splitting a sentence."""
    for span in spans:
        folded = folded[:span.start] + " " * (span.end - span.start) + folded[span.end:]
    return folded


def _drop_spans_over(finding: Finding, spans: list[_Term]) -> None:
    """Drop evidence reaching over an address (a pair whose terms lie on both sides of a link), and
    keep the flags true to what is left: an alarm or a minor is only ever shown with its words."""
    def clear(items: list[Evidence]) -> list[Evidence]:
        return _dedupe([e for e in items if not any(_overlap(_Term(e.start, e.end), s) for s in spans)])

    finding.evidence, finding.danger = clear(finding.evidence), clear(finding.danger)
    finding.if_minor = clear(finding.if_minor)
    finding.imminent = bool(finding.danger)
    finding.minor = any(e.indicator == "MINOR" for e in finding.evidence)
    if not finding.minor:
        finding.age = None


def _mostly_latin(text: str) -> bool:
    letters = [c for c in text if c.isalpha()]
    return bool(letters) and sum(c.isascii() for c in letters) >= 0.8 * len(letters)


def _sentences(text: str) -> list[tuple[int, int]]:
    bounds, start = [], 0
    for match in SENTENCE_END.finditer(text):
        bounds.append((start, match.end()))
        start = match.end()
    bounds.append((start, len(text)))
    return bounds


def _sentence_of(bounds: list[tuple[int, int]], position: int) -> tuple[int, int]:
    for start, end in bounds:
        if start <= position < end:
            return start, end
    return bounds[-1]


class IndicatorExtractor:
    """Finds indicators in a message given its language; load once (lexicons of every language)."""

    def __init__(self, directory: Path = LEXICON_DIR) -> None:
        self.lexicons: dict[str, LanguageLexicon] = compiled_lexicons(directory)
        self.vocab = next(iter(self.lexicons.values())).vocab if self.lexicons else spacy.blank("xx").vocab

    def languages_for(self, text: str, language: str, confidence: float, supported: bool,
                      candidates: dict[str, float] | None = None) -> list[str]:
        """The lexicons to run on a message: its language's and English (texters mix in English);
        French too for a language the bot does not support. When the detector is unsure (or found
        an unsupported language) also its other likely candidates ("no me han pagado en 2 meses"
        may come out as English at 0.2) and, for Latin letters, every lexicon with romanized terms,
        because Arabizi ("3am yedrebni") or transliterated Ukrainian look like Dutch or Polish to it."""
        languages = [language, "en"]
        if not supported:
            languages.append("fr")
        if not supported or confidence < UNSURE_LANGUAGE:
            ranked = sorted((candidates or {}).items(), key=lambda item: -item[1])[:CANDIDATES]
            languages += [code for code, score in ranked if score >= CANDIDATE_SCORE and code in self.lexicons]
            if _mostly_latin(text):
                languages += [code for code, lexicon in self.lexicons.items() if lexicon.romanized]
        return list(dict.fromkeys(languages))

    def extract(self, text: str, languages: list[str]) -> Finding:
        """Indicators in the text, using the lexicons of the given languages (in order)."""
        text = text or ""
        folded = fold(text)
        urls = [_Term(m.start(), m.end()) for m in URL.finditer(folded)]
        folded = _blank(folded, urls)
        finding = Finding()
        if not folded.strip():
            return finding
        doc = Doc(self.vocab, words=list(folded), spaces=[False] * len(folded))
        sentences = _sentences(folded)
        lexicons = [self.lexicons[code] for code in dict.fromkeys(languages) if code in self.lexicons]
        found = [lexicon.matches(folded, doc) for lexicon in lexicons]
        english = self.lexicons["en"].words if "en" in self.lexicons else set()
        for index, (lexicon, terms) in enumerate(zip(lexicons, found)):
            if index > 0:
                terms = {**terms, **{cue: terms.get(cue, []) + found[0].get(cue, []) for cue in CANCELLING}}
            secondary = index > 0 and lexicon is not self.lexicons.get("en")
            self._extract_one(lexicon, folded, terms, sentences, finding, english if secondary else set())
        for lexicon, terms in zip(lexicons, found):
            self._minor_context(lexicon, folded, terms, sentences, finding)
        if finding.minor:
            finding.evidence += finding.if_minor
            finding.if_minor = []
        _drop_spans_over(finding, urls)
        return finding

    def _extract_one(self, lexicon: LanguageLexicon, folded: str, found: dict[str, list[_Term]], sentences,
                     finding: Finding, english: set[str]) -> None:
        """One lexicon's findings. A lexicon run besides the message's own language and English
        ignores matches made only of English words ("owe", "recruitment fee" in the Hindi
        lexicon): those are the English lexicon's to judge, with English negations and questions."""
        negations = _negations(found)
        hypotheticals = _hypotheticals(found)
        finding.third_party |= bool(found.get("cue:third_party"))
        finding.worry |= bool(found.get("cue:worry"))
        for target, kind, keys in lexicon.rules:
            for terms, start, end in _rule_spans(kind, keys, found, sentences):
                if _cancelled(folded, terms, negations, hypotheticals, sentences, lexicon.boundary):
                    continue
                if english and all(set(re.findall(r"\w+", folded[t.start:t.end])) <= english for t in terms):
                    continue
                if target == "IMMINENT":
                    finding.imminent = True
                    finding.danger.append(Evidence(target, start, end))
                else:
                    finding.evidence.append(Evidence(target, start, end))
                    finding.minor |= target == "MINOR"
        self._ages(lexicon, folded, sentences, hypotheticals, finding)
        self._violence_now(found, sentences, finding)

    @staticmethod
    def _minor_context(lexicon: LanguageLexicon, folded: str, found: dict[str, list[_Term]], sentences,
                       finding: Finding) -> None:
        """For a minor, words that are ordinary for an adult worker ("the clients", "massage",
        "sit with the men") are read as the indicator (commercial sexual exploitation): a child in
        that setting is high risk whatever the words, and a missed one is the worse mistake."""
        negations = _negations(found)
        hypotheticals = _hypotheticals(found)
        for target, key in lexicon.minor_rules:
            for term in found.get(key, []):
                if not _cancelled(folded, [term], negations, hypotheticals, sentences, lexicon.boundary):
                    finding.if_minor.append(Evidence(target, term.start, term.end))

    @staticmethod
    def _violence_now(found: dict[str, list[_Term]], sentences, finding: Finding) -> None:
        """Violence or a threat is imminent with a "now" cue close by in its sentence ("he is hitting
        me now", "지금 맞고 있어요"), unless a "past" cue is closer ("he hit me yesterday, now I'm
        scared"); or with an "urgent" cue anywhere in the message ("he says he will kill me. please
        hurry"), unless its own sentence has a past cue. Being held or taken (MOVE) is imminent
        with an urgent cue only ("they lock me in, call the police"): "locked in at night, now I
        want to go home" is a situation, not an emergency."""
        nows, pasts, urgent = found.get("cue:now", []), found.get("cue:past", []), found.get("cue:urgent", [])
        for item in finding.evidence:
            if item.indicator not in ("VIOL", "THREAT", "MOVE"):
                continue
            term = _Term(item.start, item.end)
            sentence = _sentence_of(sentences, item.start)
            past = _nearest(term, [c for c in pasts if _sentence_of(sentences, c.start) == sentence])
            now = _nearest(term, [c for c in nows if _sentence_of(sentences, c.start) == sentence])
            by_now = item.indicator != "MOVE" and now is not None and now <= NOW_WINDOW and (past is None or past > now)
            if by_now or (past is None and any(not _inside(cue, term) for cue in urgent)):
                finding.imminent = True
                finding.danger.append(Evidence("IMMINENT", item.start, item.end))

    @staticmethod
    def _ages(lexicon: LanguageLexicon, folded: str, sentences, hypotheticals, finding: Finding) -> None:
        for pattern in lexicon.age_patterns:
            for match in pattern.finditer(folded):
                age = _age_number(match.group("age"))
                term = _Term(match.start(), match.end())
                if age < 18 and not _cancelled(folded, [term], ([], [], []), hypotheticals, sentences,
                                               lexicon.boundary):
                    finding.minor = True
                    finding.age = age if finding.age is None else min(finding.age, age)
                    finding.evidence.append(Evidence("MINOR", match.start(), match.end()))


#: Chinese numerals an age pattern may capture: 十 is ten, 十五 fifteen (one to nineteen is enough
#: for ages under eighteen; the patterns keep 二十五, twenty-five, out).
CHINESE_DIGITS = {c: n for n, c in enumerate("零一二三四五六七八九")} | {"两": 2, "兩": 2}


def _age_number(captured: str) -> int:
    """An age in digits or in Chinese numerals ("十五岁" is 15)."""
    if captured.isdigit():
        return int(captured)
    tens, ten, units = captured.partition("十")
    if not ten:
        return CHINESE_DIGITS.get(captured, 99)
    return CHINESE_DIGITS.get(tens, 1 if not tens else 99) * 10 + CHINESE_DIGITS.get(units, 0 if not units else 99)


def _rule_spans(kind: str, keys: list[str], found: dict[str, list[_Term]], sentences):
    """(terms, start, end) for each way the rule matches."""
    if kind == "phrase":
        for term in found.get(keys[0], []):
            yield [term], term.start, term.end
        return
    for a in found.get(keys[0], []):
        sentence = _sentence_of(sentences, a.start)
        for b in found.get(keys[1], []):
            if a.start == b.start or _overlap(a, b):
                continue
            if _sentence_of(sentences, b.start) != sentence:
                continue
            start, end = min(a.start, b.start), max(a.end, b.end)
            if end - start <= PAIR_WINDOW[kind]:
                yield [a, b], start, end


def _nearest(term: _Term, cues: list[_Term]) -> int | None:
    """Characters between the term and the nearest cue (0 when they touch or overlap)."""
    gaps = [max(cue.start - term.end, term.start - cue.end, 0) for cue in cues if not _inside(cue, term)]
    return min(gaps) if gaps else None


def _inside(cue: _Term, term: _Term) -> bool:
    return term.start <= cue.start and cue.end <= term.end


def _overlap(a: _Term, b: _Term) -> bool:
    return a.start < b.end and b.start < a.end


def _negations(found: dict[str, list[_Term]]) -> tuple[list[_Term], list[_Term], list[_Term]]:
    """Negation cues before and after a term, and the conjunctions that end a negation's reach."""
    return found.get("cue:negation", []), found.get("cue:negation_after", []), found.get("cue:clause", [])


def _hypotheticals(found: dict[str, list[_Term]]) -> tuple[list[_Term], list[_Term]]:
    """Hypothetical and rights-question cues before and after a term."""
    return found.get("cue:hypothetical", []), found.get("cue:hypothetical_after", [])


def _close(folded: str, first: _Term, second: _Term, boundary: str, words: int, breaks: list[_Term] = ()) -> bool:
    """Whether ``first`` ends shortly before ``second`` starts, in the same clause. A comma in
    between ("no, he took my passport"), a sentence end ("...kade nai milde. mera permit vi ohna
    kol pya") or a conjunction that starts a new clause ("no pay and 14 hours a day", "walang sahod
    tapos 14 oras") separates them."""
    if first.end > second.start:
        return False
    between = folded[first.end:second.start]
    if re.search(r"[,:;—–.!?\n。！？؟]", between):
        return False
    if any(first.end <= cue.start and cue.end <= second.start for cue in breaks):
        return False
    if boundary == "none" and re.search(r"\s", between) and _unspaced(folded[first.end - 1] + folded[second.start]):
        return False
    if boundary == "word":
        return len(re.findall(r"\w+", between)) <= words
    return len(between.strip()) <= NEGATION_CHARS[boundary]


def _unspaced(chars: str) -> bool:
    """Chinese, Japanese kana and Thai are written without spaces between words, so a space there is
    a pause between clauses: "工资一半都没有 身份证也被老板拿着" keeps its DOC."""
    return all("\u0e00" <= c <= "\u0e7f" or "\u3040" <= c <= "\u9fff" or "\uf900" <= c <= "\ufaff" for c in chars)


def _cancelled(folded: str, terms: list[_Term], negations: tuple[list[_Term], list[_Term], list[_Term]],
               hypotheticals: tuple[list[_Term], list[_Term]], sentences, boundary: str) -> bool:
    """A negation cue just before a term or (for languages that negate after the verb: French
    "frappe pas", Korean 않) just after it, not inside it; a hypothetical cue earlier in the
    sentence; or a sentence-final rights-question cue later in it (Chinese 合法吗, Korean 되나요)."""
    before_terms, after_terms, breaks = negations
    for term in terms:
        for cue in before_terms:
            if boundary == "prefix" and folded[cue.end:term.start][:1].isalnum():
                continue  # the cue only starts another word: 안 in 안녕하세요 ("hello") negates nothing
            if not any(_overlap(cue, t) for t in terms) and _close(folded, cue, term, boundary, NEGATION_WORDS,
                                                                  breaks):
                return True
        for cue in after_terms:
            if not any(_overlap(cue, t) for t in terms) and _close(folded, term, cue, boundary, 1, breaks):
                return True
    before, after = hypotheticals
    first, last = min(t.start for t in terms), max(t.end for t in terms)
    sentence_start, sentence_end = _sentence_of(sentences, first)
    if any(sentence_start <= cue.start and cue.end <= first for cue in before):
        return True
    return any(last <= cue.start and cue.end <= sentence_end for cue in after)


def _dedupe(evidence: list[Evidence]) -> list[Evidence]:
    """One span per indicator where spans overlap (the longest), in text order; and no VIOL inside
    a THREAT's words: "he said if i fight he'll hurt me" threatens violence, it does not report it."""
    threats = [e for e in evidence if e.indicator == "THREAT"]
    evidence = [e for e in evidence if e.indicator != "VIOL"
                or not any(t.start <= e.start and e.end <= t.end for t in threats)]
    kept: list[Evidence] = []
    for item in sorted(evidence, key=lambda e: (e.indicator, e.start, -(e.end - e.start))):
        if kept and kept[-1].indicator == item.indicator and item.start < kept[-1].end:
            continue
        kept.append(item)
    return sorted(kept, key=lambda e: (e.start, e.indicator))


@lru_cache(maxsize=1)
def taxonomy() -> dict[str, dict]:
    """The reviewed taxonomy, by indicator ID."""
    data = yaml.safe_load(TAXONOMY.read_text(encoding="utf-8"))
    return {entry["id"]: entry for entry in data["indicators"]}
