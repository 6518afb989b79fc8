"""The sans-I/O wire protocol: frame parsing, validation codes and server frames."""

from __future__ import annotations

import datetime
import json
import re
import sys
import unicodedata
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pichat.protocol import (
    ERROR_CODES,
    MAX_EPOCH_LENGTH,
    Frame,
    HistoryRequest,
    Join,
    Limits,
    Message,
    ProtocolError,
    Say,
    error_frame,
    format_date,
    history_frame,
    online_frame,
    parse_frame,
    people_json,
    presence_frame,
    welcome_frame,
    wire_frame,
)
from pichat.validation import has_control

LIMITS = Limits()
DATE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
# Properties check behaviour, not speed: no deadline, and no "too slow" health check on a
# loaded CI machine.
RELAXED = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


def frame(**fields: Any) -> str:
    """A JSON text frame with these fields."""
    return json.dumps(fields)


def code_of(data: str, limits: Limits = LIMITS) -> str:
    """The error code ``parse_frame`` raises for ``data``."""
    with pytest.raises(ProtocolError) as info:
        parse_frame(data, limits)
    return info.value.code


def join(**fields: Any) -> str:
    """A join frame with a valid name unless overridden."""
    return frame(**{"type": "join", "name": "alice", **fields})


# Frames and types.


@pytest.mark.parametrize("data", ["", "{", "{'type': 'say'}", "nope", '{"type": "say",}', "\x00"])
def test_invalid_json_is_bad_json(data: str) -> None:
    """A frame that is not valid JSON is refused with bad_json."""
    assert code_of(data) == "bad_json"


@pytest.mark.parametrize("data", ["[]", "1", '"say"', "null", "true", '[{"type": "say"}]'])
def test_non_object_is_bad_frame(data: str) -> None:
    """Valid JSON that is not an object is refused with bad_frame."""
    assert code_of(data) == "bad_frame"


@pytest.mark.parametrize(
    "data",
    [
        "{}",
        frame(text="hi"),
        frame(type="shout"),
        frame(type=1),
        frame(type=None),
        frame(type="SAY"),
    ],
)
def test_missing_or_unknown_type_is_unknown_type(data: str) -> None:
    """A frame whose type is missing or not join/say/history is refused with unknown_type."""
    assert code_of(data) == "unknown_type"


def test_unknown_type_detail_is_bounded() -> None:
    """The detail of unknown_type quotes at most 40 characters of the client's type."""
    with pytest.raises(ProtocolError) as info:
        parse_frame(frame(type="x" * 10_000), LIMITS)
    assert len(info.value.detail) < 100


@pytest.mark.parametrize(
    "data", [frame(type="say", text=5), frame(type="say"), frame(type="say", text=None)]
)
def test_say_text_of_wrong_type_is_bad_frame(data: str) -> None:
    """A say whose text is missing or not a string is refused with bad_frame."""
    assert code_of(data) == "bad_frame"


def test_say_parses_to_say() -> None:
    """A valid say frame becomes a Say carrying the text verbatim."""
    assert parse_frame(frame(type="say", text=" hi there "), LIMITS) == Say(" hi there ")


def test_join_parses_to_join() -> None:
    """A valid join frame becomes a Join with trimmed name, avatar and since."""
    data = join(name="  alice  ", avatar="https://example.org/a.png", since=41)
    assert parse_frame(data, LIMITS) == Join("alice", "https://example.org/a.png", 41)


def test_join_without_avatar_or_since_defaults() -> None:
    """A join without avatar and since has an empty avatar and since None."""
    assert parse_frame(join(), LIMITS) == Join("alice", "", None)
    assert parse_frame(join(avatar=None, since=None), LIMITS) == Join("alice", "", None)


# Names.


@pytest.mark.parametrize(
    "name",
    ["", " ", "\t\n ", "\u3000", None, 5, ["alice"], {"n": 1}, True],
    ids=[
        "empty",
        "space",
        "whitespace",
        "ideographic-space",
        "null",
        "int",
        "list",
        "dict",
        "bool",
    ],
)
def test_empty_or_non_string_name_is_bad_name(name: object) -> None:
    """A name that is empty after trimming, or not a string, is refused with bad_name."""
    assert code_of(join(name=name)) == "bad_name"


