"""The agent hub's side of the bot: case summaries and the handoff queue the hub reads."""
