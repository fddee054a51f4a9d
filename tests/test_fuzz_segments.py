"""Property-based tests of the segmenter (``bot/channels/segments.py``, issue 8 item 7).

What must hold for any text, in any script: ``split_message`` gives bodies within Twilio's limit
that rebuild the text (only whitespace at the cuts and around a cut text may go), never splits a
character from its marks or a surrogate pair when it need not, and cuts at sentence ends when there
are some; ``split_segments``/``describe`` count GSM-7 septets (extension characters two) and UCS-2
code units (a character outside the BMP two) and pack them greedily, as phones and Twilio do.
Settings: ``tests/support/fuzz.py``.
"""
from __future__ import annotations

import math

from hypothesis import example, given
from hypothesis import strategies as st

from bot.channels.segments import (
    GSM_BASIC,
    GSM_EXTENSION,
    TWILIO_BODY_LIMIT,
    SegmentInfo,
    describe,
    encoding,
    length_units,
    segment_count,
    split_message,
    split_segments,
)
from tests.support.fuzz import fuzz

PRAYING = "\U0001F64F"
HIGH, LOW = "\ud83d", "\ude4f"  # the same emoji as two surrogate code points, as JSON may carry it
#: Characters the segmenter treats specially, drawn more often than chance would.
SPECIAL = list(
    "ab .!?…。！？।॥؟۔\"'”»)」 \n\r\t\x0b\x0c\x1c\x85\xa0\u2028\u3000\u200b\u200c\u200d"
    "\u0301\u0323\u0903\u094dกั่क्षЖ€{}[]~|^\\@£¤`\x1b"
) + [PRAYING, HIGH + LOW, HIGH, LOW]
GSM_CHARACTERS = sorted(GSM_BASIC | GSM_EXTENSION)
LIMITS = {"GSM-7": (160, 153), "UCS-2": (70, 67)}

any_character = st.one_of(st.sampled_from(SPECIAL), st.characters(exclude_categories=()))
#: Any code points at all (lone surrogates included), weighted towards the special ones.
any_text = st.lists(any_character, max_size=700).map("".join)
#: Texts that stay GSM-7, long enough for several segments.
gsm_text = st.text(st.sampled_from(GSM_CHARACTERS), max_size=700)
#: Long texts (up to 5,000 characters, the inbound limit) by repeating a random piece.
long_text = st.builds(lambda piece, times: (piece * times)[:5000],
                      st.lists(any_character, min_size=1, max_size=60).map("".join),
                      st.integers(1, 400))


def is_high(ch: str) -> bool:
    return "\ud800" <= ch <= "\udbff"


def is_low(ch: str) -> bool:
    return "\udc00" <= ch <= "\udfff"


def units(text: str, name: str) -> int:
    """Septets or UTF-16 code units, from the 3GPP rules directly rather than the module."""
    if name == "GSM-7":
        return len(text) + sum(ch in GSM_EXTENSION for ch in text)
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def packing_units(text: str) -> list[str]:
    """The text as characters, a surrogate pair held as two code points counted as one."""
    out: list[str] = []
    for ch in text:
        if out and is_high(out[-1]) and len(out[-1]) == 1 and is_low(ch):
            out[-1] += ch
        else:
            out.append(ch)
    return out


def positions(text: str, parts: list[str]) -> list[tuple[int, int]]:
    """Where each part lies in the text, asserting that only whitespace lies between them."""
    spans, at = [], 0
    for part in parts:
        while at < len(text) and text[at].isspace():
            at += 1
        assert text.startswith(part, at), (part[:40], text[at:at + 40])
        spans.append((at, at + len(part)))
        at += len(part)
    assert not text[at:].strip(), "text after the last part"
    return spans


# --- split_message ------------------------------------------------------------------------------


@fuzz(300)
@given(st.one_of(any_text, long_text), st.integers(1, 400))
@example("a" * 5000, 1600)
@example(" \u3000\x1c" * 10, 3)
@example("ab\u2028" * 20, 5)
def test_parts_fit_and_rebuild_the_text(text, limit):
    parts = split_message(text, limit)
    assert parts == split_message(text, limit), "not deterministic"
    if not text.strip():
        assert parts == []
        return
    if len(text) <= limit:
        assert parts == [text]
        return
    assert parts and all(0 < len(part) <= limit for part in parts)
    assert all(part == part.strip() for part in parts), "whitespace kept at a cut"
    positions(text, parts)


@fuzz(100)
@given(long_text)
def test_long_texts_fit_twilio_at_the_default_limit(text):
    parts = split_message(text)
    assert all(0 < len(part) <= TWILIO_BODY_LIMIT for part in parts)
    if text.strip():
        assert "".join("".join(p.split()) for p in parts) == "".join(text.split())


