"""The hotline triage bot: channels, NLU components, triage, agent hub, replay and CLI."""
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = PROJECT_ROOT / "data"
