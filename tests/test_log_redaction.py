"""The log scrubber: numbers, e-mails, media links and remembered texts never reach a log line,
whichever logger writes it and however (arguments, extras, exceptions)."""
from __future__ import annotations

import logging

import pytest

from bot import log_redaction
from bot.log_redaction import PHONE, Redactor, install


@pytest.fixture
def scrubbing(caplog):
    """This process's scrubbing (installed once, as each entry point does) and a clean memory."""
    install()
    saved = log_redaction.redactor
    log_redaction.redactor = Redactor()
    caplog.set_level(logging.INFO)
    yield log_redaction.redactor
    log_redaction.redactor = saved


@pytest.mark.parametrize("number", [
    "+15145550101", "whatsapp:+15145550101", "+1 (514) 555-0101", "(514) 555-0101", "514.555.0101",
    "519 555 0147", "0917 123 4567", "+63 917 123 4567", "+919876543210", "15145550101",
])
def test_numbers_are_caught_in_every_common_form(number):
    assert PHONE.search(f"from {number}: hello")


@pytest.mark.parametrize("harmless", [
    "2026-11-25 10:45:01", "model 20261125-104512-warm-hill.tar.gz", "SM00000000000000000000000000000001",
    "port 5005", "inbound message 42 failed 3 times", "16 years old", "sms-3f2a9c0b1d",
])
def test_dates_ids_and_small_numbers_stay_readable(harmless):
    assert not PHONE.search(harmless)


def test_a_third_party_logger_line_is_scrubbed_of_a_remembered_text_and_number(scrubbing, caplog):
    text = "mi jefe tiene mi pasaporte, llamame al 514 555 0101"
    log_redaction.remember(text)
    logging.getLogger("rasa.core.processor").info("Received user message '%s' from %s", text, "+15145550101")
    assert "pasaporte" not in caplog.text and "555" not in caplog.text
    assert "Received user message '[redacted]' from [phone]" in caplog.text


def test_long_words_of_a_remembered_text_are_scrubbed_when_logged_apart(scrubbing, caplog):
    log_redaction.remember("the owner Kowalczyk keeps our passports at the restaurant")
    logging.getLogger("rasa.core.processor").info("slots: evidence=%s", {"DOC": ["keeps our passports"]})
    assert "passports" not in caplog.text and "Kowalczyk" not in caplog.text


def test_extras_exceptions_and_emails_are_scrubbed(scrubbing, caplog):
    log_redaction.remember("ayudame por favor Zorbanek")
    try:
        raise ValueError("could not parse 'ayudame por favor Zorbanek' from maria@example.com")
    except ValueError:
        logging.getLogger("sanic.error").exception("handler failed", extra={"request": "Zorbanek"})
    record = caplog.records[-1]
    assert "Zorbanek" not in caplog.text and "maria@example.com" not in caplog.text
    assert record.request == "[redacted]" and "[email]" in record.exc_text


def test_media_links_are_scrubbed(scrubbing, caplog):
    logging.getLogger("bot").warning("media %s", "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1")
    assert "api.twilio.com" not in caplog.text and "[media-url]" in caplog.text


def test_content_loggers_are_held_at_info_unless_the_operator_opts_in(monkeypatch):
    processor = logging.getLogger("rasa.core.processor")
    saved = processor.level
    try:
        processor.setLevel(logging.DEBUG)
        install()
        assert processor.level == logging.INFO
        processor.setLevel(logging.DEBUG)
        monkeypatch.setenv("HOTLINE_UNSAFE_DEBUG_LOGS", "1")
        install()
        assert processor.level == logging.DEBUG
    finally:
        processor.setLevel(saved)


def test_the_memory_is_bounded():
    redactor = Redactor(capacity=10)
    for number in range(50):
        redactor.remember(f"note {number}")
    assert redactor.scrub("note 49") == "[redacted]"
    assert redactor.scrub("note 1") == "note 1"


def test_short_latin_replies_are_not_blanked_everywhere(scrubbing, caplog):
    log_redaction.remember("delete", "yes", "救命啊", "Maria")
    logging.getLogger("bot.retention").warning("deletion request 3: delete failed; yes, retried; 救命啊")
    assert "deletion request 3: delete failed; yes, retried; [redacted]" in caplog.text