#: A character with the marks that belong to it; each cluster ends where a cut is allowed.
cluster = st.one_of(
    st.builds(lambda base, marks: base + "".join(marks), st.sampled_from("aeoЖกक"),
              st.lists(st.sampled_from("\u0301\u0323\u0308\u0e31\u0e48\u093e"), max_size=2)),
    st.just(PRAYING), st.just(HIGH + LOW), st.just("क्ष"), st.just("e\u200dx"),
)


@fuzz(200)
@given(st.lists(cluster, min_size=1, max_size=300), st.integers(3, 40))
@example(["e\u0301\u0323"] * 100, 10)
@example([HIGH + LOW] * 50, 7)
def test_hard_cuts_never_split_a_character_from_its_marks(clusters, limit):
    """Without spaces or sentence ends every cut is a hard one; none may fall inside a cluster
    (at most 3 code points, so an allowed cut always lies within the limit)."""
    text = "".join(clusters)
    allowed = {0, len(text)}
    at = 0
    for item in clusters:
        at += len(item)
        allowed.add(at)
    parts = split_message(text, limit)
    for start, end in positions(text, parts):
        assert start in allowed and end in allowed, (start, end)


sentence = st.builds(
    lambda words, end: " ".join(words) + end,
    st.lists(st.text(st.sampled_from("abcdeЖกé"), min_size=1, max_size=8), min_size=1, max_size=6),
    st.sampled_from([".", "!", "?", "…", "!?", ".”"]),
)


@fuzz(200)
@given(st.lists(sentence, min_size=2, max_size=60), st.integers(60, 200))
def test_cuts_fall_at_sentence_ends_when_sentences_fit(sentences, limit):
    """Every part is a run of whole sentences, and as many as fit."""
    text = " ".join(sentences)
    parts = split_message(text, limit)
    first = 0
    for part in parts:
        last = first + 1
        while " ".join(sentences[first:last]) != part:
            last += 1
            assert last <= len(sentences), f"part not made of whole sentences: {part[-20:]!r}"
        if last < len(sentences):
            assert len(part) + 1 + len(sentences[last]) > limit, "a part could have held the next sentence"
        first = last
    assert first == len(sentences)


# --- segments -----------------------------------------------------------------------------------


@fuzz(300)
@given(st.one_of(any_text, gsm_text))
@example("a" * 152 + "€" + "a" * 152)
@example("Ж" * 66 + HIGH + LOW + "Ж" * 66)
@example("\x1b")
def test_segments_rebuild_the_text_and_are_packed_greedily(text):
    name = encoding(text)
    segments = split_segments(text)
    assert "".join(segments) == text
    assert all(segments), "empty segment"
    single, multi = LIMITS[name]
    total = units(text, name)
    assert length_units(text) == total
    if not text:
        assert segments == []
    elif total <= single:
        assert segments == [text]
    else:
        assert len(segments) >= math.ceil(total / multi)
        assert all(units(segment, name) <= multi for segment in segments)
        for segment, following in zip(segments, segments[1:]):
            assert not (is_high(segment[-1]) and is_low(following[0])), "surrogate pair split"
            first = packing_units(following)[0]
            assert units(segment, name) + units(first, name) > multi, "segment not full"
    assert segment_count(text) == len(segments)
    assert describe(text) == SegmentInfo(name, total, len(segments))


@fuzz(200)
@given(any_text, any_text)
def test_encoding_is_gsm7_only_when_every_character_is(left, right):
    text = left + right
    assert (encoding(text) == "GSM-7") == all(encoding(ch) == "GSM-7" for ch in text)
    assert (encoding(text) == "GSM-7") == (encoding(left) == encoding(right) == "GSM-7")
    for ch in set(text):
        if encoding(ch) == "GSM-7":
            assert length_units(ch) == (2 if ch in "^{}\\[~]|€\f" else 1)
        else:
            assert length_units(ch) == len(ch.encode("utf-16-le", "surrogatepass")) // 2


@fuzz(200)
@given(st.text(st.characters(exclude_categories=()), max_size=300))
def test_astral_characters_cost_the_same_as_their_surrogate_pair(text):
    """A character outside the BMP counts like the surrogate pair a JSON escape gives for it."""
    as_code_units = "".join(_as_surrogates(ch) for ch in text)
    assert describe(as_code_units) == describe(text)
    assert len(split_segments(as_code_units)) == len(split_segments(text))


def _as_surrogates(ch: str) -> str:
    """An astral character as its two surrogate code points; any other character unchanged."""
    if ord(ch) <= 0xFFFF:
        return ch
    value = ord(ch) - 0x10000
    return chr(0xD800 + (value >> 10)) + chr(0xDC00 + (value & 0x3FF))
