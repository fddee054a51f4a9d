"""Property-based tests of the Twilio webhook's parsing and signature check (issue 8 item 7).

The functions of ``bot/channels/inbound.py`` on any bytes and any parameters, then the real
channel blueprint over HTTP (``tests.support.echo_channel`` behind the stand-in, SQLite and
PostgreSQL): a request is answered 200, 400 or 403, never 500, and only signed, usable messages
are stored. Settings: ``tests/support/fuzz.py``.

Signatures: Twilio's scheme signs the URL followed by every parameter name and value, sorted by
name, with no separator, and its validator also accepts the URL with its port removed or with the
scheme's default port added. So a few changes keep a signature valid by construction and are left
out of "any single change is refused": adding a port to a URL signed without one (a changed port
is refused), adding or removing a parameter whose name and value are both empty,
and renaming a parameter so that the concatenation stays the same ({"abb": "ab", "ba": "b"} and
{"abb": "ab", "ab": "b"} both sign "abbabbab"). None of these can change what ``parse_incoming``
reads: it reads fixed names, and a renamed parameter is a missing one.
"""
from __future__ import annotations

import re
import secrets
import socket
import urllib.parse
from collections import Counter

import pytest
import sqlalchemy as sa
from hypothesis import assume, example, given
from hypothesis import strategies as st
from rasa.shared.core.training_data.story_reader.yaml_story_reader import YAMLStoryReader
from rasa.shared.nlu.training_data.message import Message
from twilio.request_validator import RequestValidator

from bot.channels import store as tables
from bot.channels.config import TwilioConfig
from bot.channels.inbound import (
    MAX_BODY,
    MAX_MEDIA,
    MEDIA_TURN,
    BadRequest,
    Incoming,
    clean_text,
    form_params,
    parse_incoming,
    signed,
    turn_texts,
)
from bot.channels.store import Inbound
from bot.storage import make_engine
from bot.channels.rasa_channel import MAX_REQUEST
from tests.channel_rig import TOKEN, Rig, http
from tests.support.fuzz import fuzz
from tests.test_channel import new_database

CONFIG = TwilioConfig(account_sid="AC" + "0" * 32, auth_token=TOKEN)
SID = re.compile(r"[A-Z]{2}[0-9a-fA-F]{32}")
E164 = re.compile(r"(whatsapp:)?\+[1-9][0-9]{6,14}")
INTENT_TURNS = {"/stop", "/greet", "/ask_help", "/share_media"}

# --- strategies ---------------------------------------------------------------------------------

#: Any code point, lone surrogates included, with the awkward ones drawn more often.
awkward = st.sampled_from(["\x00", "\ud800", "\udfff", "\U0001F64F", "\u202e", "\u200f", "ا", "ש",
                           "\r\n", "\n", "&", "=", "+", "%", "%00", "/", " ", "\ufeff", "\u0301"])
any_char = st.one_of(awkward, st.characters(exclude_categories=()))
any_text = st.lists(any_char, max_size=300).map("".join)
#: Text a form can carry (UTF-8): everything but lone surrogates.
utf8_char = st.characters(codec="utf-8")
form_char = st.one_of(awkward.filter(lambda c: not ("\ud800" <= c[0] <= "\udfff")), utf8_char)
form_text = st.lists(form_char, max_size=200).map("".join)
huge_text = st.builds(lambda piece, times: piece * times,
                      st.text(utf8_char, min_size=1, max_size=30), st.integers(100, 600))

number = st.from_regex(r"\+[1-9][0-9]{6,14}", fullmatch=True)
address = st.one_of(
    number, number.map("whatsapp:{}".format),
    number.map("{}\n".format), number.map(" {}".format), number.map("{} ".format),
    number.map(lambda n: n.replace("5", "٥")), number.map(lambda n: n[:5]), st.text(utf8_char, max_size=24),
)
good_sid = st.from_regex(r"(SM|MM)[0-9a-f]{32}", fullmatch=True)
sid = st.one_of(good_sid, good_sid.map("{}\n".format), good_sid.map(str.lower),
                good_sid.map(lambda s: s[:-1]), st.text(utf8_char, max_size=40))
