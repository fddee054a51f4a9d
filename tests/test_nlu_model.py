"""A small model trained on the project data recognises intents in every language."""
from __future__ import annotations

import pytest

from bot.nlu.evaluation import intent_accuracy

LANGUAGES = ["en", "fr", "es", "tl", "pa", "hi", "zh", "vi", "uk", "ar", "ko", "th"]


@pytest.fixture(scope="module")
def accuracy(trained_model):
    return intent_accuracy(trained_model)


@pytest.mark.slow
@pytest.mark.parametrize("code", LANGUAGES)
def test_intent_accuracy_on_heldout_examples_is_at_least_90_percent(accuracy, code):
    report = accuracy[code]
    assert report["n"] >= 13 * 5
    assert report["accuracy"] >= 0.90, report["errors"]
