"""Runs the project's own NLU components, as listed in ``config.yml``, on single messages.

``hotline triage`` uses this so that what it prints is what the live bot computes: the same
component classes with the same configuration, without loading the trained intent model.
"""
from __future__ import annotations

import importlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml
from rasa.engine.graph import ExecutionContext, GraphSchema
from rasa.nlu.tokenizers.tokenizer import Tokenizer
from rasa.shared.nlu.training_data.message import Message

from bot import PROJECT_ROOT
from bot.nlu.components import LANGUAGE_DETECTION, TRIAGE

PROJECT_COMPONENT_PREFIX = "bot.nlu."
RISK_LEVELS = ("none", "low", "medium", "high", "imminent")


def project_components(config_path: Path = PROJECT_ROOT / "config.yml") -> list[Any]:
    """Instances of the project's own NLU components of the pipeline that add triage data (not
    the tokenizer, which only feeds the intent classifier), in pipeline order."""
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    context = ExecutionContext(GraphSchema({}), "triage")
    components = []
    for step in config["pipeline"]:
        name = step["name"]
        if not name.startswith(PROJECT_COMPONENT_PREFIX):
            continue
        module_name, class_name = name.rsplit(".", 1)
        cls = getattr(importlib.import_module(module_name), class_name)
        if issubclass(cls, Tokenizer):
            continue
        options = {**cls.get_default_config(), **{k: v for k, v in step.items() if k != "name"}}
        components.append(cls.create(options, None, None, context))
    return components


class Triage:
    """Loads the components once; ``run`` then handles one message in well under a millisecond."""

    def __init__(self, components: list[Any] | None = None) -> None:
        self.components = components if components is not None else project_components()

    def run(self, text: str) -> dict[str, Any]:
        message = Message(data={"text": text})
        messages = [message]
        for component in self.components:
            messages = component.process(messages)
        detection = message.get(LANGUAGE_DETECTION) or {}
        triage = message.get(TRIAGE) or {}
        return {
            "text": text,
            "language": detection.get("detected", "en"),
            "language_confidence": detection.get("confidence", 0.0),
            "language_supported": detection.get("supported", True),
            "indicators": triage.get("indicators", []),
            "evidence": [
                {"indicator": e["indicator"], "start": e["start"], "end": e["end"]} for e in triage.get("evidence", [])
            ],
            "risk": triage.get("risk", "none"),
            "imminent": bool(triage.get("imminent")),
            "third_party": bool(triage.get("third_party")),
            "minor": bool(triage.get("minor")),
        }


def _text_of(line: str) -> tuple[str, str | None]:
    """The text of one input line, and a note when the line was not the expected JSON."""
    try:
        record = json.loads(line)
    except ValueError:
        return line, "line is not JSON; read as plain text"
    if isinstance(record, dict):
        value = record.get("text")
        if isinstance(value, str):
            return value, None
        return ("" if value is None else json.dumps(value, ensure_ascii=False)), "no text string in line"
    return line, "line is not a JSON object; read as plain text"


def _valid_unicode(text: str) -> str:
    """Lone surrogates (from JSON escapes like "\\ud800") replaced, so the text can be written out."""
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def triage_lines(lines: Iterable[bytes], triage: Triage) -> Iterator[str]:
    """One JSON output line per input line, in order; undecodable bytes are replaced, never fatal."""
    for raw in lines:
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        text, note = _text_of(line)
        text = _valid_unicode(text)
        result = triage.run(text)
        if note:
            result["warning"] = note
        yield json.dumps(result, ensure_ascii=False)
