"""Intent accuracy per language on the held-out examples (tests/data/nlu_heldout/).

Run: ``.venv/bin/python bench/intents.py [--epochs N | --model PATH] [--errors]``. Trains a model
with the project's config (DIET epochs overridable) unless one is given, then prints a Markdown
table: examples, accuracy per language, and the training time. Target (issue 2): at least 90% in
every language.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.nlu.evaluation import intent_accuracy  # noqa: E402
from bot.training import train  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--errors", action="store_true", help="list misclassified examples")
    args = parser.parse_args()
    elapsed = None
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            start = time.monotonic()
            model = train(out=Path(tmp), epochs=args.epochs)
            elapsed = time.monotonic() - start
        report = intent_accuracy(model)
    epochs = args.epochs if args.epochs is not None else "config.yml"
    print(f"\nDIET epochs: {epochs}; training time: {elapsed:.0f} s" if elapsed else f"\nmodel: {args.model}")
    print("\n| language | held-out examples | intent accuracy |\n|---|---|---|")
    for code, entry in sorted(report.items()):
        print(f"| {code} | {entry['n']} | {entry['accuracy']:.1%} |")
    total = sum(e["n"] for e in report.values())
    correct = sum(e["correct"] for e in report.values())
    print(f"| **all** | {total} | **{correct / total:.1%}** |")
    if args.errors:
        for code, entry in sorted(report.items()):
            for text, expected, got in entry["errors"]:
                print(f"{code}\t{expected} -> {got}\t{text}")


if __name__ == "__main__":
    main()
