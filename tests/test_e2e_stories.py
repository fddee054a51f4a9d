"""End-to-end conversation stories in every language, checked by `rasa test` against the model:
the intent NLU gives each texter message and every action the policies predict.

Stories are generated from tests/e2e/templates.yml and tests/e2e/phrases.yml; see generate.py.
"""
from __future__ import annotations

import subprocess
import sys

from tests.e2e.generate import LANGUAGES, STORIES, stories

from bot import PROJECT_ROOT


def test_generated_stories_are_up_to_date():
    for language in LANGUAGES:
        on_disk = (STORIES / f"test_{language}.yml").read_text(encoding="utf-8")
        assert on_disk == stories(language), f"run: python -m tests.e2e.generate ({language})"


def test_every_story_passes_in_every_language(trained_model, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "rasa", "test", "core", "--model", str(trained_model), "--stories", str(STORIES),
         "--out", str(tmp_path), "--fail-on-prediction-errors", "--no-plot"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=1800,
    )
    failed = tmp_path / "failed_test_stories.yml"
    report = failed.read_text(encoding="utf-8") if failed.exists() else ""
    print((tmp_path / "story_report.json").read_text() if (tmp_path / "story_report.json").exists() else "")
    assert result.returncode == 0 and "story:" not in report, report[-6000:] or result.stderr[-4000:]