body = st.one_of(any_text, huge_text, st.just(""), st.just("\x00" * 10),
                 st.just("/greet"), st.just("  //restart"))
num_media = st.one_of(st.integers(-2, 15).map(str), st.text(utf8_char, max_size=6), st.just("9" * 5000))


@st.composite
def twilio_params(draw, text=any_text, value=body) -> dict[str, str]:
    """A Twilio-like inbound message: its fields valid or broken, extra fields of any kind."""
    params = {}
    for name, strategy in (("MessageSid", sid), ("SmsMessageSid", sid), ("From", address),
                           ("To", address), ("Body", value), ("NumMedia", num_media)):
        if draw(st.integers(0, 9)):  # now and then a field is missing
            params[name] = draw(strategy)
    for index in range(draw(st.integers(0, 12))):
        params[f"MediaUrl{index}"] = draw(st.one_of(st.just(""), text))
        params[f"MediaContentType{index}"] = draw(text)
    params.update(draw(st.dictionaries(text, text, max_size=4)))
    return params


@st.composite
def usable_params(draw, text=form_text) -> dict[str, str]:
    """A message Twilio could send: valid sid and numbers, any body, media and extra fields."""
    sender = draw(number)
    whatsapp = draw(st.booleans())
    params = draw(twilio_params(text=text, value=st.one_of(text, huge_text)))
    params.update({"MessageSid": draw(good_sid), "From": ("whatsapp:" if whatsapp else "") + sender,
                   "To": ("whatsapp:" if whatsapp else "") + "+15145550000",
                   "NumMedia": str(draw(st.integers(0, 3)))})
    return params


def form_safe(params: dict[str, str]) -> dict[str, str]:
    """The parameters as an HTTP form can carry them (UTF-8 has no lone surrogates)."""
    return {_utf8(key): _utf8(value) for key, value in params.items()}


def _utf8(text: str) -> str:
    return text.encode("utf-8", "replace").decode("utf-8")


#: A webhook URL as Twilio is given one: (scheme, host, port, path and query). Path characters
#: that ``urlparse(...).geturl()`` would not give back unchanged (";" opens "params", an empty "?"
#: is dropped) are left out: Twilio's validator re-assembles the URL that way before checking.
url_parts = st.tuples(
    st.sampled_from(["https", "http"]),
    st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z]{2,6}){0,2}", fullmatch=True),
    st.sampled_from(["", ":8443", ":5005"]),
    st.from_regex(r"(/[A-Za-z0-9._~-]{0,12}){1,4}(\?[a-z]=[a-z0-9]{0,5})?", fullmatch=True),
)
url = url_parts.map(lambda parts: join_url(*parts))


def join_url(scheme: str, host: str, port: str, path: str) -> str:
    return f"{scheme}://{host}{port}{path}"
signable = st.dictionaries(form_text, form_text, max_size=8)

# --- parsing ------------------------------------------------------------------------------------


@fuzz(300)
@given(st.one_of(st.binary(max_size=2000), huge_text.map(str.encode),
                 twilio_params().map(lambda p: urllib.parse.urlencode(form_safe(p)).encode())))
@example(b"Body=%FF%FE%00&From=%2B15145550199")
@example(b"\xed\xa0\x80=\xed\xbf\xbf&%ED%A0%80=%F0%9F%99")
def test_any_body_gives_a_form_of_valid_text(raw):
    params = form_params(raw)
    for key, value in params.items():
        assert isinstance(key, str) and isinstance(value, str)
        (key + value).encode("utf-8")  # no lone surrogate can reach the store or a log


@fuzz(400)
@given(twilio_params())
@example({"MessageSid": "SM" + "a" * 32, "From": "+15145550100\n", "To": "+15145550000"})
@example({"MessageSid": "SM" + "a" * 32, "From": "+15145550100", "To": "whatsapp:+15145550000\n"})
@example({"MessageSid": "SM" + "a" * 32 + "\n", "From": "+15145550100", "To": "+15145550000"})
@example({"MessageSid": "SM" + "a" * 32, "From": "+15145550100", "To": "+15145550000",
          "NumMedia": "9" * 5000})
