"""Shared fixtures: a small model trained once per test session, and free ports."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from bot.replay.spawn import free_port  # noqa: F401  (fixtures and rigs import it from here)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("RASA_TELEMETRY_ENABLED", "false")

#: DIET epochs for the test model: enough for the held-out accuracy target, quick on 2 cores.
TEST_EPOCHS = int(os.environ.get("HOTLINE_TEST_EPOCHS", "20"))


#: Fixtures that need the trained model: tests using them run after all the others.
NEEDS_MODEL = {"trained_model", "stacks", "stack", "rasa_api"}
_training: dict = {}


@pytest.hookimpl(trylast=True)  # after pytest's own grouping of items by fixture parameters
def pytest_collection_modifyitems(session, config, items) -> None:
    """Start training the test model in a background process as soon as the tests are collected,
    and run the tests that do not need it first: they run while it trains (about 14 minutes on 2
    cores) instead of before it. CI's time limit is why."""
    if os.environ.get("HOTLINE_TEST_MODEL"):
        return
    needs = [item for item in items if NEEDS_MODEL & set(getattr(item, "fixturenames", ()))]
    if not needs:
        return
    items[:] = [item for item in items if item not in needs] + needs
    import subprocess
    import sys
    import tempfile

    out = Path(tempfile.mkdtemp(prefix="hotline-test-model-"))
    log = open(out / "train.log", "w")
    _training.update(out=out, log=log, process=subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "train", "--epochs", str(TEST_EPOCHS), "--out", str(out)],
        stdout=log, stderr=subprocess.STDOUT))


def pytest_sessionfinish(session, exitstatus) -> None:
    process = _training.get("process")
    if process is not None and process.poll() is None:
        process.terminate()
        process.wait(30)


@pytest.fixture(scope="session")
def trained_model() -> Path:
    """A model of the full project data, trained once per session (in the background, see
    ``pytest_collection_modifyitems``). HOTLINE_TEST_MODEL names an already trained model instead
    (for working on tests; CI always trains)."""
    if os.environ.get("HOTLINE_TEST_MODEL"):
        return Path(os.environ["HOTLINE_TEST_MODEL"])
    process = _training["process"]
    code = process.wait()
    _training["log"].close()
    models = sorted(_training["out"].glob("*.tar.gz"))
    assert code == 0 and models, (_training["out"] / "train.log").read_text()[-3000:]
    return models[-1]


#: Seconds before the bot tells a texter nobody has taken the case yet, in the test stack.
HANDOFF_WAIT = 12


@pytest.fixture(scope="session")
def stacks(trained_model, tmp_path_factory):
    """The whole stack (`hotline up`), shared by the modules that need it."""
    from tests.support.stack import StackHolder

    holder = StackHolder(trained_model, tmp_path_factory, {"HOTLINE_HANDOFF_WAIT": str(HANDOFF_WAIT)})
    yield holder
    holder.stop()


