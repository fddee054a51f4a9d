"""Language identification for SMS-length messages.

Libraries alone fall short on hotline texts: langdetect gets a third of Chinese wrong, lingua over
every language confuses short Spanish with Portuguese, and nothing handles Punjabi or Hindi typed
in Latin letters or Vietnamese typed without tone marks. So the identifier combines, in order:

1. an explicit choice by the texter ("français", "en español", "中文");
2. the writing system, which settles Korean, Thai, Gurmukhi and Chinese and narrows the others;
3. reviewed marker lexicons for romanized Punjabi/Hindi and unaccented Vietnamese;
4. lingua restricted per script to the supported languages plus the unsupported languages most
   often confused with them (Portuguese for Spanish, Russian for Ukrainian, Urdu for Arabic...),
   so that a message in an unsupported language is recognised and recorded for an interpreter.

``choose_language`` then decides what a conversation's language becomes, so a short "ok", "si",
"👍" or a number never flips it. Data lives in ``data/language/``.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import regex
import yaml
from lingua import IsoCode639_1, Language, LanguageDetectorBuilder

from bot import DATA_DIR
from bot.nlu.scripts import DENSE_SCRIPTS, DENSE_WEIGHT, dominant_script, script_counts

LANGUAGE_DIR = DATA_DIR / "language"
FALLBACK = "en"
MAX_CHARS = 1000  # a long message is identified from its beginning; enough signal, bounded cost

#: For each script: the supported languages written in it and lingua's decoys (unsupported
#: languages in the same script that texters to a Canadian hotline may write in).
SCRIPT_GROUPS: dict[str, tuple[list[str], list[str]]] = {
    "latin": (["en", "fr", "es", "tl", "vi"], ["pt", "it", "de", "nl", "id", "ro", "pl", "so", "tr", "sw"]),
    "cyrillic": (["uk"], ["ru", "bg", "be", "mk", "sr"]),
    "arabic": (["ar"], ["ur", "fa"]),
    "devanagari": (["hi"], ["mr"]),
}
#: Scripts that name one language outright (supported or not).
SINGLE_LANGUAGE_SCRIPTS = {
    "hangul": "ko", "thai": "th", "gurmukhi": "pa", "han": "zh", "kana": "ja", "bengali": "bn",
    "tamil": "ta", "gujarati": "gu", "telugu": "te", "kannada": "kn", "malayalam": "ml",
    "sinhala": "si", "hebrew": "he", "greek": "el", "georgian": "ka", "armenian": "hy",
    "ethiopic": "am", "khmer": "km", "lao": "lo", "myanmar": "my", "tibetan": "bo",
}
#: Scripts written without spaces between words: their length, not their word count, carries signal.
UNSPACED_SCRIPTS = {"thai", "lao", "khmer", "myanmar", "tibetan"}
_WORD = re.compile(r"[a-z]+")
#: A Vietnamese syllable typed without tone marks: optional onset, one to three vowels, optional coda.
_VI_SYLLABLE = re.compile(r"^(ngh|ng|nh|ch|gh|gi|kh|ph|qu|th|tr|[bcdghklmnprstvx])?[aeiouy]{1,3}(ng|nh|ch|[cmnpt])?$")
_CONTROL = dict.fromkeys(c for c in range(32) if chr(c) not in "\n\t")


@dataclass(frozen=True)
class Detection:
    """What one message says about its language.

    ``language`` is the supported language to answer in (``en`` when undecided or unsupported);
    ``detected`` is the best guess over every language known, supported or not, so an interpreter
    can be found; ``informative`` says whether the message carries enough signal to change the
    language of a conversation already under way.
    """

    language: str
    confidence: float
    detected: str
    supported: bool
    informative: bool
    method: str
    scores: dict[str, float] = field(default_factory=dict)

    @property
    def explicit(self) -> bool:
        return self.method == "explicit"

    def as_dict(self) -> dict:
        return {
            "language": self.language, "confidence": round(self.confidence, 4), "detected": self.detected,
            "supported": self.supported, "informative": self.informative, "method": self.method,
            "scores": {k: round(v, 4) for k, v in self.scores.items()},
        }


def fold(text: str) -> str:
    """Lowercase, NFKC, and drop accents from Latin letters only (Thai and Indic vowel signs stay)."""
    out: list[str] = []
    for char in unicodedata.normalize("NFD", unicodedata.normalize("NFKC", text).lower()):
        if unicodedata.combining(char) and out and out[-1].isascii():
            continue
        out.append(char)
    return unicodedata.normalize("NFC", "".join(out)).replace("đ", "d")


def clean(text: str) -> str:
    """Text safe to analyse: lone surrogates replaced, control characters removed, bounded length."""
    return text[:MAX_CHARS].encode("utf-8", "replace").decode("utf-8").translate(_CONTROL)


def _phrase_key(text: str) -> str:
    """A short message reduced to its words, for lookup in the short-phrase list."""
    return " ".join(_WORD.findall(fold(text).replace("'", "")))


def _margin(scores: dict[str, float], code: str) -> float:
    """Confidence in one candidate against its strongest rival: lingua's values are spread over
    every candidate language, so a clear English text may score only 0.4 while its rival has 0.1."""
    rival = max((v for c, v in scores.items() if c != code), default=0.0)
    own = scores.get(code, 0.0)
    return own / (own + rival) if own + rival else 0.0


def _weighted(counts, script: str) -> int:
    return counts[script] * (DENSE_WEIGHT if script in DENSE_SCRIPTS else 1)


def _letters(text: str) -> int:
    return sum(1 for char in text if char.isalpha())


@dataclass
class LanguageData:
    """The reviewed data files the identifier reads."""

    supported: list[dict]
    romanized: dict
    vietnamese: set[str]
    nepali: set[str]
    nepali_code: str
    short_phrases: dict[str, str]

    @classmethod
    def load(cls, directory: Path = LANGUAGE_DIR) -> "LanguageData":
        languages = yaml.safe_load((directory / "languages.yml").read_text(encoding="utf-8"))
        romanized = yaml.safe_load((directory / "romanized.yml").read_text(encoding="utf-8"))
        vietnamese = yaml.safe_load((directory / "vietnamese_unaccented.yml").read_text(encoding="utf-8"))
        nepali = yaml.safe_load((directory / "nepali_markers.yml").read_text(encoding="utf-8"))
        short = yaml.safe_load((directory / "short_phrases.yml").read_text(encoding="utf-8"))
        phrases = {_phrase_key(p): code for code, items in short["phrases"].items() for p in items}
        return cls(languages["supported"], romanized, set(vietnamese["markers"]), set(nepali["markers"]),
                   nepali["language"], phrases)

    @property
    def codes(self) -> list[str]:
        return [entry["code"] for entry in self.supported]


class MarkerLexicon:
    """Scores a Latin-script message against marker words of romanized Punjabi/Hindi."""

    def __init__(self, romanized: dict) -> None:
        self.shared = set(romanized.get("shared") or [])
        self.weights: dict[str, dict[str, int]] = {}
        for code in ("pa", "hi"):
            entry = romanized.get(code) or {}
            self.weights[code] = {w: 1 for w in entry.get("weak") or []}
            self.weights[code].update({w: 2 for w in entry.get("strong") or []})
        self.markers = self.shared.union(*self.weights.values())

    def score(self, words: list[str]) -> tuple[int, dict[str, float]]:
        """Number of words that are markers, and the Punjabi and Hindi evidence."""
        markers = sum(1 for w in words if w in self.markers)
        evidence = {code: float(sum(weights.get(w, 0) for w in words)) for code, weights in self.weights.items()}
        return markers, evidence


class RomanizedClassifier:
    """Character n-gram model telling Punjabi and Hindi typed in Latin letters from the other
    Latin-script languages, trained at load time (under a second) on the project's own NLU
    training data: the marker lexicon alone misses texts heavy with English and confuses the two."""

    LANGUAGES = ("en", "fr", "es", "tl", "vi", "pa", "hi")

    def __init__(self, nlu_dir: Path = DATA_DIR / "nlu") -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline

        texts, labels = [], []
        for code in self.LANGUAGES:
            for text in _training_examples(nlu_dir / f"{code}.yml"):
                if dominant_script(script_counts(text)) == "latin":
                    texts.append(fold(text))
                    labels.append(code)
        self.model = make_pipeline(
            TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 4), sublinear_tf=True),
            LogisticRegression(C=10, max_iter=2000),
        )
        self.model.fit(texts, labels)
        self.classes = list(self.model.classes_)

    def romanized_probabilities(self, text: str) -> dict[str, float]:
        """Probability that the text is romanized Punjabi, and Hindi."""
        probabilities = self.model.predict_proba([fold(text)])[0]
        return {code: float(probabilities[self.classes.index(code)]) for code in ("pa", "hi")}


def _training_examples(path: Path) -> list[str]:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [
        line[2:].strip()
        for block in document.get("nlu", [])
        for line in block.get("examples", "").splitlines()
        if line.startswith("- ")
    ]


class LanguageIdentifier:
    """Identifies the language of one message; load once, call many times (about 0.1-1 ms)."""

    ROMANIZED_MIN_SHARE = 0.2
    ROMANIZED_MIN_MARKERS = 2
    ROMANIZED_MIN_PROBABILITY = 0.5
    VIETNAMESE_MIN_SHARE = 0.45
    DECOY_MIN_CONFIDENCE = 0.3
    DECOY_MIN_RATIO = 2.0
    DECOY_MIN_LETTERS = 15
    VIETNAMESE_MIN_VALID = 0.85
    VIETNAMESE_MIN_MARKERS = 0.25

    def __init__(self, data: LanguageData | None = None) -> None:
        self.data = data or LanguageData.load()
        self.supported = set(self.data.codes)
        self.romanized = MarkerLexicon(self.data.romanized)
        self._names = self._explicit_names()

    @cached_property
    def _romanized_model(self) -> RomanizedClassifier:
        return RomanizedClassifier()

    @cached_property
    def _detectors(self) -> dict[str, object]:
        """One lingua detector per script group, with its models preloaded."""
        detectors = {}
        for script, (supported, decoys) in SCRIPT_GROUPS.items():
            languages = [Language.from_iso_code_639_1(getattr(IsoCode639_1, c.upper())) for c in supported + decoys]
            detectors[script] = LanguageDetectorBuilder.from_languages(*languages).with_preloaded_language_models().build()
        return detectors

    def warm_up(self) -> None:
        """Load the statistical models now rather than on the first message."""
        _ = self._detectors, self._romanized_model

    def _explicit_names(self) -> list[tuple[re.Pattern[str], int, str]]:
        names = []
        for entry in self.data.supported:
            for name in entry["names"]:
                folded = fold(str(name))
                body = re.escape(folded)
                pattern = re.compile(rf"(?<!\w){body}(?!\w)" if folded.isascii() else body)
                names.append((pattern, _letters(folded), entry["code"]))
        return names

    def explicit_choice(self, text: str) -> str | None:
        """The language a short message asks for by name ("english pls", "中文"), if any."""
        folded = fold(text)
        letters = _letters(folded)
        if not letters or letters > 40:
            return None
        best, best_cover = None, 0.0
        for pattern, name_letters, code in self._names:
            if name_letters and name_letters / letters >= 0.4 and name_letters / letters > best_cover and pattern.search(folded):
                best, best_cover = code, name_letters / letters
        return best

    def identify(self, text: str) -> Detection:
        """Identify the language of a message on its own, without conversation context."""
        text = clean(text or "")
        counts = script_counts(text)
        script = dominant_script(counts)
        if script is None:
            return Detection(FALLBACK, 0.0, FALLBACK, True, False, "empty")
        choice = self.explicit_choice(text)
        if choice:
            return Detection(choice, 1.0, choice, True, True, "explicit", {choice: 1.0})
        detection = self._by_script(text, script, counts)
        detection = self._with_informative(detection, text, script, counts)
        if detection.informative or script != "latin":
            return detection
        return self._short_latin(text, detection)

    def _short_latin(self, text: str, weak: Detection) -> Detection:
        """A short Latin-script message: a known short phrase, else English with low confidence,
        since detectors cannot tell "hello" from Italian."""
        code = self._known_phrases(_phrase_key(text))
        if code:
            return Detection(code, 0.5, code, True, False, "phrase", {code: 0.5})
        if weak.method in ("romanized", "lexicon"):
            return weak
        return Detection(FALLBACK, min(weak.confidence, 0.2), FALLBACK, True, False, weak.method, weak.scores)

    def _known_phrases(self, key: str) -> str | None:
        """The language of a message made only of known short phrases of that one language:
        "hola buenas tardes" is "hola" and "buenas tardes", both Spanish."""
        words, found, start = key.split(), set(), 0
        while start < len(words):
            end = next((end for end in range(len(words), start, -1)
                        if " ".join(words[start:end]) in self.data.short_phrases), None)
            if end is None:
                return None
            found.add(self.data.short_phrases[" ".join(words[start:end])])
            start = end
        return found.pop() if len(found) == 1 else None

    def _by_script(self, text: str, script: str, counts) -> Detection:
        if script in SINGLE_LANGUAGE_SCRIPTS:
            code = SINGLE_LANGUAGE_SCRIPTS[script]
            share = _weighted(counts, script) / sum(_weighted(counts, s) for s in counts)
            return self._result(code, share, "script", {code: share})
        if script == "latin":
            lexical = self._by_lexicon(text)
            if lexical:
                return lexical
        if script == "devanagari" and self._is_nepali(text):
            return self._result(self.data.nepali_code, 0.8, "lexicon", {self.data.nepali_code: 0.8})
        if script in SCRIPT_GROUPS:
            return self._by_lingua(text, script)
        return self._result(FALLBACK, 0.0, "unknown", {})

    def _is_nepali(self, text: str) -> bool:
        words = regex.findall(r"[\p{L}\p{M}]+", text)
        markers = sum(1 for w in words if w in self.data.nepali)
        return markers >= 2 and markers >= 0.2 * len(words)

    def _by_lexicon(self, text: str) -> Detection | None:
        words = _WORD.findall(fold(text))
        if len(words) < 2:
            return None
        markers, evidence = self.romanized.score(words)
        share = markers / len(words)
        vi_share = sum(1 for w in words if w in self.data.vietnamese) / len(words)
        vi_valid = sum(1 for w in words if w in self.data.vietnamese or _VI_SYLLABLE.match(w)) / len(words)
        if vi_valid >= self.VIETNAMESE_MIN_VALID and vi_share >= self.VIETNAMESE_MIN_MARKERS and len(words) >= 3:
            vi_share = max(vi_share, self.VIETNAMESE_MIN_SHARE)
        if markers:  # the learned model is consulted only when a marker word is present
            lexical = markers >= self.ROMANIZED_MIN_MARKERS and share >= self.ROMANIZED_MIN_SHARE
            probabilities = self._romanized_model.romanized_probabilities(text)
            learned = sum(probabilities.values())
            if (lexical or learned >= self.ROMANIZED_MIN_PROBABILITY) and max(share, learned) >= vi_share:
                return self._romanized(probabilities, evidence, max(learned, min(1.0, share + 0.5)))
        if vi_share >= self.VIETNAMESE_MIN_SHARE:
            confidence = min(0.99, 0.4 + vi_share / 2)
            return self._result("vi", confidence, "lexicon", {"vi": confidence})
        return None

    def _romanized(self, probabilities: dict[str, float], evidence: dict[str, float], strength: float) -> Detection:
        """Punjabi or Hindi: the learned model decides, the lexicon breaks near-ties."""
        scores = {code: probabilities[code] + 0.05 * evidence[code] for code in ("pa", "hi")}
        code = max(scores, key=lambda c: scores[c])
        other = "hi" if code == "pa" else "pa"
        margin = scores[code] / (scores[code] + scores[other]) if scores[code] + scores[other] else 0.5
        confidence = min(0.99, strength * margin)
        return self._result(code, confidence, "romanized", {code: confidence, other: min(0.99, strength * (1 - margin))})

    def _by_lingua(self, text: str, script: str) -> Detection:
        supported, _ = SCRIPT_GROUPS[script]
        values = self._detectors[script].compute_language_confidence_values(text)
        scores = {v.language.iso_code_639_1.name.lower(): v.value for v in values}
        top = max(scores, key=lambda c: scores[c])
        best_supported = max(supported, key=lambda c: scores.get(c, 0.0))
        if (
            top not in supported
            and scores[top] >= self.DECOY_MIN_CONFIDENCE
            and scores[top] >= self.DECOY_MIN_RATIO * scores.get(best_supported, 0.0)
            and _letters(text) >= self.DECOY_MIN_LETTERS
        ):
            return self._result(top, _margin(scores, top), "lingua", scores)
        return self._result(best_supported, _margin(scores, best_supported), "lingua", scores)

    def _result(self, code: str, confidence: float, method: str, scores: dict[str, float]) -> Detection:
        supported = code in self.supported
        language = code if supported else FALLBACK
        kept = dict(sorted(scores.items(), key=lambda kv: -kv[1])[:3])
        return Detection(language, float(confidence), code, supported, True, method, kept)

    @staticmethod
    def _with_informative(detection: Detection, text: str, script: str, counts) -> Detection:
        """Mark detections from too little text as uninformative ("ok", "si", "👍", "2")."""
        if script in DENSE_SCRIPTS:
            enough = counts[script] >= 2
        elif script in UNSPACED_SCRIPTS:
            enough = counts[script] >= 4
        else:
            words = len(text.split())
            enough = words >= 2 and _letters(text) >= 6 and detection.confidence >= 0.6
        if enough:
            return detection
        return Detection(detection.language, min(detection.confidence, 0.3), detection.detected,
                         detection.supported, False, detection.method, detection.scores)


def menu_choice(text: str, codes: list[str]) -> str | None:
    """The language picked by number from the language menu ("2" is the second language)."""
    stripped = (text or "").strip().rstrip(".)")
    if stripped.isdigit() and 1 <= int(stripped) <= len(codes):
        return codes[int(stripped) - 1]
    return None


SWITCH_MARGIN = 0.3


def choose_language(previous: str | None, detection: Detection) -> str:
    """The conversation's language after this message.

    An explicit choice always wins; the first message sets the language even if it is short;
    after that only an informative message switches, and only when the current language is not
    almost as likely (a Taglish message in a Tagalog conversation stays Tagalog).
    """
    if detection.explicit or previous is None:
        return detection.language
    if not detection.informative or not detection.supported:
        return previous
    if detection.scores.get(previous, 0.0) >= detection.confidence - SWITCH_MARGIN:
        return previous
    return detection.language
