"""Logs never hold what texters wrote or their numbers, whichever library writes the line.

``install()`` makes every logger of the process (``logging.Logger.makeRecord``), Rasa's, Sanic's,
aiohttp's and Twilio's included, whatever its handlers, scrub each record when it is created,
before any filter, handler or formatter sees it:

- phone and WhatsApp numbers (8 or more digits, with or without separators), e-mail addresses and
  Twilio media links are replaced by ``[phone]``, ``[email]`` and ``[media-url]``;
- the texts this process has recently handled (``remember``: inbound messages, agents' replies)
  are replaced by ``[redacted]`` wherever they appear, whole or as their longer words.

Defence in depth: Rasa, rasa-sdk and Sanic log parse results and slot values (the texter's words
split into pieces) at DEBUG, so their loggers are held at INFO unless the operator sets
``HOTLINE_UNSAFE_DEBUG_LOGS=1`` for a debugging session on test data.
"""
from __future__ import annotations

import logging
import os
import re
import threading
from collections import OrderedDict
from typing import Any, Iterable

#: E.164 (``+15145550101``, also after ``whatsapp:``), North American and grouped national formats,
#: and bare runs of 9 to 15 digits; not dates, times or model names (``20261125-104512``).
PHONE = re.compile(r"(?<![\w+])(?:\+\d(?:[\s().-]?\d){7,14}|\(?\d{3}\)?[\s.-]?\d{3}[\s.-]?\d{4}"
                   r"|\d{3,4}[\s.-]\d{3}[\s.-]\d{3,4}|\d{9,15})(?!\w)")
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
MEDIA_URL = re.compile(r"https?://\S+/Media/\S+")
REDACTED = "[redacted]"
#: Words of a remembered text at least this long are scrubbed on their own too.
MIN_WORD = 7
#: How many remembered texts (and words) a process keeps; the oldest go first.
CAPACITY = 4000
#: Loggers that log message content at DEBUG (parse data, slots, request bodies).
CONTENT_LOGGERS = ("rasa", "rasa_sdk", "sanic", "aiohttp", "twilio", "urllib3", "asyncio")
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class Redactor:
    """Patterns plus a bounded memory of this process's recent texts, thread-safe."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self._recent: OrderedDict[str, None] = OrderedDict()
        #: The remembered pieces longest first (a long text before the words inside it), sorted
        #: once per change rather than for every log line.
        self._longest_first: list[str] = []
        self._lock = threading.Lock()

    def remember(self, *texts: str | None) -> None:
        """Texts to scrub from later log lines: each whole, each line, and each long word."""
        pieces = {piece for text in texts if text and text.strip()
                  for piece in _pieces(text)}
        with self._lock:
            for piece in pieces:
                self._recent[piece] = None
                self._recent.move_to_end(piece)
            while len(self._recent) > self.capacity:
                self._recent.popitem(last=False)
            self._longest_first = sorted(self._recent, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for piece in self._longest_first:
            if piece in text:
                text = text.replace(piece, REDACTED)
        text = MEDIA_URL.sub("[media-url]", text)
        text = EMAIL.sub("[email]", text)
        return PHONE.sub("[phone]", text)


def _pieces(text: str) -> Iterable[str]:
    """What to scrub of a text: the whole, each line, each long word; short Latin-script pieces
    ("yes", "delete", "stop") are left out: they say nothing about the texter and would blank the
    same word in every log line of the process."""
    text = text.strip()
    lines = [line.strip() for line in text.splitlines()]
    words = re.split(r"[\s,.;:!?¿¡\"'()，。、！？]+", text)
    return [piece for piece in (text, *lines, *words) if _telling(piece)]


def _telling(piece: str) -> bool:
    return len(piece) >= MIN_WORD or (len(piece) >= 3 and not piece.isascii())


redactor = Redactor()


def remember(*texts: str | None) -> None:
    """Scrub these texts from this process's later log lines (see the module docstring)."""
    redactor.remember(*texts)


def _scrub_record(record: logging.LogRecord) -> logging.LogRecord:
    try:
        record.msg, record.args = redactor.scrub(record.getMessage()), ()
    except Exception:  # noqa: BLE001 - a record whose arguments do not format: say so, show nothing
        record.msg, record.args = "unformattable log message (redacted)", ()
    if record.exc_info and not record.exc_text:
        record.exc_text = redactor.scrub(logging.Formatter().formatException(record.exc_info))
    if record.stack_info:
        record.stack_info = redactor.scrub(record.stack_info)
    for name, value in vars(record).items():
        if name not in _STANDARD and isinstance(value, str):
            setattr(record, name, redactor.scrub(value))
    return record


def _scrubbing(make_record):
    """``Logger.makeRecord`` scrubbing the record it made. Not a record factory: the factory runs
    before ``extra`` is applied, and extras (Sanic's access lines) can carry content too."""
    def make(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        return _scrub_record(make_record(self, *args, **kwargs))
    make.hotline_redacting = True
    return make


def install() -> None:
    """Scrub every log record of this process from now on, and hold content loggers at INFO.

    Safe to call more than once and from every entry point (the Rasa channel, the actions, the
    hub, the stand-in, the CLI): the scrubbing is installed once, the levels are checked each time
    because Rasa and rasa-sdk set their loggers' levels after our modules are imported.
    """
    if not getattr(logging.Logger.makeRecord, "hotline_redacting", False):
        logging.Logger.makeRecord = _scrubbing(logging.Logger.makeRecord)
    if os.environ.get("HOTLINE_UNSAFE_DEBUG_LOGS") == "1":
        return
    names = [name for name in logging.root.manager.loggerDict
             if name.split(".")[0] in CONTENT_LOGGERS]
    for name in {*CONTENT_LOGGERS, *names}:
        logger = logging.getLogger(name)
        if logger.level != logging.NOTSET and logger.level < logging.INFO or \
                name in CONTENT_LOGGERS and logger.getEffectiveLevel() < logging.INFO:
            logger.setLevel(logging.INFO)
