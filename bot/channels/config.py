"""The Twilio channel's settings, all from the environment (secrets never live in files in git).

- ``TWILIO_ACCOUNT_SID``, ``TWILIO_AUTH_TOKEN``: the account; the token also checks webhook signatures.
- ``TWILIO_API_URL``: Twilio's REST API base (default Twilio's own; the local stand-in in development).
- ``HOTLINE_PUBLIC_URL``: the base URL Twilio calls (a proxy or tunnel); signatures are computed on
  it and status callbacks are requested on it. Unset (local use only): the URL the request arrived
  on, and callbacks to ``http://127.0.0.1:HOTLINE_RASA_PORT``. Required behind Twilio.
- ``HOTLINE_SEND_ATTEMPTS``, ``HOTLINE_TURN_ATTEMPTS``: how often a send or a turn is tried.
- ``HOTLINE_RETRY_BASE``: first retry delay in seconds (doubles each time, at most 5 minutes).
- ``HOTLINE_CLAIM_LEASE``: seconds after which work claimed by a stopped process is taken over.
- ``HOTLINE_TURN_CONCURRENCY``: conversations processed at once per Rasa process. Rasa's NLU runs
  on the event loop, so more turns at once means webhooks wait longer for their answer.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

TWILIO_API = "https://api.twilio.com"
WEBHOOK_PATH = "/webhooks/hotline_twilio/webhook"
STATUS_PATH = "/webhooks/hotline_twilio/status"
# A texter's or the hotline's address as Twilio writes it: E.164, with "whatsapp:" for WhatsApp.
ADDRESS = re.compile(r"^(whatsapp:)?\+[1-9][0-9]{6,14}$")
# WhatsApp allows free-form messages only this long after the texter's last message.
WHATSAPP_WINDOW = 24 * 3600


@dataclass(frozen=True)
class TwilioConfig:
    account_sid: str
    auth_token: str
    api_url: str = TWILIO_API
    public_url: str | None = None
    send_attempts: int = 8
    turn_attempts: int = 3
    retry_base: float = 1.0
    lease: float = 30.0
    turn_concurrency: int = 4

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "TwilioConfig":
        env = dict(os.environ if env is None else env)
        return cls(
            account_sid=env.get("TWILIO_ACCOUNT_SID", ""),
            auth_token=env.get("TWILIO_AUTH_TOKEN", ""),
            api_url=(env.get("TWILIO_API_URL") or TWILIO_API).rstrip("/"),
            public_url=(env.get("HOTLINE_PUBLIC_URL") or "").rstrip("/") or None,
            send_attempts=int(env.get("HOTLINE_SEND_ATTEMPTS", 8)),
            turn_attempts=int(env.get("HOTLINE_TURN_ATTEMPTS", 3)),
            retry_base=float(env.get("HOTLINE_RETRY_BASE", 1.0)),
            lease=float(env.get("HOTLINE_CLAIM_LEASE", 30.0)),
            turn_concurrency=int(env.get("HOTLINE_TURN_CONCURRENCY", 4)),
        )

    def backoff(self, attempts: int) -> float:
        """Delay before the next try after ``attempts`` failures: doubling, capped at 5 minutes."""
        return min(300.0, self.retry_base * 2 ** max(0, attempts - 1))
