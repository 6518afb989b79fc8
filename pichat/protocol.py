"""The ``pichat.v1`` wire protocol, sans I/O: parse client frames, validate, build frames.

Nothing here touches a socket, a clock or a file, so every rule of
docs/protocol.md is testable with plain function calls. The validation rules
are shared with the seed tutorial's dialect (:mod:`.legacy`).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import struct
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NewType, TypeGuard
from urllib.parse import urlsplit

__all__ = [
    "ERROR_CODES",
    "SUBPROTOCOL",
    "Frame",
    "HistoryRequest",
    "Join",
    "Limits",
    "Message",
    "ProtocolError",
    "Say",
    "error_frame",
    "format_date",
    "history_frame",
    "load_object",
    "parse_frame",
    "presence_frame",
    "validate_avatar",
    "validate_name",
    "validate_text",
    "welcome_frame",
    "wire_frame",
]

SUBPROTOCOL = "pichat.v1"
MAX_AVATAR_LENGTH = 500
MAX_EPOCH_LENGTH = 64

#: A complete WebSocket frame, header included: the only thing a client's queue
#: takes, so that a bare JSON payload cannot be queued by mistake.
Frame = NewType("Frame", bytes)


def wire_frame(payload: bytes) -> Frame:
    """An unmasked, unfragmented WebSocket text frame (RFC 6455 §5.2).

    Server frames are never masked and pichat negotiates no extension, so the
    frame for a message is the same bytes for every client: build it once.
    """
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x81, length)
    elif length < 65536:
        header = struct.pack("!BBH", 0x81, 126, length)
    else:
        header = struct.pack("!BBQ", 0x81, 127, length)
    return Frame(header + payload)


#: Every error code the server sends, with what it means (docs/protocol.md).
ERROR_CODES: dict[str, str] = {
    "bad_json": "the frame is not valid JSON",
    "bad_frame": "not a JSON object, or a field has the wrong type",
    "binary_frame": "binary frames are not spoken",
    "unknown_type": "type missing or unknown",
    "not_joined": "say or history before join",
    "already_joined": "a second join on the same connection",
    "bad_name": "name empty or with control characters",
    "name_too_long": "name too long",
    "bad_avatar": "avatar not empty and not an http(s) URL",
    "bad_since": "since not null and not a non-negative integer",
    "bad_epoch": "epoch not null and not a short string",
    "bad_after": "after not a non-negative integer",
    "empty_text": "text empty or only white space",
    "text_too_long": "text too long",
    "bad_text": "text with control characters",
    "rate_limited": "too many messages",
    "unavailable": "the message could not be stored",
}


class ProtocolError(Exception):
    """A client frame broke a rule; becomes an ``error`` frame, never a disconnect."""

    def __init__(self, code: str, detail: str, retry_after: float | None = None) -> None:
        assert code in ERROR_CODES, code
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.retry_after = retry_after


@dataclasses.dataclass(frozen=True, slots=True)
class Limits:
    """The limits a frame is validated against (from the settings)."""

    text: int = 2000
    name: int = 32
    rate_messages: int = 10
    rate_window: float = 10.0

    def as_dict(self) -> dict[str, float]:
        """The limits as clients see them (``welcome`` and ``/site.json``)."""
        return {
            "text": self.text,
            "name": self.name,
            "rate_messages": self.rate_messages,
            "rate_window": self.rate_window,
        }


@dataclasses.dataclass(frozen=True, slots=True)
class Join:
    """``{"type": "join"}``: enter the room under a name, maybe resuming after an id."""

    name: str
    avatar: str
    since: int | None
    epoch: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class HistoryRequest:
    """``{"type": "history"}``: the next page of messages after an id (a long resume)."""

    after: int


@dataclasses.dataclass(frozen=True, slots=True)
class Say:
    """``{"type": "say"}``: post a message to the room."""

    text: str


@dataclasses.dataclass(slots=True, eq=False)
class Message:
    """A stored chat message.

    Its encodings are cached (``v1_json`` and, through :meth:`encoded`, each
    dialect's payload and wire frame) so that a broadcast to a thousand clients,
    or a thousand welcomes after a restart, encode the message once.
    """

    id: int
    ms: int
    name: str
    avatar: str
    text: str
    date: str = dataclasses.field(init=False)
    _cache: dict[str, bytes] = dataclasses.field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.date = format_date(self.ms)

    def as_v1(self) -> dict[str, Any]:
        """The message as a ``pichat.v1`` object."""
        return {
            "type": "message",
            "id": self.id,
            "date": self.date,
            "name": self.name,
            "avatar": self.avatar,
            "text": self.text,
        }

    def encoded(self, key: str, encode: Callable[[Message], bytes]) -> bytes:
        """``encode(self)``, computed once per ``key`` for the message's lifetime."""
        value = self._cache.get(key)
        if value is None:
            value = self._cache[key] = encode(self)
        return value

    def v1_json(self) -> bytes:
        """The ``pichat.v1`` payload, encoded once."""
        return self.encoded("v1", _v1_payload)

    def v1_frame(self) -> Frame:
        """The ``pichat.v1`` wire frame, built once."""
        return Frame(self.encoded("v1-frame", _v1_frame))


def _v1_payload(message: Message) -> bytes:
    return dumps(message.as_v1())


def _v1_frame(message: Message) -> bytes:
    return wire_frame(message.v1_json())


def format_date(epoch_ms: int) -> str:
    """ISO 8601 UTC with milliseconds and ``Z``, e.g. ``2026-11-26T07:17:06.123Z``."""
    moment = datetime.datetime.fromtimestamp(epoch_ms // 1000, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


def _has_control(text: str, allowed: str = "") -> bool:
    for char in text:
        if char in allowed:
            continue
        category = unicodedata.category(char)
        # Cc: C0/C1 controls. Cs: lone surrogates. Zl/Zp: line/paragraph separators.
        # Bidi overrides (Cf) are refused too: they let a name masquerade as another.
        if category in ("Cc", "Cs", "Zl", "Zp") or char in _BIDI_CONTROLS:
            return True
    return False


_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def validate_name(value: object, limit: int) -> str:
    """A display name, trimmed; raises ``bad_name`` or ``name_too_long``."""
    if not isinstance(value, str):
        raise ProtocolError("bad_name", "name must be a string")
    name = value.strip()
    if not name:
        raise ProtocolError("bad_name", "name is empty")
    if _has_control(name):
        raise ProtocolError("bad_name", "name contains control characters")
    if len(name) > limit:
        raise ProtocolError("name_too_long", f"name is longer than {limit} characters")
    return name


def validate_avatar(value: object) -> str:
    """An avatar URL: empty, or http(s) with a host; raises ``bad_avatar``."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ProtocolError("bad_avatar", "avatar must be a string")
    avatar = value.strip()
    if not avatar:
        return ""
    if len(avatar) > MAX_AVATAR_LENGTH:
        raise ProtocolError("bad_avatar", f"avatar URL is longer than {MAX_AVATAR_LENGTH}")
    if _has_control(avatar) or any(char.isspace() for char in avatar):
        raise ProtocolError("bad_avatar", "avatar URL contains spaces or control characters")
    try:
        parts = urlsplit(avatar)
        host = parts.hostname
    except ValueError:
        raise ProtocolError("bad_avatar", "avatar is not a URL") from None
    if parts.scheme.lower() not in ("http", "https") or not host:
        raise ProtocolError("bad_avatar", "avatar must be an http or https URL")
    return avatar


def validate_text(value: object, limit: int) -> str:
    """Message text; raises ``empty_text``, ``text_too_long`` or ``bad_text``."""
    if not isinstance(value, str):
        raise ProtocolError("bad_frame", "text must be a string")
    if not value.strip():
        raise ProtocolError("empty_text", "text is empty")
    if len(value) > limit:
        raise ProtocolError("text_too_long", f"text is longer than {limit} characters")
    if _has_control(value, allowed="\n\t"):
        raise ProtocolError("bad_text", "text contains control characters")
    return value


def _bounded_int(digits: str) -> int | float:
    # Python refuses to parse integers of 4,301+ digits (a ValueError that would
    # read as bad_json); no id has more than 19. A float fails every id check.
    return int(digits) if len(digits) <= 20 else math.inf


def load_object(data: str) -> dict[str, Any]:
    """A frame's JSON object; raises ``bad_json`` or ``bad_frame``."""
    try:
        frame = json.loads(data, parse_int=_bounded_int)
    except ValueError:
        raise ProtocolError("bad_json", "frame is not valid JSON") from None
    except RecursionError:
        # json.loads recurses per nesting level; no pichat frame nests deeply.
        raise ProtocolError("bad_frame", "frame is nested too deeply") from None
    if not isinstance(frame, dict):
        raise ProtocolError("bad_frame", "frame must be a JSON object")
    return frame


def _is_id(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def parse_frame(data: str, limits: Limits) -> Join | Say | HistoryRequest:
    """Parse and validate one ``pichat.v1`` text frame.

    Raises:
        ProtocolError: with the code the client gets back.
    """
    frame = load_object(data)
    kind = frame.get("type")
    if kind == "say":
        return Say(validate_text(frame.get("text"), limits.text))
    if kind == "join":
        since = frame.get("since")
        if since is not None and not _is_id(since):
            raise ProtocolError("bad_since", "since must be null or a message id")
        epoch = frame.get("epoch")
        if epoch is not None and (not isinstance(epoch, str) or len(epoch) > MAX_EPOCH_LENGTH):
            raise ProtocolError("bad_epoch", "epoch must be null or the epoch of a welcome")
        return Join(
            name=validate_name(frame.get("name"), limits.name),
            avatar=validate_avatar(frame.get("avatar")),
            since=since,
            epoch=epoch,
        )
    if kind == "history":
        after = frame.get("after")
        if not _is_id(after):
            raise ProtocolError("bad_after", "after must be a message id")
        return HistoryRequest(after)
    if not isinstance(kind, str):
        raise ProtocolError("unknown_type", "frame has no type")
    raise ProtocolError("unknown_type", f"unknown frame type {kind[:40]!r}")


def dumps(value: object) -> bytes:
    """Compact JSON, UTF-8."""
    # Compact separators: every byte is paid once per client per message.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def welcome_frame(
    *,
    name: str,
    avatar: str,
    room: str,
    title: str,
    limits: Limits,
    history: Sequence[Message],
    online: Iterable[tuple[str, str]],
    resumed: bool,
    gap: bool,
    epoch: str,
    more: bool,
) -> bytes:
    """The answer to ``join``.

    The history is spliced in from each message's cached encoding: after a
    restart a thousand clients rejoin at once, and re-encoding the same hundred
    messages for each of them would dominate the reconnect storm.
    """
    head = dumps(
        {
            "type": "welcome",
            "you": {"name": name, "avatar": avatar},
            "room": room,
            "title": title,
            "limits": limits.as_dict(),
            "online": [{"name": n, "avatar": a} for n, a in online],
            "resumed": resumed,
            "gap": gap,
            "epoch": epoch,
            "more": more,
        }
    )
    return head[:-1] + b',"history":[' + b",".join(m.v1_json() for m in history) + b"]}"


def history_frame(after: int, messages: Sequence[Message], more: bool, gap: bool) -> bytes:
    """The answer to ``history``: the next page after ``after``."""
    head = dumps({"type": "history", "after": after, "more": more, "gap": gap})
    return head[:-1] + b',"messages":[' + b",".join(m.v1_json() for m in messages) + b"]}"


def presence_frame(event: str, name: str, avatar: str, count: int) -> bytes:
    """Someone joined or left; ``count`` is the number online after the event."""
    return dumps(
        {"type": "presence", "event": event, "name": name, "avatar": avatar, "count": count}
    )


def error_frame(error: ProtocolError) -> bytes:
    """The ``error`` frame for a rule a client broke."""
    frame: dict[str, Any] = {"type": "error", "code": error.code, "detail": error.detail}
    if error.retry_after is not None:
        # Round up so that a client waiting exactly this long is let through.
        frame["retry_after"] = math.ceil(error.retry_after * 1000) / 1000
    return dumps(frame)