def test_missing_name_is_bad_name() -> None:
    """A join without a name is refused with bad_name."""
    assert code_of(frame(type="join")) == "bad_name"


@pytest.mark.parametrize(
    "name",
    [
        "a\x00b",
        "a\tb",
        "a\nb",
        "a\rb",
        "\x1b[31mred",
        "a\x7fb",
        "a\x85b",
        "a\u2028b",
        "a\u2029b",
        "a\ud800b",
    ],
)
def test_name_with_control_characters_is_bad_name(name: str) -> None:
    """A name with C0/C1 controls, line separators or lone surrogates is refused with bad_name."""
    assert code_of(join(name=name)) == "bad_name"


@pytest.mark.parametrize("char", list(BIDI))
def test_name_with_bidi_override_is_bad_name(char: str) -> None:
    """A name with a bidi embedding, override or isolate is refused with bad_name."""
    assert code_of(join(name=f"admin{char}nimda")) == "bad_name"


def test_name_length_limit() -> None:
    """A name of exactly the limit is accepted; one more character is name_too_long."""
    limits = Limits(name=5)
    assert parse_frame(join(name="abcde"), limits) == Join("abcde", "", None)
    assert parse_frame(join(name="  abcde  "), limits) == Join("abcde", "", None)
    assert code_of(join(name="abcdef"), limits) == "name_too_long"
    assert code_of(join(name="a" * 33)) == "name_too_long"


def test_name_allows_unicode_letters_and_emoji() -> None:
    """Names in any script, with emoji, are accepted."""
    for name in ["Zoë", "李雷", "محمد", "🙂 bob"]:
        assert parse_frame(join(name=name), LIMITS) == Join(name, "", None)


# Avatars.


@pytest.mark.parametrize(
    "avatar",
    [
        "https://example.org/a.png",
        "http://example.org",
        "HTTPS://EXAMPLE.ORG/a.png",
        "https://[::1]:8443/a.png",
        "https://example.org/" + "a" * 480,
    ],
)
def test_http_avatar_is_accepted(avatar: str) -> None:
    """An http or https URL with a host, up to 500 characters, is a valid avatar."""
    assert len(avatar) <= 500
    assert parse_frame(join(avatar=avatar), LIMITS) == Join("alice", avatar, None)


@pytest.mark.parametrize("avatar", ["", "   ", None])
def test_empty_avatar_is_allowed(avatar: object) -> None:
    """An empty or null avatar is accepted and becomes the empty string."""
    assert parse_frame(join(avatar=avatar), LIMITS) == Join("alice", "", None)


@pytest.mark.parametrize(
    "avatar",
    [
        "javascript:alert(1)",
        "JavaScript:alert(1)",
        "data:image/png;base64,iVBORw0KGgo=",
        "data:text/html,<script>alert(1)</script>",
        "/a.png",
        "a.png",
        "../a.png",
        "//example.org/a.png",
        "ftp://example.org/a.png",
        "file:///etc/passwd",
        "http://",
        "https:///a.png",
        "https://exa mple.org/a.png",
        "https://example.org/a b.png",
        "https://example.org/a\u00a0b.png",
        "https://example.org/\x00.png",
        "https://example.org/\u202egnp.png",
        "https://[::1/a.png",
        "https://example.org/" + "a" * 481,
        5,
        ["https://example.org/a.png"],
    ],
)
def test_bad_avatar(avatar: object) -> None:
    """An avatar that is not an http(s) URL with a host, has spaces or is too long is bad_avatar."""
    assert code_of(join(avatar=avatar)) == "bad_avatar"


# Resume cursor.


@pytest.mark.parametrize("since", [-1, "3", "", True, False, 1.5, 1.0, [], {}])
def test_bad_since(since: object) -> None:
    """A since that is not null or a non-negative integer is refused with bad_since."""
    assert code_of(join(since=since)) == "bad_since"


@pytest.mark.parametrize(
    "data",
    [
        '{"type": "join", "name": "a", "since": NaN}',
        '{"type": "join", "name": "a", "since": 1e400}',
    ],
)
def test_non_finite_since_is_bad_since(data: str) -> None:
    """A NaN or infinite since (Python's JSON extensions) is refused with bad_since."""
    assert code_of(data) == "bad_since"


