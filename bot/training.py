"""Training the Rasa model with the project's files (what ``hotline train`` runs)."""
from __future__ import annotations

import tempfile
from pathlib import Path

import yaml

from bot import PROJECT_ROOT

CONFIG = PROJECT_ROOT / "config.yml"
DOMAIN = PROJECT_ROOT / "domain.yml"
TRAINING_DATA = [PROJECT_ROOT / "data" / "nlu", PROJECT_ROOT / "data" / "rules.yml"]


def config_with_epochs(epochs: int | None, directory: Path) -> Path:
    """The pipeline config, with DIET's epochs replaced when a quicker model is wanted (tests)."""
    if epochs is None:
        return CONFIG
    config = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    for step in config["pipeline"]:
        if step["name"] == "DIETClassifier":
            step["epochs"] = epochs
    path = directory / "config.yml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return path


def train(
    out: Path = PROJECT_ROOT / "models",
    epochs: int | None = None,
    fixed_model_name: str | None = None,
    training_files: list[Path] | None = None,
) -> Path:
    """Train NLU and dialogue; returns the model archive's path."""
    from rasa.model_training import train as rasa_train

    with tempfile.TemporaryDirectory() as tmp:
        result = rasa_train(
            domain=str(DOMAIN),
            config=str(config_with_epochs(epochs, Path(tmp))),
            training_files=[str(p) for p in (training_files or TRAINING_DATA)],
            output=str(out),
            fixed_model_name=fixed_model_name,
        )
    if result.code != 0 or not result.model:
        raise RuntimeError(f"rasa train failed with code {result.code}")
    return Path(result.model)


def latest_model(directory: Path = PROJECT_ROOT / "models") -> Path | None:
    """The newest model archive, if any."""
    models = sorted(directory.glob("*.tar.gz"), key=lambda p: p.stat().st_mtime)
    return models[-1] if models else None