def test_parsing_accepts_only_usable_messages(params):
    try:
        message = parse_incoming(params)
    except BadRequest:
        return
    assert isinstance(message, Incoming)
    assert SID.fullmatch(message.sid)
    assert E164.fullmatch(message.address) and E164.fullmatch(message.hotline_number)
    text = message.body
    text.encode("utf-8")  # valid UTF-8: no lone surrogate
    assert "\x00" not in text and len(text) <= MAX_BODY
    original = params.get("Body", "")
    if "\x00" not in original and len(original) <= MAX_BODY and original == _utf8(original):
        assert text == original, "a clean body must be stored as sent"
    assert len(message.media) <= MAX_MEDIA
    assert all(item["url"] and item["url"] in params.values() for item in message.media)


@fuzz(200)
@given(twilio_params(text=form_text, value=st.one_of(form_text, huge_text)))
def test_parsing_a_wire_form_is_parsing_its_parameters(params):
    """What arrives over HTTP parses exactly like the parameters Twilio sent."""
    direct, wired = _outcome(params), _outcome(form_params(urllib.parse.urlencode(params).encode()))
    assert direct == wired


def _outcome(params: dict[str, str]) -> Incoming | str:
    try:
        return parse_incoming(params)
    except BadRequest as error:
        return f"bad request: {error}"


@fuzz(300)
@given(st.one_of(any_text, huge_text))
def test_clean_text_is_storable_bounded_and_idempotent(text):
    cleaned = clean_text(text)
    cleaned.encode("utf-8")
    assert "\x00" not in cleaned and len(cleaned) <= MAX_BODY
    assert clean_text(cleaned) == cleaned
    assert text.replace("\x00", "").startswith(cleaned) or any("\ud800" <= c <= "\udfff" for c in text)


@fuzz(300)
@given(any_text, st.lists(st.fixed_dictionaries({"url": st.text(min_size=1), "content_type": st.text()}),
                          max_size=3),
       st.sampled_from([None, "opt_out", "opt_in", "help"]))
@example("/restart", [], None)
@example(" \u3000/greet", [], None)
@example("\x1c/stop", [], None)
def test_a_texter_can_never_send_rasa_an_intent(text, media, keyword):
    message = Inbound(id=1, sid="SM" + "0" * 32, conversation_id="sms-x", channel="sms", body=text,
                      media=media)
    texts = turn_texts(message, keyword)
    assert texts, "every message is a turn"
    if keyword:
        assert len(texts) == 1 and texts[0] in INTENT_TURNS
        return
    if media:
        assert texts[-1] == MEDIA_TURN
    for turn in texts[:-1] if media else texts:
        parsed = YAMLStoryReader.unpack_regex_message(Message({"text": turn}))
        assert parsed.get("intent") is None, turn


# --- signatures ---------------------------------------------------------------------------------


def sign(address: str, params: dict[str, str]) -> str:
    return RequestValidator(TOKEN).compute_signature(address, params)


@fuzz(300)
@given(url, signable)
def test_twilio_signed_parameters_validate_after_the_wire(address, params):
    signature = sign(address, params)
    received = form_params(urllib.parse.urlencode(params).encode())
    assert signed(CONFIG, address, received, signature)