@pytest.mark.parametrize("since", [0, 1, 41, 2**63 - 1, 10**19])
def test_valid_since(since: int) -> None:
    """Any non-negative integer an id can be is a valid since."""
    assert parse_frame(join(since=since), LIMITS) == Join("alice", "", since)


@pytest.mark.parametrize("digits", [21, 4300, 4301, 50_000])
def test_huge_since_is_bad_since(digits: int) -> None:
    """A since of more digits than any id (past Python's 4,300-digit limit too) is bad_since.

    Python refuses to parse such integers with a ValueError, which must not read as bad_json.
    """
    data = '{"type": "join", "name": "a", "since": ' + "9" * digits + "}"
    assert code_of(data) == "bad_since"
    assert code_of('{"type": "join", "name": "a", "since": -' + "9" * digits + "}") == "bad_since"


# Epochs.


@pytest.mark.parametrize("epoch", ["", "abc", "x" * MAX_EPOCH_LENGTH])
def test_join_with_epoch(epoch: str) -> None:
    """A join may carry the epoch of the welcome its since came from."""
    data = join(since=41, epoch=epoch)
    assert parse_frame(data, LIMITS) == Join("alice", "", 41, epoch)


def test_join_without_epoch_has_none() -> None:
    """A join without an epoch (or with null) has epoch None."""
    assert parse_frame(join(since=3), LIMITS).epoch is None  # type: ignore[union-attr]
    assert parse_frame(join(epoch=None), LIMITS) == Join("alice", "", None, None)


@pytest.mark.parametrize("epoch", ["x" * (MAX_EPOCH_LENGTH + 1), 5, True, [], {}, 1.5])
def test_bad_epoch(epoch: object) -> None:
    """An epoch that is not null or a short string is refused with bad_epoch."""
    assert code_of(join(since=1, epoch=epoch)) == "bad_epoch"


# History requests.


@pytest.mark.parametrize("after", [0, 7, 2**63 - 1])
def test_history_parses_to_history_request(after: int) -> None:
    """A history frame with a non-negative integer after becomes a HistoryRequest."""
    assert parse_frame(frame(type="history", after=after), LIMITS) == HistoryRequest(after)


@pytest.mark.parametrize("after", [None, -1, "3", True, 1.0, 1.5, [], {}])
def test_bad_after(after: object) -> None:
    """A history frame whose after is not a non-negative integer is refused with bad_after."""
    assert code_of(frame(type="history", after=after)) == "bad_after"


def test_history_without_after_is_bad_after() -> None:
    """A history frame without after is refused with bad_after."""
    assert code_of(frame(type="history")) == "bad_after"


def test_huge_after_is_bad_after() -> None:
    """An after of 4,301 digits is bad_after, not bad_json."""
    assert code_of('{"type": "history", "after": ' + "1" * 4301 + "}") == "bad_after"


# Text.


@pytest.mark.parametrize("text", ["", " ", "\n\t \n", "\u3000"])
def test_blank_text_is_empty_text(text: str) -> None:
    """Text that is empty or only white space is refused with empty_text."""
    assert code_of(frame(type="say", text=text)) == "empty_text"


def test_text_length_limit() -> None:
    """Text of exactly the limit is accepted; one more character is text_too_long."""
    assert parse_frame(frame(type="say", text="a" * 2000), LIMITS) == Say("a" * 2000)
    assert code_of(frame(type="say", text="a" * 2001)) == "text_too_long"
    assert code_of(frame(type="say", text="ab"), Limits(text=1)) == "text_too_long"


@pytest.mark.parametrize(
    "text",
    [
        "a\x00b",
        "\x1b[2J",
        "a\rb",
        "line\r\n",
        "a\x7f",
        "a\x85b",
        "a\u2028b",
        "a\ud800",
        "abc\u202edef",
    ],
)
def test_text_with_control_characters_is_bad_text(text: str) -> None:
    """Text with controls other than newline and tab (or bidi overrides) is bad_text."""
    assert code_of(frame(type="say", text=text)) == "bad_text"


