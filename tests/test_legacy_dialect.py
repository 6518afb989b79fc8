"""The seed tutorial's ``echo-protocol`` dialect: parsing, escaping, its history array.

The engine-level behaviour (history on open, posts, broadcast) is in test_chat.py;
here are the dialect's pure functions.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pichat.chat import Chat, ChatConfig
from pichat.legacy import LEGACY, LEGACY_SUBPROTOCOL, as_legacy, history_frame, legacy_json, parse
from pichat.protocol import ERROR_CODES, Limits, Message, ProtocolError, wire_frame

LIMITS = Limits()
RELAXED = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


def chat(limits: Limits = LIMITS) -> Chat[Any]:
    """An engine whose only part the parser reads is its configuration."""
    return Chat(outbox=None, history=None, config=ChatConfig(limits=limits))  # type: ignore[arg-type]


def code_of(data: str, limits: Limits = LIMITS) -> str:
    """The error code ``parse`` raises for ``data``."""
    with pytest.raises(ProtocolError) as info:
        parse(data, chat(limits))
    return info.value.code


def message(id: int = 1, **fields: str) -> Message:
    """A message with defaults for the fields not given."""
    values = {"name": "alice", "avatar": "", "text": "hello", **fields}
    return Message(id, 1_795_677_426_123, values["name"], values["avatar"], values["text"])


def test_dialect_names() -> None:
    """The dialect is negotiated as echo-protocol and never joins."""
    assert LEGACY.subprotocol == LEGACY_SUBPROTOCOL == "echo-protocol"
    assert LEGACY.joins is False
    assert repr(LEGACY) == "echo-protocol"


# Parsing.


def test_frame_parses_to_fields() -> None:
    """An echo-protocol frame gives (name, avatar, text); a client date is ignored."""
    data = json.dumps({"name": " bob ", "avatar": "https://example.org/b.png", "message": "hi"})
    assert parse(data, chat()) == ("bob", "https://example.org/b.png", "hi")
    assert parse(json.dumps({"name": "bob", "message": "hi", "date": "x"}), chat()) == (
        "bob",
        "",
        "hi",
    )


@pytest.mark.parametrize("data", ["", "{", "nope", '{"name": "a",}', "\x00"])
def test_invalid_json_is_bad_json(data: str) -> None:
    """A frame that is not valid JSON is refused with bad_json."""
    assert code_of(data) == "bad_json"


@pytest.mark.parametrize("data", ["[]", "1", '"hi"', "null", '[{"name": "a"}]'])
def test_non_object_is_bad_frame(data: str) -> None:
    """Valid JSON that is not an object is refused with bad_frame."""
    assert code_of(data) == "bad_frame"


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"name": "", "message": "hi"}, "bad_name"),
        ({"message": "hi"}, "bad_name"),
        ({"name": "a\u202eb", "message": "hi"}, "bad_name"),
        ({"name": "a" * 33, "message": "hi"}, "name_too_long"),
        ({"name": "bob", "avatar": "javascript:alert(1)", "message": "hi"}, "bad_avatar"),
        ({"name": "bob", "message": "  "}, "empty_text"),
        ({"name": "bob", "message": "a" * 2001}, "text_too_long"),
        ({"name": "bob", "message": "a\x00"}, "bad_text"),
        ({"name": "bob"}, "bad_frame"),
        ({"name": "bob", "message": 3}, "bad_frame"),
    ],
)
def test_frame_errors(fields: dict[str, Any], code: str) -> None:
    """An echo-protocol frame is validated like join + say, with the same codes."""
    assert code_of(json.dumps(fields)) == code


def test_frame_uses_the_configured_limits() -> None:
    """The name and text limits are the engine's current ones."""
    limits = Limits(text=3, name=2)
    assert code_of(json.dumps({"name": "abc", "message": "hi"}), limits) == "name_too_long"
    assert code_of(json.dumps({"name": "ab", "message": "four"}), limits) == "text_too_long"
    assert parse(json.dumps({"name": "ab", "message": "abc"}), chat(limits)) == ("ab", "", "abc")


@RELAXED
@given(
    st.dictionaries(
        st.sampled_from(["name", "avatar", "message", "date", "type"]),
        st.none() | st.booleans() | st.integers() | st.text(),
    )
)
def test_any_object_is_accepted_or_refused_with_a_known_code(fields: dict[str, Any]) -> None:
    """Any JSON object either parses or raises a ProtocolError with a documented code."""
    try:
        parse(json.dumps(fields), chat())
    except ProtocolError as error:
        assert error.code in ERROR_CODES


# Encoding.


def test_message_is_html_escaped() -> None:
    """The echo-protocol encoding HTML-escapes name, avatar and text (quotes included)."""
    m = message(name="<b>bob</b>", avatar='https://example.org/?a=1&b="2"', text="<script>'x'&")
    expected = {
        "name": "&lt;b&gt;bob&lt;/b&gt;",
        "avatar": "https://example.org/?a=1&amp;b=&quot;2&quot;",
        "message": "&lt;script&gt;&#x27;x&#x27;&amp;",
        "date": m.date,
    }
    assert as_legacy(m) == expected
    assert json.loads(legacy_json(m)) == expected


def test_encodings_are_cached() -> None:
    """The legacy payload and frame are built once per message and reused."""
    m = message()
    assert legacy_json(m) is legacy_json(m)
    assert LEGACY.message_frame(m) is LEGACY.message_frame(m)
    assert LEGACY.message_frame(m) == wire_frame(legacy_json(m))
    assert LEGACY.message_frame(m) != m.v1_frame()  # the dialects never share a cache slot


def test_history_frame_is_an_array_of_json_strings() -> None:
    """The legacy history is a JSON array whose items are JSON-encoded message strings."""
    history = [message(1, text="<hi>"), message(2, name="bob", text="second")]
    items = json.loads(history_frame(history))
    assert isinstance(items, list) and len(items) == 2
    assert all(isinstance(item, str) for item in items)
    assert [json.loads(item) for item in items] == [as_legacy(m) for m in history]
    assert json.loads(items[0])["message"] == "&lt;hi&gt;"
    assert json.loads(history_frame([])) == []
