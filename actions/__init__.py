"""The rasa-sdk actions (``actions.py``); this process's log lines are scrubbed of texters' words."""
from bot.log_redaction import install

install()