def test_text_allows_newline_and_tab() -> None:
    """Newlines and tabs inside text are kept as sent."""
    text = "line one\n\tindented\nline three"
    assert parse_frame(frame(type="say", text=text), LIMITS) == Say(text)


# Nesting.


def test_deeply_nested_invalid_json_is_bad_frame() -> None:
    """Deeply nested JSON (10 kB, under the frame limit) is refused with bad_frame, no crash."""
    assert code_of("[" * 10_000) == "bad_frame"


def test_deeply_nested_array_is_bad_frame() -> None:
    """A valid but deeply nested array (not an object) is refused with bad_frame, no crash."""
    assert code_of("[" * 5_000 + "]" * 5_000) == "bad_frame"


# Properties.

VALID_CHARS = st.characters(
    blacklist_categories=("Cc", "Cs", "Zl", "Zp"), blacklist_characters=BIDI
) | st.sampled_from("\n\t")


@RELAXED
@given(st.text(VALID_CHARS, min_size=1, max_size=2000).filter(lambda t: t.strip()))
def test_valid_text_round_trips(text: str) -> None:
    """Any text without forbidden controls, within the limit, parses to itself and re-encodes."""
    assert parse_frame(frame(type="say", text=text), LIMITS) == Say(text)
    message = Message(1, 0, "alice", "", text)
    assert json.loads(message.v1_json())["text"] == text


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(), children, max_size=3)
    ),
    max_leaves=8,
)


@RELAXED
@given(
    st.dictionaries(
        st.sampled_from(["type", "name", "avatar", "since", "epoch", "after", "text"]),
        st.sampled_from(["join", "say", "history"]) | JSON_VALUES,
    )
)
def test_any_object_is_accepted_or_refused_with_a_known_code(fields: dict[str, Any]) -> None:
    """Any JSON object either parses or raises a ProtocolError with a documented code."""
    try:
        parse_frame(json.dumps(fields), LIMITS)
    except ProtocolError as error:
        assert error.code in ERROR_CODES


@RELAXED
@given(st.text())
def test_any_string_is_accepted_or_refused_with_a_known_code(data: str) -> None:
    """Any string frame either parses or raises a ProtocolError with a documented code."""
    try:
        parse_frame(data, LIMITS)
    except ProtocolError as error:
        assert error.code in ERROR_CODES


@RELAXED
@given(st.text(max_size=40))
def test_any_name_is_accepted_clean_or_refused(name: str) -> None:
    """Any name is refused with bad_name/name_too_long or accepted trimmed, without controls."""
    try:
        command = parse_frame(join(name=name), LIMITS)
    except ProtocolError as error:
        assert error.code in ("bad_name", "name_too_long")
    else:
        assert isinstance(command, Join)
        assert command.name == name.strip() and 1 <= len(command.name) <= 32
        assert not any(c in BIDI or c < " " for c in command.name)


# Server frames.


def message(id: int = 1, ms: int = 1_795_677_426_123, **fields: str) -> Message:
    """A message with defaults for the fields not given."""
    values = {"name": "alice", "avatar": "", "text": "hello", **fields}
    return Message(id, ms, values["name"], values["avatar"], values["text"])


def test_error_frame_without_retry_after() -> None:
    """An error frame carries type, code and detail, and no retry_after unless given."""
    got = json.loads(error_frame(ProtocolError("bad_json", "frame is not valid JSON")))
    assert got == {"type": "error", "code": "bad_json", "detail": "frame is not valid JSON"}


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [(1.2, 1.2), (1.2341, 1.235), (0.0001, 0.001), (2.0, 2.0), (0.9999, 1.0), (0.0, 0.0)],
)
def test_error_frame_rounds_retry_after_up(retry_after: float, expected: float) -> None:
    """retry_after is rounded up to the millisecond, never down."""
    error = ProtocolError("rate_limited", "too many messages", retry_after=retry_after)
    got = json.loads(error_frame(error))
    assert got["code"] == "rate_limited"
    assert got["retry_after"] == expected