@st.composite
def one_change(draw, parts: tuple[str, str, str, str], params: dict[str, str], signature: str):
    """(url, params, signature) with exactly one thing changed."""
    address = join_url(*parts)
    kinds = ["signature", "url", "new parameter"] + (["value", "removed"] if params else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "signature":
        return address, params, draw(changed_text(signature))
    if kind == "url":
        return draw(changed_url(parts)), params, signature
    names = sorted(params)
    if kind == "value":
        name = draw(st.sampled_from(names))
        return address, {**params, name: draw(form_text.filter(lambda v: v != params[name]))}, signature
    if kind == "removed":
        name = draw(st.sampled_from(names))
        assume(name or params[name])  # an empty name with an empty value signs nothing
        return address, {k: v for k, v in params.items() if k != name}, signature
    name = draw(form_text.filter(lambda k: k and k not in params))
    return address, {**params, name: draw(form_text)}, signature


def changed_text(text: str):
    """``text`` with one character replaced, dropped or inserted."""
    position = st.integers(0, max(0, len(text) - 1))
    char = st.characters(codec="ascii")
    return st.one_of(
        st.tuples(position, char).filter(lambda pc: not text or pc[1] != text[pc[0]]).map(
            lambda pc: text[:pc[0]] + pc[1] + text[pc[0] + 1:]),
        position.map(lambda p: text[:p] + text[p + 1:]),
        st.tuples(st.integers(0, len(text)), char).map(lambda pc: text[:pc[0]] + pc[1] + text[pc[0]:]),
    )


def changed_url(parts: tuple[str, str, str, str]):
    """The URL with one of scheme, host, port or path changed (a port is changed, never added)."""
    scheme, host, port, path = parts
    other_port = {"": "", ":8443": ":8444", ":5005": ":5006"}[port]
    return st.sampled_from([
        join_url("http" if scheme == "https" else "https", host, port, path),
        join_url(scheme, "x" + host, port, path),
        join_url(scheme, host, other_port, path),
        join_url(scheme, host, port, path + "x"),
        join_url(scheme, host, port, "/x" + path),
    ]).filter(lambda changed: changed != join_url(scheme, host, port, path))


@fuzz(400)
@given(st.data(), url_parts, signable)
def test_any_single_change_is_refused(data, parts, params):
    signature = sign(join_url(*parts), params)
    address, changed, changed_signature = data.draw(one_change(parts, params, signature))
    received = form_params(urllib.parse.urlencode(changed).encode())
    assert not signed(CONFIG, address, received, changed_signature)


@fuzz(300)
@given(st.one_of(url, any_text, st.sampled_from(["http://h:abc/x", "http://[/x", "http://h:99999/x",
                                                 "http://h\udce9/x", ""])),
       st.dictionaries(any_text, any_text, max_size=4), st.one_of(st.none(), any_text))
@example("http://127.0.0.1:abc/webhooks/hotline_twilio/webhook", {}, "c2ln")
@example("http://h/x", {"Body": "\ud800"}, "c2ln")
def test_the_signature_check_answers_true_or_false_for_anything(address, params, signature):
    """A Host header is the client's to write: the URL checked may be anything (found here:
    a port that is not a number, a lone '[', undecodable bytes made the webhook answer 500)."""
    assert signed(CONFIG, address, params, signature) in (True, False)


# --- the real channel over HTTP -----------------------------------------------------------------


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def rig(request, tmp_path_factory):
    with new_database(request.param) as database_url:
        rig = Rig(home=tmp_path_factory.mktemp("fuzz-webhook"), database_url=database_url)
        with rig.running():
            yield rig


def stored_sids(rig: Rig) -> set[str]:
    engine = make_engine(rig.database_url or f"sqlite:///{rig.home / 'hotline.db'}")
    try:
        with engine.connect() as db:
            return {row.sid for row in db.execute(sa.select(tables.inbound.c.sid))}
    finally:
        engine.dispose()


def post_form(rig: Rig, raw: bytes, signature: str | None) -> int:
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if signature is not None:
        headers["X-Twilio-Signature"] = signature
    return http("POST", rig.webhook_url, raw, headers)[0]


wire_body = st.one_of(
    usable_params().map(lambda p: urllib.parse.urlencode(p).encode()),
    twilio_params(text=form_text, value=st.one_of(form_text, huge_text)).map(
        lambda p: urllib.parse.urlencode(p).encode()),
    st.binary(max_size=600),
    st.builds(lambda p, junk: urllib.parse.urlencode(p).encode() + b"&" + junk,
              twilio_params(text=form_text, value=form_text), st.binary(max_size=50)),
)


def test_signed_fuzzed_bodies_get_200_or_400_and_only_usable_ones_are_stored(rig):
    """Each body is signed over what the server will parse, as Twilio would have signed it; the
    answer must be the one ``parse_incoming`` predicts, and the inbox must hold exactly the
    messages answered 200."""
    accepted, refused = set(), set()

    @fuzz(60)
    @given(wire_body)
    def post(raw):
        params = form_params(raw)
        if SID.fullmatch(params.get("MessageSid") or params.get("SmsMessageSid") or ""):
            fresh = "SM" + secrets.token_hex(16)  # one sid per example: none is a repeat
            params = {**params, "MessageSid": fresh, "SmsMessageSid": fresh}
            raw = urllib.parse.urlencode(params).encode()
        expected = _outcome(params)
        status = post_form(rig, raw, rig.sign(params))
        if len(raw) > MAX_REQUEST:  # far beyond anything Twilio sends: refused unparsed
            assert status == 413
            refused.add(params.get("MessageSid") or params.get("SmsMessageSid") or "")
            return
        if isinstance(expected, Incoming):
            assert status == 200
            accepted.add(expected.sid)
        else:
            assert status == 400, expected
            refused.add(params.get("MessageSid") or params.get("SmsMessageSid") or "")

    post()
    stored = stored_sids(rig)
    print(f"{len(accepted)} signed messages accepted, {len(refused)} refused as bad requests")
    assert accepted and refused, "the examples must include usable and unusable messages"
    assert stored == accepted  # the first test of the module's rig: nothing else stored before


def test_a_signed_status_callback_with_any_error_code_is_recorded_never_a_500(rig):
    for code in ("30003", "²", "٣", "", "x" * 40):
        params = {"MessageSid": "SM" + secrets.token_hex(16), "MessageStatus": "undelivered", "ErrorCode": code}
        url = rig.webhook_url.rsplit("/", 1)[0] + "/status"
        status = http("POST", url, urllib.parse.urlencode(params).encode(),
                      {"Content-Type": "application/x-www-form-urlencoded",
                       "X-Twilio-Signature": rig.sign(params, url)})[0]
        assert status == 204, code


def test_unsigned_or_tampered_fuzzed_bodies_get_403_and_are_not_stored(rig):
    sids = set()

    @fuzz(40)
    @given(twilio_params(text=form_text, value=form_text), st.sampled_from(["none", "forged", "tampered"]),
           form_text)
    def post(params, attack, extra):
        fresh = "SM" + secrets.token_hex(16)
        params = {**params, "MessageSid": fresh, "From": "+15145550177", "To": "+15145550000"}
        sids.add(fresh)
        signature = {"none": None, "forged": secrets.token_urlsafe(20),
                     "tampered": rig.sign({**params, "Body": params.get("Body", "") + extra + "!"})}[attack]
        assert post_form(rig, urllib.parse.urlencode(params).encode(), signature) == 403

    post()
    assert not sids & stored_sids(rig)


host_header = st.text(st.characters(codec="latin-1", exclude_categories=["Cc"]), min_size=1, max_size=40)


def test_any_host_header_gets_403_or_400_never_500(rig):
    """Without HOTLINE_PUBLIC_URL the URL checked is built from the Host header."""
    statuses = Counter()

    @fuzz(60)
    @given(host_header, st.sampled_from(["webhook", "status"]))
    @example("127.0.0.1:abc", "webhook")
    @example("[", "status")
    @example("h\xe9", "webhook")
    def post(host, path):
        status = raw_post(rig.channel_port, f"/webhooks/hotline_twilio/{path}", host,
                          b"MessageSid=SM00&From=%2B15145550100&To=%2B15145550000&Body=hi")
        assert status in (400, 403), (host, status)
        statuses[status] += 1

    post()
    print(f"answers to fuzzed Host headers: {dict(statuses)}")
    assert statuses[403], "no request reached the signature check"


def raw_post(port: int, path: str, host: str, body: bytes) -> int:
    """A POST with any Host header (urllib would refuse some), answered status code."""
    request = (f"POST {path} HTTP/1.1\r\n".encode() + b"Host: " + host.encode("latin-1") + b"\r\n"
               b"X-Twilio-Signature: c2lnbmF0dXJl\r\nContent-Type: application/x-www-form-urlencoded\r\n"
               + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(request)
        reply = b""
        while chunk := connection.recv(65536):
            reply += chunk
    return int(reply.split(b" ", 2)[1])
