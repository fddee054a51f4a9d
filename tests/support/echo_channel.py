"""A Rasa-less server for channel tests: the real channel blueprint, registered the way Rasa does,
in front of a scripted dialogue that answers "echo <n>: <text>" (n counts the conversation's turns).

Run: python -m tests.support.echo_channel PORT [DELAY_SECONDS]. The dialogue stands in for Rasa's
agent only; the channel, its store, its workers and the Twilio client are the real ones.
"""
from __future__ import annotations

import asyncio
import sys
from collections import Counter

from rasa.core.channels.channel import UserMessage, register
from rasa.core.lock_store import InMemoryLockStore
from rasa.core.tracker_store import InMemoryTrackerStore
from rasa.shared.core.domain import Domain
from sanic import Sanic

from bot.channels.rasa_channel import HotlineTwilioInput
from bot.channels.config import TwilioConfig


class EchoAgent:
    def __init__(self, delay: float) -> None:
        self.turns: Counter[str] = Counter()
        self.delay = delay
        # What the channel's eraser and retention purge (bot.retention) reach through Rasa's agent.
        self.tracker_store = InMemoryTrackerStore(Domain.empty())
        self.lock_store = InMemoryLockStore()

    async def handle_message(self, message: UserMessage) -> None:
        self.turns[message.sender_id] += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        await message.output_channel.send_text_message(
            message.sender_id, f"echo {self.turns[message.sender_id]}: {message.text}")


def main() -> None:
    port = int(sys.argv[1])
    delay = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
    app = Sanic("echo_channel")
    app.ctx.agent = EchoAgent(delay)
    register([HotlineTwilioInput(TwilioConfig.from_env())], app, "/webhooks/")
    app.run(host="127.0.0.1", port=port, access_log=False, motd=False)


if __name__ == "__main__":
    main()
