"""The texter simulator page in a real browser (Debian's Chromium through playwright), served by
the local Twilio stand-in with the project's real channel behind it (tests/support/echo_channel).

Playwright's own browser downloads are never used: Chromium comes from Debian's package
(scripts/setup.sh installs it). Without /usr/bin/chromium these tests fail, they do not skip.
"""
from __future__ import annotations

import itertools
import os
import re
import secrets

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from bot.channels.standin import OPT_OUT_REPLY
from tests.channel_rig import Rig

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
REPLY_TIMEOUT = 10_000  # ms: the echo comes back through the channel's worker, then a poll (1 s)

_numbers = itertools.count(secrets.randbelow(5000))


def new_number() -> str:
    return f"+1438555{next(_numbers):04d}"


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    rig = Rig(home=tmp_path_factory.mktemp("simulator"))
    try:
        rig.start_standin()
        rig.start_channel()
        yield rig
    finally:
        rig.stop()


@pytest.fixture(scope="module")
def browser():
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (scripts/setup.sh does it)")
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        yield browser
        browser.close()


@pytest.fixture
def page(rig, browser):
    """A fresh tab on the simulator; fails the test on any alert/confirm, page error or console error."""
    context = browser.new_context(viewport={"width": 1100, "height": 900}, locale="en-US")
    page = context.new_page()
    problems: list[str] = []
    page.on("dialog", lambda dialog: (problems.append(f"dialog: {dialog.message}"), dialog.dismiss()))
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("console", lambda message: message.type == "error"
            and problems.append(f"console error: {message.text}"))
    page.set_default_timeout(5_000)
    page.goto(f"http://127.0.0.1:{rig.standin_port}/")
    expect(page.locator("#compose")).to_be_visible()
    yield page
    context.close()
    assert problems == []


def start_texter(page: Page, channel: str = "sms") -> str:
    """Fill the New texter form as a person would; returns the texter's number."""
    number = new_number()
    page.fill("#new-number", number)
    page.select_option("#new-channel", channel)
    page.click("#new-thread")
    expect(page.locator("#thread-title")).to_have_text(
        f"+1 {number[2:5]} {number[5:8]} {number[8:]}")
    expect(page.locator("#compose")).to_be_focused()
    return number


def send(page: Page, text: str) -> None:
    compose = page.locator("#compose")
    compose.click()
    compose.press_sequentially(text)
    expect(compose).to_have_value(text)
    compose.press("Enter")


def bubbles(page: Page, kind: str):
    return page.locator(f"#messages li.msg.{kind} .msg-body")


def test_a_new_sms_texter_sends_and_gets_the_echo(page):
    start_texter(page, "sms")
    send(page, "hello from the browser")
    expect(bubbles(page, "in")).to_have_text(["hello from the browser"])
    expect(page.locator("#compose")).to_have_value("")
    expect(bubbles(page, "out")).to_have_text(["echo 1: hello from the browser"],
                                              timeout=REPLY_TIMEOUT)
    # The page keeps re-polling statuses that may still change: queued -> sent -> delivered.
    expect(page.locator("#messages li.msg.out")).to_have_attribute("data-status", "delivered")
    expect(page.locator("#messages li.msg.out .msg-status")).to_have_text("Delivered")
    expect(page.locator("#error")).to_be_hidden()
    expect(page.locator("#phone")).to_have_class(re.compile(r"\bchannel-sms\b"))


@pytest.mark.parametrize("text, counter", [
    ("Hello there", "11/160 · 1 segment · GSM-7"),
    ("مرحبا", "5/70 · 1 segment · Unicode (م)"),
    ("hi 😀", "5/70 · 1 segment · Unicode (😀)"),
], ids=["latin", "arabic", "emoji"])
def test_the_counter_shows_gsm7_or_unicode(page, text, counter):
    start_texter(page, "sms")
    expect(page.locator("#counter")).to_have_text("0/160 · 0 segments · GSM-7")
    page.locator("#compose").press_sequentially(text)
    expect(page.locator("#counter")).to_have_text(counter)


def test_whatsapp_thread_has_whatsapp_styling_and_gets_the_reply(page):
    start_texter(page, "whatsapp")
    expect(page.locator("#phone")).to_have_class(re.compile(r"\bchannel-whatsapp\b"))
    expect(page.locator("#thread-sub")).to_contain_text("WhatsApp")
    page.locator("#compose").press_sequentially("hola")
    expect(page.locator("#counter")).to_contain_text("WhatsApp sends it as one message")
    page.locator("#compose").press("Enter")
    expect(bubbles(page, "in")).to_have_text(["hola"])
    expect(bubbles(page, "out")).to_have_text(["echo 1: hola"], timeout=REPLY_TIMEOUT)
    assert page.locator("#phone").evaluate(
        "e => getComputedStyle(e.querySelector('.phone-header')).backgroundColor") == "rgb(7, 94, 84)"
    current = page.locator("#threads button[aria-current='true']")
    expect(current).to_have_attribute("data-channel", "whatsapp")
    expect(current.locator(".badge-whatsapp")).to_have_text("WhatsApp")


