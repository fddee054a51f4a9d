"""SMS segment counting and splitting of long replies for Twilio.

Why: an SMS is carried in segments of 140 bytes, and the hotline pays for every one of them. A
reply whose every character is in the GSM 03.38 default alphabet (or its extension table) is sent
as GSM-7: 160 septets in one segment, 153 per segment once it needs several (the rest of each
segment is the concatenation header). A single character outside it, such as "ê", any emoji or any
letter of Chinese, Arabic, Thai, Punjabi, Hindi, Korean, Ukrainian or Vietnamese, turns the whole
message into UCS-2: 70 UTF-16 code units in one segment, 67 per segment in a multipart message.
Extension characters (``^ { } \\ [ ~ ] | €`` and form feed) cost two septets (escape + code), and a
character outside the Basic Multilingual Plane costs two code units (a surrogate pair). Neither is
ever split across two segments, so the count comes from packing characters into segments one by
one, as phones and Twilio do, not from dividing the length: 152 "a" + "€" + 152 "a" is 306 septets
but needs 3 segments, not 2.

Separately, Twilio's Messages API rejects a body over 1,600 characters; ``split_message`` cuts
longer texts into bodies that fit, at sentence ends where it can.

Why hand-written: of the PyPI packages that count segments, ``smsutil`` (1.1.3, last released in
2020) needs the Python 2 shim ``future``, accepts the escape character itself as text and calls an
empty text non-GSM; ``sms-counter`` (0.0.1) divides the length, so it splits extension characters
across segments, and needs pydantic; ``gsm0338`` is only a codec. The tables below are those of
3GPP TS 23.038 (GSM 03.38), section 6.2.1.
"""
from __future__ import annotations

import re
import unicodedata
from bisect import bisect_right
from dataclasses import dataclass

GSM_7 = "GSM-7"
UCS_2 = "UCS-2"

#: The default alphabet, in code order, without 0x1B (the escape to the extension table).
GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ"
    " !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
#: The extension table: each is sent as escape + code, two septets.
GSM_EXTENSION = frozenset("\f^{}\\[~]|€")

#: (units in a single-segment message, units per segment of a multipart message)
_LIMITS = {GSM_7: (160, 153), UCS_2: (70, 67)}

#: One packing unit: a surrogate pair held as two code points stays together; anything else is one.
_CHARACTER = re.compile(r"[\ud800-\udbff][\udc00-\udfff]|.", re.DOTALL)

#: Where a sentence ends: Latin-script ends (., !, ?, …) only when a space or the end of the text
#: follows (so "1.833.900.1010" or "3.5" are not cut); the Chinese/Japanese, Devanagari and
#: Gurmukhi (। ॥), Arabic (؟) and Urdu (۔) ends anywhere. Closing quotes and brackets stay with it.
_SENTENCE_END = re.compile(
    r"(?:[.!?…]+[\"'”’»)\]]*(?=\s|$)|[。！？।॥؟۔]+[\"'”’»)\]」』）]*)"
)
_WHITESPACE = re.compile(r"\s+")

#: Twilio's limit on the length of a message body, in characters.
TWILIO_BODY_LIMIT = 1600

_JOINERS = frozenset("\u200c\u200d")
_VIRAMA = 9  # canonical combining class of the Indic viramas, which join the next consonant


@dataclass(frozen=True)
class SegmentInfo:
    """What a UI counter shows for a text: its encoding, its length in that encoding, and cost."""

    encoding: str
    units: int
    segments: int


def encoding(text: str) -> str:
    """"GSM-7" if every character is in GSM 03.38 or its extension table, else "UCS-2"."""
    if all(ch in GSM_BASIC or ch in GSM_EXTENSION for ch in text):
        return GSM_7
    return UCS_2