@RELAXED
@given(st.floats(min_value=0, max_value=1e6))
def test_error_frame_retry_after_never_shorter(retry_after: float) -> None:
    """The retry_after sent is never shorter than the wait and at most a millisecond longer."""
    got = json.loads(error_frame(ProtocolError("rate_limited", "x", retry_after=retry_after)))
    assert retry_after <= got["retry_after"] <= retry_after + 0.001 + 1e-9 * max(1, retry_after)


def test_protocol_error_refuses_unknown_codes() -> None:
    """Constructing a ProtocolError with an undocumented code fails loudly."""
    with pytest.raises(AssertionError):
        ProtocolError("no_such_code", "x")


def test_welcome_frame_is_valid_json_with_every_field() -> None:
    """The spliced welcome frame decodes to exactly the documented object."""
    history = [message(1, text='a "quoted" <text>'), message(2, name="bob", text="é\n🙂")]
    data = welcome_frame(
        name="alice (2)",
        avatar="https://example.org/a.png",
        room="lobby",
        title="pichat",
        limits=Limits(text=100, name=20, rate_messages=5, rate_window=2.5),
        history=history,
        online=people_json([("bob", "", True), ("alice (2)", "https://example.org/a.png", False)]),
        count=150,
        online_more=True,
        resumed=True,
        gap=False,
        epoch="e1",
        more=True,
    )
    assert json.loads(data) == {
        "type": "welcome",
        "you": {"name": "alice (2)", "avatar": "https://example.org/a.png"},
        "room": "lobby",
        "title": "pichat",
        "limits": {"text": 100, "name": 20, "rate_messages": 5, "rate_window": 2.5},
        "history": [m.as_v1() for m in history],
        "online": [
            {"name": "bob", "avatar": "", "moderator": True},
            {"name": "alice (2)", "avatar": "https://example.org/a.png"},
        ],
        "count": 150,
        "online_more": True,
        "resumed": True,
        "gap": False,
        "epoch": "e1",
        "more": True,
    }


def test_welcome_frame_with_empty_history() -> None:
    """A welcome with no history has an empty history list and is valid JSON."""
    data = welcome_frame(
        name="a",
        avatar="",
        room="r",
        title="t",
        limits=LIMITS,
        history=[],
        online=people_json([]),
        count=1,
        online_more=False,
        resumed=False,
        gap=True,
        epoch="",
        more=False,
    )
    got = json.loads(data)
    assert got["history"] == [] and got["online"] == [] and got["gap"] is True
    assert (got["epoch"], got["more"]) == ("", False)


def test_history_frame_is_valid_json_with_every_field() -> None:
    """The spliced history frame decodes to the documented object."""
    messages = [message(5, text="<x>"), message(7, name="bob")]
    assert json.loads(history_frame(4, messages, True, False)) == {
        "type": "history",
        "after": 4,
        "more": True,
        "gap": False,
        "messages": [m.as_v1() for m in messages],
    }
    empty = json.loads(history_frame(9, [], False, True))
    assert (empty["messages"], empty["more"], empty["gap"]) == ([], False, True)


def test_presence_frame() -> None:
    """A presence frame lists who joined, whose names left, and the count after the tick."""
    got = json.loads(presence_frame([("ada", "", False), ("Mo", "x", True)], ["bob"], 3))
    assert got == {
        "type": "presence",
        "joined": [{"name": "ada", "avatar": ""}, {"name": "Mo", "avatar": "x", "moderator": True}],
        "left": ["bob"],
        "count": 3,
    }


def test_online_frame() -> None:
    """An online page says where it starts, the exact count, and whether more follow."""
    got = json.loads(online_frame(100, [("ada", "", False)], 102))
    assert got == {
        "type": "online",
        "after": 100,
        "online": [{"name": "ada", "avatar": ""}],
        "count": 102,
        "more": True,
    }
    assert json.loads(online_frame(101, [("ada", "", False)], 102))["more"] is False


def test_message_v1_json_is_not_escaped() -> None:
    """The pichat.v1 encoding carries name, avatar and text exactly as sent."""
    m = message(name="<b>bob</b>", avatar="https://example.org/?a=1&b=2", text="<script>'x'&\"y\"")
    assert json.loads(m.v1_json()) == {
        "type": "message",
        "id": 1,
        "date": m.date,
        "name": "<b>bob</b>",
        "avatar": "https://example.org/?a=1&b=2",
        "text": "<script>'x'&\"y\"",
    }


