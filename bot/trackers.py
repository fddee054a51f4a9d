"""Rasa's SQL tracker store with every event encrypted at rest.

Rasa Open Source keeps each event as clear JSON in the ``events`` table: the texter's words, the
parse data, the slots with the indicators' evidence. ``EncryptedSQLTrackerStore`` is Rasa's own
``SQLTrackerStore`` (same table, same queries, same locking and session handling) whose ``data``
column holds the event JSON encrypted with the project's Fernet keys (``bot.privacy``). The other
columns stay readable because Rasa's queries need them and they hold no content: the pseudonymous
sender id (an HMAC of the number), the event type, the timestamp and intent or action names.

Enabled by ``bot.settings.tracker_store`` as a custom tracker store
(``type: bot.trackers.EncryptedSQLTrackerStore``). Rows written before encryption was turned on
(plain JSON) are still read, and ``hotline keys rotate`` re-encrypts them with the newest key.
"""
from __future__ import annotations

import json
import logging
from typing import Any, Optional, Text

from rasa.core.tracker_store import SQLTrackerStore
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.shared.nlu.constants import INTENT_NAME_KEY

from bot.privacy import Keys, default_keys

logger = logging.getLogger(__name__)


class EncryptedSQLTrackerStore(SQLTrackerStore):
    """``SQLTrackerStore`` whose event data is Fernet-encrypted (keys from ``bot.privacy``)."""

    def __init__(self, *args: Any, keys: Keys | None = None, **kwargs: Any) -> None:
        self.keys = keys or default_keys()
        super().__init__(*args, **kwargs)

    def seal(self, event: dict[str, Any]) -> str:
        return self.keys.encrypt(json.dumps(event))

    def unseal(self, data: str) -> dict[str, Any] | None:
        """An event from a stored row: decrypted, or plain JSON written before encryption.

        A row no key opens (a key dropped too early) is left out with a warning naming its id
        only, so the rest of the conversation still loads rather than nothing at all.
        """
        if data.startswith("{"):
            return json.loads(data)
        plain = self.keys.decrypt(data)
        return None if plain is None else json.loads(plain)

    async def save(self, tracker: DialogueStateTracker) -> None:
        """As Rasa's ``save``, with the event's data sealed."""
        await self.stream_events(tracker)
        with self.session_scope() as session:
            for event in self._additional_events(session, tracker):
                data = event.as_dict()
                session.add(self.SQLEvent(
                    sender_id=tracker.sender_id,
                    type_name=event.type_name,
                    timestamp=data.get("timestamp"),
                    intent_name=data.get("parse_data", {}).get("intent", {}).get(INTENT_NAME_KEY),
                    action_name=data.get("name"),
                    data=self.seal(data),
                ))
            session.commit()

    async def _retrieve(self, sender_id: Text,
                        fetch_events_from_all_sessions: bool) -> Optional[DialogueStateTracker]:
        """As Rasa's ``_retrieve``, opening each row."""
        with self.session_scope() as session:
            rows = self._event_query(session, sender_id,
                                     fetch_events_from_all_sessions=fetch_events_from_all_sessions).all()
            events = []
            for row in rows:
                event = self.unseal(row.data)
                if event is None:
                    logger.warning("tracker event %s could not be decrypted with any key; left out", row.id)
                    continue
                events.append(event)
        if not self.domain or not events:
            return None
        return DialogueStateTracker.from_dict(sender_id, events, self.domain.slots)
