"""Shared fixtures: a small model trained once per test session, and free ports."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("RASA_TELEMETRY_ENABLED", "false")

#: DIET epochs for the test model: enough for the held-out accuracy target, quick on 2 cores.
TEST_EPOCHS = int(os.environ.get("HOTLINE_TEST_EPOCHS", "20"))


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory) -> Path:
    """A model of the full project data, trained once with fewer epochs. HOTLINE_TEST_MODEL names
    an already trained model instead (for working on tests; CI always trains)."""
    from bot.training import train

    if os.environ.get("HOTLINE_TEST_MODEL"):
        return Path(os.environ["HOTLINE_TEST_MODEL"])

    return train(out=tmp_path_factory.mktemp("models"), epochs=TEST_EPOCHS)


#: Seconds before the bot tells a texter nobody has taken the case yet, in the test stack.
HANDOFF_WAIT = 12


@pytest.fixture(scope="session")
def stacks(trained_model, tmp_path_factory):
    """The whole stack (`hotline up`), shared by the modules that need it."""
    from tests.support.stack import StackHolder

    holder = StackHolder(trained_model, tmp_path_factory, {"HOTLINE_HANDOFF_WAIT": str(HANDOFF_WAIT)})
    yield holder
    holder.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