def test_message_encodings_are_cached() -> None:
    """Each encoding of a message is built once and reused for every client."""
    m = message()
    assert m.v1_json() is m.v1_json()
    assert m.v1_frame() is m.v1_frame()
    assert m.v1_frame() == wire_frame(m.v1_json())
    calls: list[Message] = []

    def encode(x: Message) -> bytes:
        calls.append(x)
        return b"v"

    assert m.encoded("k", encode) == b"v"
    assert m.encoded("k", encode) == b"v"
    assert calls == [m]


# WebSocket frames.


def unframe(data: Frame) -> tuple[int, bytes]:
    """The first byte and payload of an unmasked frame, checking its length field."""
    assert data[1] & 0x80 == 0, "server frames are never masked"
    length = data[1] & 0x7F
    offset = 2
    if length == 126:
        length, offset = int.from_bytes(data[2:4], "big"), 4
    elif length == 127:
        length, offset = int.from_bytes(data[2:10], "big"), 10
    assert len(data) == offset + length
    return data[0], data[offset:]


@pytest.mark.parametrize(
    ("length", "header"),
    [(0, 2), (1, 2), (125, 2), (126, 4), (65535, 4), (65536, 10), (70_000, 10)],
)
def test_wire_frame_is_a_final_unmasked_text_frame(length: int, header: int) -> None:
    """wire_frame gives FIN + text opcode, the shortest length form, and the payload."""
    payload = bytes(range(256)) * (length // 256) + b"x" * (length % 256)
    data = wire_frame(payload)
    assert len(data) == header + length
    assert unframe(data) == (0x81, payload)


def test_format_date_examples() -> None:
    """format_date gives ISO 8601 UTC with milliseconds and Z."""
    assert format_date(0) == "1970-01-01T00:00:00.000Z"
    assert format_date(1_795_677_426_123) == "2026-11-26T07:17:06.123Z"
    assert format_date(1_795_677_426_007) == "2026-11-26T07:17:06.007Z"
    assert format_date(-1) == "1969-12-31T23:59:59.999Z"
    assert message(ms=1_795_677_426_123).date == "2026-11-26T07:17:06.123Z"


@RELAXED
@given(st.integers(min_value=0, max_value=253_402_300_799_999))
def test_format_date_round_trips(epoch_ms: int) -> None:
    """Every date has the documented shape and parses back to the same instant."""
    text = format_date(epoch_ms)
    assert DATE.match(text)
    parsed = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert parsed.utcoffset() == datetime.timedelta(0)
    epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
    assert (parsed - epoch) // datetime.timedelta(milliseconds=1) == epoch_ms


def test_format_date_of_the_same_second_and_the_next() -> None:
    """Dates within one second share its formatted part; the next second gets its own."""
    second = 1_795_677_426_000
    assert format_date(second + 5) == "2026-11-26T07:17:06.005Z"
    assert format_date(second + 999) == "2026-11-26T07:17:06.999Z"
    assert format_date(second + 1000) == "2026-11-26T07:17:07.000Z"
    assert format_date(second + 1) == "2026-11-26T07:17:06.001Z"
    assert format_date(second - 1) == "2026-11-26T07:17:05.999Z"


#: What has_control refuses, by Unicode category: controls, lone surrogates,
#: line and paragraph separators; plus the bidi overrides (category Cf).
REFUSED_CATEGORIES = ("Cc", "Cs", "Zl", "Zp")
BIDI_CONTROLS = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


@pytest.mark.parametrize("allowed", ["", "\n\t"])
def test_has_control_is_the_unicode_categories_for_every_code_point(allowed: str) -> None:
    """The regular expression refuses exactly the code points the categories name."""
    differ = [
        code
        for code in range(sys.maxunicode + 1)
        if has_control(chr(code), allowed)
        != (
            chr(code) not in allowed
            and (
                unicodedata.category(chr(code)) in REFUSED_CATEGORIES or chr(code) in BIDI_CONTROLS
            )
        )
    ]
    assert differ == []
    assert has_control("fine\u2028", allowed) and not has_control("fine text", allowed)
