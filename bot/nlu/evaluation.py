"""Intent accuracy of a trained model on the held-out examples, per language.

Used by the test that trains a small model and by ``bench/intents.py``. Held-out examples live in
``tests/data/nlu_heldout/<language>.yml`` and are never used for training.
"""
from __future__ import annotations

import asyncio
from collections import defaultdict
from pathlib import Path

from bot import PROJECT_ROOT

HELDOUT_DIR = PROJECT_ROOT / "tests" / "data" / "nlu_heldout"


def heldout_examples(directory: Path = HELDOUT_DIR) -> dict[str, list[tuple[str, str]]]:
    """(text, intent) pairs per language, from the held-out files."""
    from rasa.shared.nlu.training_data.formats.rasa_yaml import RasaYAMLReader

    examples: dict[str, list[tuple[str, str]]] = {}
    for path in sorted(directory.glob("*.yml")):
        data = RasaYAMLReader().read(str(path))
        examples[path.stem] = [(m.get("text"), m.get("intent")) for m in data.intent_examples]
    return examples


async def _parse_all(model: Path, texts: list[str]) -> list[str]:
    from rasa.core.agent import Agent

    agent = Agent.load(str(model))
    intents = []
    for text in texts:
        parsed = await agent.parse_message(text)
        intents.append(parsed["intent"]["name"])
    return intents


def intent_accuracy(model: Path) -> dict[str, dict]:
    """Per language: number of examples, accuracy, and the misclassified examples."""
    examples = heldout_examples()
    flat = [(lang, text, intent) for lang, pairs in examples.items() for text, intent in pairs]
    predicted = asyncio.run(_parse_all(model, [text for _, text, _ in flat]))
    report: dict[str, dict] = defaultdict(lambda: {"n": 0, "correct": 0, "errors": []})
    for (lang, text, intent), got in zip(flat, predicted):
        entry = report[lang]
        entry["n"] += 1
        if got == intent:
            entry["correct"] += 1
        else:
            entry["errors"].append((text, intent, got))
    for entry in report.values():
        entry["accuracy"] = entry["correct"] / entry["n"]
    return dict(report)
