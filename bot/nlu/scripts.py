"""Writing systems of a message.

The script settles most of the languages the hotline supports outright (Korean, Thai, Punjabi in
Gurmukhi) and narrows the rest to a few candidates, which is both faster and more accurate on
SMS-length text than asking a statistical detector to choose among every language.
"""
from __future__ import annotations

from collections import Counter

import regex

SCRIPTS: dict[str, str] = {
    "latin": r"\p{Script=Latin}",
    "han": r"\p{Script=Han}",
    "kana": r"[\p{Script=Hiragana}\p{Script=Katakana}]",
    "hangul": r"\p{Script=Hangul}",
    "thai": r"\p{Script=Thai}",
    "gurmukhi": r"\p{Script=Gurmukhi}",
    "devanagari": r"\p{Script=Devanagari}",
    "arabic": r"\p{Script=Arabic}",
    "cyrillic": r"\p{Script=Cyrillic}",
    "bengali": r"\p{Script=Bengali}",
    "tamil": r"\p{Script=Tamil}",
    "gujarati": r"\p{Script=Gujarati}",
    "telugu": r"\p{Script=Telugu}",
    "kannada": r"\p{Script=Kannada}",
    "malayalam": r"\p{Script=Malayalam}",
    "sinhala": r"\p{Script=Sinhala}",
    "hebrew": r"\p{Script=Hebrew}",
    "greek": r"\p{Script=Greek}",
    "georgian": r"\p{Script=Georgian}",
    "armenian": r"\p{Script=Armenian}",
    "ethiopic": r"\p{Script=Ethiopic}",
    "khmer": r"\p{Script=Khmer}",
    "lao": r"\p{Script=Lao}",
    "myanmar": r"\p{Script=Myanmar}",
    "tibetan": r"\p{Script=Tibetan}",
}

_SCRIPT_OF = regex.compile("|".join(f"(?P<{name}>{pattern})" for name, pattern in SCRIPTS.items()))

#: Scripts whose characters carry a whole syllable or word: one of them weighs as much as several
#: Latin letters when deciding which script dominates a mixed message ("我的passport被拿走了").
DENSE_SCRIPTS = {"han", "kana", "hangul"}
DENSE_WEIGHT = 3


def script_counts(text: str) -> Counter[str]:
    """Letters (and combining marks) of each known script in the text."""
    counts: Counter[str] = Counter()
    for match in _SCRIPT_OF.finditer(text):
        counts[match.lastgroup or ""] += 1
    return counts


def dominant_script(counts: Counter[str]) -> str | None:
    """The script that carries most of the message, weighting dense scripts up; None if no letters."""
    if not counts:
        return None
    weighted = {
        name: count * (DENSE_WEIGHT if name in DENSE_SCRIPTS else 1) for name, count in counts.items()
    }
    best = max(weighted, key=lambda name: weighted[name])
    if best == "han" and counts.get("kana", 0) * 10 >= counts["han"]:
        return "kana"
    return best


def needs_segmentation(text: str) -> str | None:
    """The spaCy language whose tokenizer must split this text ('zh' or 'th'), if whitespace cannot."""
    script = dominant_script(script_counts(text))
    return {"han": "zh", "thai": "th"}.get(script or "")