def test_arabic_text_renders_right_to_left(page):
    start_texter(page, "sms")
    text = "أحتاج مساعدة من فضلك"
    send(page, text)
    body = bubbles(page, "in")
    expect(body).to_have_text([text])
    expect(body).to_have_attribute("dir", "auto")
    assert body.evaluate("e => getComputedStyle(e).direction") == "rtl"
    expect(bubbles(page, "out")).to_have_text([f"echo 1: {text}"], timeout=REPLY_TIMEOUT)
    # The reply starts with Latin letters, so it is laid out left to right.
    assert bubbles(page, "out").evaluate("e => getComputedStyle(e).direction") == "ltr"


def test_message_text_is_never_html(page):
    start_texter(page, "sms")
    text = "<img src=x onerror=alert(1)>"
    send(page, text)
    expect(bubbles(page, "in")).to_have_count(1)
    assert bubbles(page, "in").text_content() == text
    expect(bubbles(page, "out")).to_have_text([f"echo 1: {text}"], timeout=REPLY_TIMEOUT)
    assert bubbles(page, "out").text_content() == f"echo 1: {text}"
    expect(page.locator("#messages img")).to_have_count(0)
    page.wait_for_timeout(300)  # an onerror handler would have fired by now (the page fixture checks)


def test_stop_on_sms_unsubscribes_and_later_texts_get_no_echo(page, rig):
    number = start_texter(page, "sms")
    send(page, "STOP")
    expect(bubbles(page, "in")).to_have_text(["STOP"])
    expect(bubbles(page, "out")).to_have_text([OPT_OUT_REPLY], timeout=REPLY_TIMEOUT)
    expect(bubbles(page, "out")).to_contain_text(["unsubscribed"])
    expect(page.locator("#opted-out-note")).to_be_visible()
    expect(page.locator("#threads button[aria-current='true'] .badge-opted-out")).to_have_text("Opted out")

    send(page, "are you still there?")
    expect(bubbles(page, "in")).to_have_text(["STOP", "are you still there?"])
    page.wait_for_timeout(3_000)
    expect(bubbles(page, "out")).to_have_text([OPT_OUT_REPLY])
    assert [m["body"] for m in rig.sent_to(number)] == [OPT_OUT_REPLY]


def test_a_draft_stays_with_its_texter(page):
    """Regression: text typed for one texter was carried over to (and sent by) the next one."""
    first = start_texter(page, "sms")
    page.locator("#compose").press_sequentially("for the first texter")
    start_texter(page, "whatsapp")
    expect(page.locator("#compose")).to_have_value("")
    expect(page.locator("#counter")).to_have_text(re.compile(r"^0/160 · 0 segments · GSM-7"))
    page.locator("#threads button", has_text=f"{first[5:8]} {first[8:]}").click()
    expect(page.locator("#compose")).to_have_value("for the first texter")
    expect(page.locator("#counter")).to_have_text("20/160 · 1 segment · GSM-7")


def test_keyboard_tab_reaches_compose_and_send_and_shift_enter_adds_a_line(page):
    start_texter(page, "sms")
    page.locator("body").focus()
    page.evaluate("document.activeElement.blur()")
    visited = []
    for _ in range(60):
        page.keyboard.press("Tab")
        visited.append(page.evaluate("document.activeElement.id || document.activeElement.tagName"))
        if visited[-1] == "compose":
            break
    assert visited[-1] == "compose", visited
    page.keyboard.press("Tab")
    expect(page.locator("#send")).to_be_focused()
    page.keyboard.press("Shift+Tab")
    expect(page.locator("#compose")).to_be_focused()

    page.keyboard.type("line one")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("line two")
    expect(page.locator("#compose")).to_have_value("line one\nline two")
    page.wait_for_timeout(300)
    expect(page.locator("#messages li.msg")).to_have_count(0)

    page.keyboard.press("Enter")
    expect(bubbles(page, "in")).to_have_count(1)
    assert bubbles(page, "in").text_content() == "line one\nline two"
    expect(bubbles(page, "out")).to_have_text(["echo 1: line one\nline two"], timeout=REPLY_TIMEOUT)