def _units(character: str, encoding_name: str) -> int:
    """Septets (GSM-7) or UTF-16 code units (UCS-2) of one packing unit."""
    if encoding_name == GSM_7:
        return 2 if character in GSM_EXTENSION else 1
    return len(character.encode("utf-16-le", "surrogatepass")) // 2


def length_units(text: str) -> int:
    """The length of ``text`` in its encoding: septets for GSM-7, UTF-16 code units for UCS-2."""
    name = encoding(text)
    return sum(_units(ch, name) for ch in _CHARACTER.findall(text))


def split_segments(text: str) -> list[str]:
    """The texts of the segments ``text`` is sent in, packed greedily; [] for an empty text."""
    name = encoding(text)
    weighted = [(ch, _units(ch, name)) for ch in _CHARACTER.findall(text)]
    single, multi = _LIMITS[name]
    if sum(units for _, units in weighted) <= single:
        return [text] if text else []
    segments: list[str] = []
    current, used = "", 0
    for character, units in weighted:
        if used + units > multi:
            segments.append(current)
            current, used = "", 0
        current += character
        used += units
    return segments + [current]


def segment_count(text: str) -> int:
    """How many SMS segments ``text`` costs; 0 for an empty text."""
    return len(split_segments(text))


def describe(text: str) -> SegmentInfo:
    """Encoding, length in units and segment count of ``text``, for UI counters."""
    return SegmentInfo(encoding(text), length_units(text), segment_count(text))


def split_message(text: str, limit: int = TWILIO_BODY_LIMIT) -> list[str]:
    """Cut ``text`` into message bodies of at most ``limit`` characters (Python ``len``).

    A text that fits is returned whole, as ``[text]``; a blank text (empty or only whitespace) has
    nothing to send and gives ``[]``. A longer text is cut after the last sentence end that
    fits, else at the last whitespace that fits (Thai separates sentences with spaces), else at
    the last position that splits neither a surrogate pair nor a letter from its combining marks.
    Whitespace at the cuts, and at both ends of a text that is cut, is dropped; nothing else is.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    if not text.strip():
        return []
    if len(text) <= limit:
        return [text]
    sentence_cuts = [m.end() for m in _SENTENCE_END.finditer(text)]
    space_cuts = [m.start() for m in _WHITESPACE.finditer(text)]
    parts: list[str] = []
    start = _skip_space(text, 0)
    while len(text) - start > limit:
        cut = _cut(text, start, limit, sentence_cuts, space_cuts)
        parts.append(text[start:cut].rstrip())
        start = _skip_space(text, cut)
    rest = text[start:].rstrip()
    return parts + [rest] if rest else parts


def _cut(text: str, start: int, limit: int, sentence_cuts: list[int], space_cuts: list[int]) -> int:
    """Where the part starting at ``start`` ends: a sentence end, a space, or a safe hard cut."""
    end = start + limit
    for cuts in (sentence_cuts, space_cuts):
        best = _last_within(cuts, start, end)
        if best is not None:
            return best
    return next((i for i in range(end, start, -1) if _safe_cut(text, i)), end)


def _last_within(cuts: list[int], start: int, end: int) -> int | None:
    """The largest of the sorted ``cuts`` in (start, end], if any."""
    index = bisect_right(cuts, end)
    if index and cuts[index - 1] > start:
        return cuts[index - 1]
    return None


def _safe_cut(text: str, i: int) -> bool:
    """Whether cutting between ``text[i - 1]`` and ``text[i]`` keeps every character whole."""
    before, after = text[i - 1], text[i]
    if "\ud800" <= before <= "\udbff" and "\udc00" <= after <= "\udfff":
        return False
    if unicodedata.category(after).startswith("M") or after in _JOINERS or before in _JOINERS:
        return False
    return unicodedata.combining(before) != _VIRAMA


def _skip_space(text: str, i: int) -> int:
    """The first position at or after ``i`` that is not whitespace."""
    match = _WHITESPACE.match(text, i)
    return match.end() if match else i
