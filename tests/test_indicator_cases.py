"""Per-language indicator cases: what ``hotline triage`` must find in short texts written the way
texters write (SMS spellings, no accents, romanized, mixed with English), and what it must not.

The cases live in ``tests/data/indicator_cases/<lang>.yml`` (the tests' own texts, never the
benchmark's evaluation set) and run through the whole triage pipeline, language detection included.
"""
from __future__ import annotations

import pytest
import yaml

from bot import PROJECT_ROOT
from bot.triage.pipeline import Triage

CASES = PROJECT_ROOT / "tests" / "data" / "indicator_cases"
SUPPORTED = ["en", "fr", "es", "tl", "pa", "hi", "zh", "vi", "uk", "ar", "ko", "th"]


def _cases() -> list:
    params = []
    for code in SUPPORTED:
        data = yaml.safe_load((CASES / f"{code}.yml").read_text(encoding="utf-8"))
        for index, case in enumerate(data["cases"]):
            params.append(pytest.param(code, case, id=f"{code}-{index}"))
    return params


@pytest.fixture(scope="module")
def triage() -> Triage:
    return Triage()


@pytest.mark.parametrize("code", SUPPORTED)
def test_every_language_has_positive_and_negative_cases(code):
    cases = yaml.safe_load((CASES / f"{code}.yml").read_text(encoding="utf-8"))["cases"]
    assert sum(bool(c["indicators"]) for c in cases) >= 10
    assert sum(not c["indicators"] for c in cases) >= 5


@pytest.mark.parametrize("code,case", _cases())
def test_indicator_case(triage, code, case):
    result = triage.run(case["text"])
    assert sorted(result["indicators"]) == sorted(case["indicators"]), result["evidence"]
    assert result["imminent"] == case.get("imminent", False)
    if "third_party" in case:
        assert result["third_party"] == case["third_party"]
    if {"MINOR", "SEX"} <= set(case["indicators"]):
        assert result["risk"] in ("high", "imminent")
